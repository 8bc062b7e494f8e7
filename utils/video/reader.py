"""Time-true, upright video frames as a stream: the one video reader of the project.

``read_frames(path, fps)`` decodes a video with PyAV and yields its frames resampled by their
presentation timestamps to ``fps`` (the network's rate, 25 for GRID): output frame ``k`` shows
time ``k / fps`` and is the source frame displayed nearest to that time, so a 30 fps, 60 fps or
variable-rate phone video reaches the network at the speed it was recorded. Rotation metadata (a
portrait phone video stores landscape frames plus a display matrix) is applied, so frames come
out upright. Only the current frame is held: memory does not grow with the video's length. A truncated
or damaged file is read as far as it goes, and at its end the stream says so (``FrameStream.shortfall``,
with the length decoded and the length its container declares).

Why PyAV and not OpenCV (measured on a 1280x720 30 fps H.264 file, 2 shared cores):

- OpenCV's ``VideoCapture.read`` costs 7-13 ms a frame (it always converts to BGR); PyAV decodes
  in 3.3-3.5 ms a frame, and its luma plane gives the grey image the whole-frame face search
  needs (shrunk, then stretched to full range), with no colour conversion (``to_ndarray("gray")``
  would add 2-7 ms). Colour is converted only for the patch around a face (``Frame.rgb``, and the
  grey for landmarks from it), with OpenCV's I420 conversion; whole frames (``Frame.bgr``, for
  the frames preprocessing examines) use the same one, so a GRID clip gives exactly the same crops
  read whole or as a stream.
- OpenCV 4.11 ignored the display matrix of a rotated MP4 (the frame came back sideways while
  ``CAP_PROP_ORIENTATION_META`` said 90); PyAV gives each frame's rotation.
- PyAV gives every frame's presentation time; OpenCV's ``CAP_PROP_POS_MSEC`` is an estimate for
  some containers, and variable-rate files need the real times.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from utils.video.errors import REASONS, ExtractionError, check_readable

MODEL_FPS = 25.0  # GRID's frame rate: the rate LipNet learnt to read, and the default of checkpoints
VIDEO_SUFFIXES = frozenset({".mpg", ".mpeg", ".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".wmv", ".flv"})


def is_video_file(path: Path) -> bool:
    """A file with a video extension; hidden files (such as macOS ``._x.mpg``) are not videos."""
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".") and path.is_file()
_LUMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21",
                           "gray"})
_I420_FORMATS = frozenset({"yuv420p"})  # limited range, as OpenCV's I420 conversion assumes
_FULL_RANGE = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "gray"})
# Video luma spans 16-235; stretched to 0-255 it is what OpenCV's BGR-to-grey gives (within 1 level).
# The face detector needs it: on the luma as stored it missed the face in 4 of 7 GRID frames.
_STRETCH = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (sizes are as displayed, after rotation)."""

    path: str
    width: int
    height: int
    fps: float  # the source's average frame rate
    duration: float  # seconds (the container's figure, 0 when it has none)
    rotation: int  # degrees counter-clockwise applied to the stored frames to show them upright


class Frame:
    """One output frame: its index and time at the output rate, grey and colour pixels on demand."""

    def __init__(self, index: int, time: float, frame: av.VideoFrame, turns: int) -> None:
        self.index = index
        self.time = time
        self._frame = frame
        self._turns = turns  # quarter turns counter-clockwise (np.rot90's k)
        self._luma: np.ndarray | None = None
        self._gray: np.ndarray | None = None
        self._rgb: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        w, h = self._frame.width, self._frame.height
        return (h, w) if self._turns % 2 else (w, h)

    @property
    def luma(self) -> np.ndarray:
        """The upright luma plane (H, W) uint8 as stored (a view, no copy, for unrotated frames); 16-235
        in most video (see ``limited``)."""
        if self._luma is None:
            frame = self._frame
            if frame.format.name in _LUMA_FORMATS:
                plane = frame.planes[0]
                luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : frame.width]
            else:
                luma = frame.to_ndarray(format="gray")
            self._luma = np.ascontiguousarray(np.rot90(luma, self._turns)) if self._turns else luma
        return self._luma

    @property
    def limited(self) -> bool:
        """The luma spans 16-235 (video range), so grey images stretch it."""
        return self._frame.format.name in _LUMA_FORMATS and self._frame.format.name not in _FULL_RANGE

    def _stretch(self, luma: np.ndarray) -> np.ndarray:
        return cv2.LUT(luma, _STRETCH) if self.limited else np.ascontiguousarray(luma)

    @property
    def gray(self) -> np.ndarray:
        """The whole upright grey image (H, W) uint8, as OpenCV's BGR-to-grey gives it (within 1 level;
        exactly for frames up to 640 pixels, the size MouthExtractor searches whole)."""
        if self._gray is None:
            if max(self.size) <= 640:
                self._gray = cv2.cvtColor(self._full_rgb(), cv2.COLOR_RGB2GRAY)
            else:
                self._gray = self._stretch(self.luma)
        return self._gray

    def gray_region(self, box: tuple[float, float, float, float]) -> tuple[np.ndarray, tuple[int, int]]:
        """The grey image inside ``box`` (x0, y0, x1, y1), clipped to the frame, and its top-left corner:
        stretching only the region around a face (0.05 ms) instead of the whole frame (1-2 ms at 720p)."""
        width, height = self.size
        x0, y0 = min(max(0, int(box[0])), width - 1), min(max(0, int(box[1])), height - 1)
        x1, y1 = max(min(width, int(math.ceil(box[2]))), x0 + 1), max(min(height, int(math.ceil(box[3]))), y0 + 1)
        if self._frame.format.name in _I420_FORMATS and x1 - x0 >= 4 and y1 - y0 >= 8:
            # Grey from the colour patch, exactly as OpenCV's BGR-to-grey of the whole frame gives it
            # (what MouthExtractor fits landmarks on): 0.1 ms for a face region.
            rgb, origin = self.rgb((x0, y0, x1, y1))
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), origin
        return self._stretch(self.luma[y0:y1, x0:x1]), (x0, y0)

    def gray_small(self, max_side: int) -> tuple[np.ndarray, float]:
        """The grey image shrunk so its longer side is at most ``max_side``, and the shrink factor."""
        shrink = min(1.0, max_side / max(self.size))
        if shrink == 1.0:
            return self.gray, shrink
        luma = self.luma if shrink == 1.0 else cv2.resize(self.luma, None, fx=shrink, fy=shrink,
                                                          interpolation=cv2.INTER_AREA)
        return self._stretch(luma), shrink

    def bgr(self) -> np.ndarray:
        """The whole upright frame, BGR uint8 (H, W, 3), as OpenCV would give it. OpenCV swaps the channels:
        NumPy's copy of a reversed channel axis costs more than decoding the frame."""
        return cv2.cvtColor(self._full_rgb(), cv2.COLOR_RGB2BGR)

    def _full_rgb(self) -> np.ndarray:
        if self._rgb is None:
            frame = self._frame
            if frame.format.name in _I420_FORMATS and frame.width % 2 == 0 and frame.height % 4 == 0:
                # The same conversion as the mouth patches', so a clip's crops come out the same
                # whether it is read whole (preprocessing) or as a stream (infer.py).
                self._rgb = self.rgb((0, 0) + self.size)[0]
            else:
                self._rgb = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), self._turns))
        return self._rgb

    def rgb(self, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """RGB pixels of the upright frame inside ``box`` (x0, y0, x1, y1), clipped to the frame, and the
        patch's top-left corner in frame pixels (the patch may reach up to 3 pixels beyond the box; at the
        frame's edges it holds the edge pixels, as the whole frame does, for frames of even width and a height
        a multiple of 4).

        For 4:2:0 video (yuv420p) only the patch is converted from YUV (about 0.1 ms instead of 6 ms for a
        whole 720p frame).
        """
        width, height = self.size
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(width, int(box[2])), min(height, int(box[3]))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {box} lies outside the {width}x{height} frame")
        if self._frame.format.name not in _I420_FORMATS:
            return self._full_rgb()[y0:y1, x0:x1].copy(), (x0, y0)
        # The box in stored (unrotated) pixels, widened to the 4:2:0 grid (even width, height a multiple of 4).
        sw, sh = self._frame.width, self._frame.height
        turns = self._turns % 4
        sx0, sy0, sx1, sy1 = {0: (x0, y0, x1, y1), 1: (sw - y1, x0, sw - y0, x1),
                              2: (sw - x1, sh - y1, sw - x0, sh - y0), 3: (y0, sh - x1, y1, sh - x0)}[turns]
        sx0, sy0 = sx0 & ~1, sy0 & ~1
        sx1 = min(sw & ~1, sx0 + ((sx1 - sx0 + 1) & ~1))
        sy1 = min(sh & ~1, sy0 + ((sy1 - sy0 + 3) & ~3))
        if (sy1 - sy0) % 4 and sy0 >= 2:  # at the bottom edge: grow upwards, keeping the frame's last rows
            sy0 -= 2
        sy1 -= (sy1 - sy0) % 4
        if sx1 - sx0 < 2 or sy1 - sy0 < 4:
            return self._full_rgb()[y0:y1, x0:x1].copy(), (x0, y0)
        w, h = sx1 - sx0, sy1 - sy0
        planes = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size) for p in self._frame.planes[:3]]
        yuv = np.empty((h * 3 // 2, w), np.uint8)
        yuv[:h] = planes[0][sy0:sy1, sx0:sx1]
        yuv[h: h + h // 4] = planes[1][sy0 // 2: sy1 // 2, sx0 // 2: sx1 // 2].reshape(h // 4, w)
        yuv[h + h // 4:] = planes[2][sy0 // 2: sy1 // 2, sx0 // 2: sx1 // 2].reshape(h // 4, w)
        patch = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
        if turns:
            patch = np.ascontiguousarray(np.rot90(patch, turns))
        origin = {0: (sx0, sy0), 1: (sy0, sw - sx1), 2: (sw - sx1, sh - sy1), 3: (sh - sy1, sx0)}[turns]
        return patch, origin


def _open(path: Path) -> av.container.InputContainer:
    check_readable(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise ExtractionError("decode_error", path, f"{REASONS['decode_error']} (not a video or damaged: "
                              f"{err})") from None
    if not container.streams.video:
        container.close()
        raise ExtractionError("decode_error", path, f"{REASONS['decode_error']} (it has no video stream)")
    return container


def _turns(rotation: float) -> int:
    """Quarter turns (np.rot90's k) that show a frame upright, from the display matrix's rotation
    (FFmpeg's ``av_display_rotation_get``: -90 means the stored frame is shown turned 90 degrees clockwise)."""
    return int(round(rotation / 90)) % 4 if math.isfinite(rotation) else 0


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, duration and rotation of a video, from its container and first frame."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0) or MODEL_FPS
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
            container.duration / av.time_base if container.duration else 0.0)
        turns = 0
        width, height = stream.codec_context.width, stream.codec_context.height
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError:
            first = None
        if first is not None:
            turns = _turns(first.rotation)
            width, height = first.width, first.height
    if turns % 2:
        width, height = height, width
    return VideoInfo(str(path), width, height, rate, duration, turns * 90)


# A video is read in part when its decoded length falls short of what its container declares by more
# than a whole file's figures can be off: a last frame without a duration, B-frame delay before the first
# frame, timestamps rounded to the millisecond. The GRID clips and copies of one as MP4 (faststart or
# not, with B-frames, with 1 s more audio than video), MKV (also with more audio, and at a variable
# rate), WebM and AVI decode no shorter than declared; their halves fall 1.9-2.0 s short. MPEG program
# and transport streams and raw streams declare no length: FFmpeg estimates one from the timestamps at
# the end of the file (or its size), so a cut file seems whole by it. Every cut MPEG-1 program stream
# tried (GRID's and FFmpeg's, cut at 20-97% of their bytes) ends on frames its decoder marks damaged.
# Cut at 97% of their bytes, the MKV and WebM copies fall 0.12-0.16 s short: within the slack, unflagged.
SHORT_SECONDS = 0.2  # the least shortfall flagged, in seconds ...
SHORT_FRAMES = 3  # ... and in source frames (whichever is longer) ...
SHORT_FRACTION = 0.01  # ... or this share of the declared length, for long videos
_ESTIMATED = frozenset({"mpeg", "mpegts", "mpegvideo", "m4v", "h264", "hevc"})  # FFmpeg's demuxers
# How far from the end (decoded frames) a frame the decoder marks corrupt makes the video's end damaged:
# a file cut inside a picture gives that picture damaged, and B-frames reordered after it come out later.
_DAMAGED_TAIL = 4
# Timestamps that jump by more than this many seconds (either way) between two frames are a discontinuity,
# not a still picture: MPEG-TS timestamps wrap every 26.5 hours, and a restarted stream starts again at zero.
_JUMP = 10.0


@dataclass(frozen=True)
class Shortfall:
    """A video read in part: truncated (a copy or download cut off) or damaged, read as far as it goes.

    ``cause`` says how it shows: the decoded length falls short of the container's ``declared_seconds``
    or ``declared_frames`` (None: not declared), decoding failed part-way, or the last frames decoded are
    damaged (an MPEG program stream cut inside a picture: such streams declare no length)."""

    path: str
    cause: str
    decoded_seconds: float  # from the first frame shown to the end of the last
    decoded_frames: int  # source frames decoded
    declared_seconds: float | None
    declared_frames: int | None

    @property
    def description(self) -> str:
        declared = " ".join(part for part in (
            f"{self.declared_seconds:.2f} s" if self.declared_seconds is not None else "",
            f"({_frames(self.declared_frames)})" if self.declared_frames is not None else "") if part)
        return (f"read in part, {self.cause}: {self.decoded_seconds:.2f} s ({_frames(self.decoded_frames)}) "
                f"decoded, the container declares {declared or 'no length'}")

    def __str__(self) -> str:
        return f"{self.path}: {self.description}"


def _frames(count: int) -> str:
    return f"{count} frame" + ("" if count == 1 else "s")


def _declared_length(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[float | None, int | None]:
    """The video stream's length as its container declares it: seconds (the stream's duration, a Matroska
    track's DURATION tag, or the container's duration when the video is its only stream: with audio it
    may be the audio's) and frames (counted by MP4 and AVI; None where not). MPEG streams and raw
    streams declare none: FFmpeg's figure for them is an estimate from what the file holds."""
    if container.format.name in _ESTIMATED:
        return None, None
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif stream.metadata.get("DURATION"):
        try:
            hours, minutes, rest = stream.metadata["DURATION"].split(":")
            seconds = int(hours) * 3600 + int(minutes) * 60 + float(rest)
        except ValueError:
            seconds = None
    elif container.duration and len(container.streams) == 1:
        seconds = container.duration / av.time_base
    return seconds, (stream.frames or None)


class FrameStream:
    """The frames of one video (see ``read_frames``), one at a time; once they have all been read,
    ``shortfall`` says whether the video was read only in part (None: read whole, or not yet at its end).
    The check needs no second pass: it compares what was decoded with what the container declares."""

    def __init__(self, path: Path, fps: float, container: av.container.InputContainer | None = None) -> None:
        """``container``: already opened (a live source, ``utils.video.sources.open_live``), else ``path`` is."""
        self.path = path
        self.fps = fps
        self.shortfall: Shortfall | None = None
        self.failure: str | None = None  # why decoding stopped before the end of the stream, once it has
        self._container = container
        self._frames = self._read()

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> Frame:
        return next(self._frames)

    def _read(self) -> Iterator[Frame]:
        path, fps = self.path, self.fps
        container = self._container if self._container is not None else _open(path)
        with container:
            stream = container.streams.video[0]
            if self._container is None:
                stream.thread_type = "AUTO"  # frame threads: 3.3 ms a 720p frame instead of 6 ms on 2 cores
            else:  # live: each frame out as soon as it is decoded (frame threads held 2 back, 80 ms at 25 fps)
                stream.thread_type = "SLICE"
                stream.codec_context.flags |= av.codec.context.Flags.low_delay
            rate = float(stream.average_rate or stream.guessed_rate or 0) or MODEL_FPS
            previous: av.VideoFrame | None = None
            prev_t = start = 0.0
            gap = 1.0 / rate
            k = decoded = 0
            damaged_at = -_DAMAGED_TAIL  # the decoded count when a frame last came out marked corrupt
            failure = None
            frames = container.decode(stream) if self._container is None else _joined(container, stream)
            while True:
                try:
                    frame = next(frames, None)
                except av.error.FFmpegError as err:
                    if previous is None and self._container is None:
                        raise ExtractionError("decode_error", path, f"{REASONS['decode_error']} ({err})") from None
                    failure = f"decoding failed ({getattr(err, 'strerror', None) or err})"
                    break
                if frame is None:
                    break
                decoded += 1
                if frame.is_corrupt:
                    damaged_at = decoded
                t = frame.time
                if t is None:
                    t = prev_t + gap if previous is not None else 0.0
                elif previous is None:
                    start = t
                t = t - start if previous is not None else 0.0
                if previous is not None and abs(t - prev_t) > _JUMP:
                    # A discontinuity (a live stream restarted, timestamps wrapped): time goes on by one frame.
                    start += t - prev_t - gap
                    t = prev_t + gap
                if previous is not None:
                    if t <= prev_t:  # a repeated or out-of-order timestamp: keep the first frame shown
                        continue
                    gap = t - prev_t
                    turns = _turns(previous.rotation)
                    while k / fps < (prev_t + t) / 2:
                        yield Frame(k, k / fps, previous, turns)
                        k += 1
                previous, prev_t = frame, t
            self.failure = failure
            if previous is None:
                if failure is not None:
                    return
                raise ExtractionError("decode_error", path, REASONS["decode_error"] + " (not a video or damaged)")
            shown = float(previous.duration * previous.time_base) if previous.duration and previous.time_base else gap
            end = prev_t + (shown if shown > 0 else gap)
            self.shortfall = _shortfall(path, failure, decoded - damaged_at < _DAMAGED_TAIL, end, decoded, rate,
                                        *_declared_length(container, stream))
            turns = _turns(previous.rotation)
            while k / fps < end - 1e-6:
                yield Frame(k, k / fps, previous, turns)
                k += 1


def _joined(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
    """A live stream's frames from wherever it was joined: packets the decoder cannot use are passed over,
    not the end of the stream: those before the first keyframe of a stream joined between two (at most a
    second of them), and damaged ones (a datagram lost on the way); the frame before stands in for them."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


def _shortfall(path: Path, failure: str | None, damaged_end: bool, seconds: float, frames: int, rate: float,
               declared_seconds: float | None, declared_frames: int | None) -> Shortfall | None:
    """How a video was read in part, if it was: decoding failed, its end is damaged, or every length its
    container declares exceeds the decoded one by more than a whole file's figures can be off."""
    cause = failure or ("its last frames decoded are damaged" if damaged_end else None)
    short = []
    if declared_seconds:
        short.append(seconds < declared_seconds - max(SHORT_SECONDS, SHORT_FRAMES / rate,
                                                      SHORT_FRACTION * declared_seconds))
    if declared_frames:
        short.append(frames < declared_frames - max(SHORT_SECONDS * rate, SHORT_FRAMES,
                                                    SHORT_FRACTION * declared_frames))
    if cause is None and short and all(short):
        cause = "shorter than its container declares"
    if cause is None:
        return None
    return Shortfall(str(path), cause, seconds, frames, declared_seconds, declared_frames)


def read_frames(path: str | Path, fps: float = MODEL_FPS) -> FrameStream:
    """The video's frames at ``fps`` by presentation time, upright, one at a time.

    Output frame ``k`` (time ``k / fps`` from the first frame) is the source frame shown nearest to
    that time; the video ends where its last frame's display ends. A file that decodes no frame
    raises ``ExtractionError`` (missing, empty_file, decode_error); a truncated or damaged one is read
    as far as it goes, and the stream's ``shortfall`` says so once its last frame has been read.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return FrameStream(Path(path), fps)
