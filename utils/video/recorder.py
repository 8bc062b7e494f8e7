"""Record a live read for sharing: the frames as they were read, H.264 in an MP4 (or MKV), with the
text read as a soft subtitle track (a subtitle stream players can switch on and off, not burnt in).

Encoding must never hold up the live reader, so it runs in its own thread behind a queue of a few
frames: when x264 falls behind, frames are dropped and counted (``Recorder.dropped``) rather than
queued without bound. Frames keep their stream times (pts = time x fps in a 1/fps time base), so a
stretch the live reader skipped shows as a held frame, not as the rest of the video played early.

PyAV (16) cannot encode subtitles: its ``mov_text`` encoder fails to open without an ASS header that
PyAV gives no way to set. Subtitle packets are simple enough to build directly: a ``mov_text`` sample
is the 3GPP timed-text sample (TS 26.245: a 16-bit big-endian length, then the UTF-8 text), a
``subrip`` packet in Matroska is the bare text. The stream itself is copied from a template:
``_mov_text_template`` is a sample-less MP4 whose one track has the standard ``tx3g`` sample entry
(the one FFmpeg's own encoder writes), and an in-memory SRT file gives the ``subrip`` one.
"""
from __future__ import annotations

import io
import os
import queue
import struct
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from utils.runtime.atomic import NotWritableError, ensure_writable_dir, make_readable
from utils.text.subtitles import Cue, render_srt

SUFFIXES = (".mp4", ".mkv")
QUEUE_FRAMES = 4  # a few frames of slack for the encoder; more only delays the drop and costs memory
_MS = Fraction(1, 1000)


def check_record_path(path: str | Path) -> None:
    """Raise ValueError naming ``path`` when it cannot be recorded to: a suffix other than .mp4/.mkv,
    or a folder that cannot be made or written. For scripts to call before the model loads."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: cannot record to a {path.suffix or 'suffix-less'!s} file "
                         f"(expected {' or '.join(SUFFIXES)})")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a file to record to")
    try:
        ensure_writable_dir(path.parent)
    except NotWritableError as err:
        raise ValueError(f"{path}: cannot record there: {err}") from None


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, *parts: bytes) -> bytes:
    return _box(kind, b"\0\0\0\0", *parts)  # version 0, flags 0


def _mov_text_template() -> bytes:
    """An MP4 with one empty timed-text track: FFmpeg's MP4 demuxer reads its stream as ``mov_text``
    with the ``tx3g`` sample entry as extradata (centred at the bottom, white 18-point Serif: what
    FFmpeg's encoder writes), which ``add_stream_from_template`` copies into the recording."""
    entry = (struct.pack(">IbbI", 0, 1, -1, 0)  # display flags, justification, background RGBA
             + struct.pack(">4h", 0, 0, 0, 0)  # default text box
             + struct.pack(">HHHBBI", 0, 0, 1, 0, 18, 0xFFFFFFFF)  # style: font 1, 18 pt, white
             + _box(b"ftab", struct.pack(">HHB", 1, 1, 5), b"Serif"))
    tx3g = _box(b"tx3g", b"\0" * 6, struct.pack(">H", 1), entry)
    stbl = _box(b"stbl", _full_box(b"stsd", struct.pack(">I", 1), tx3g), _full_box(b"stts", b"\0" * 4),
                _full_box(b"stsc", b"\0" * 4), _full_box(b"stsz", b"\0" * 8), _full_box(b"stco", b"\0" * 4))
    mdia = _box(b"mdia", _full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, 1000, 0, 0x55C4, 0)),
                _full_box(b"hdlr", struct.pack(">I4s12s", 0, b"sbtl", b""), b"\0"),
                _box(b"minf", _full_box(b"nmhd"), stbl))
    return _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isom") + _box(b"moov", _box(b"trak", mdia))


def _subtitle_template(suffix: str) -> av.container.InputContainer:
    if suffix == ".mp4":
        return av.open(io.BytesIO(_mov_text_template()), format="mp4")
    return av.open(io.BytesIO(render_srt([Cue(0, 1, "-")]).encode()), format="srt")


def _subtitle_payload(suffix: str, text: str) -> bytes:
    data = text.encode("utf-8")
    if suffix == ".mp4":
        return struct.pack(">H", len(data)) + data
    return data


class Recorder:
    """Writes frames and cues to ``path`` (.mp4: H.264 yuv420p + mov_text; .mkv: H.264 + subrip).

    The file is written under a hidden temporary name in the same folder and renamed by ``close()``,
    so a crash never leaves a half-file under the final name. ``close()`` must be called (a
    ``finally`` will do: it works after a Ctrl-C); the encoding thread is a daemon, so a forgotten
    recorder does not keep the process alive.

    x264 ``ultrafast`` (crf 23), measured on moving-block frames: about 0.9 ms of CPU a 360x288
    frame and 7.5 ms a 1280x720 one (``veryfast``: 1.2 and 9.4 ms), and ``add()`` takes about 0.5 ms
    (the copy) for a 720p frame; the reader and the model get the rest of the 2 cores.
    """

    def __init__(self, path: str | Path, fps: float, queue_frames: int = QUEUE_FRAMES, crf: int = 23) -> None:
        self.path = Path(path)
        check_record_path(self.path)
        if not fps > 0:
            raise ValueError(f"{self.path}: frame rate must be positive, got {fps}")
        if queue_frames < 1:  # queue.Queue(0) would have no bound at all
            raise ValueError(f"{self.path}: the encoder's queue needs at least 1 frame, got {queue_frames}")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self.dropped = 0  # frames the encoder could not keep up with (or added after it failed)
        self.frames = 0  # frames written
        self._suffix = self.path.suffix.lower()
        self._size: tuple[int, int] | None = None  # (height, width) of the first frame, cut to even
        self._queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(maxsize=queue_frames)
        self._cues: list[Cue] = []
        self._lock = threading.Lock()
        self._text_end_ms = 0  # where the last muxed cue ends, in ms of the recording
        self._input_ended = False  # the encoder has taken close()'s end mark
        self._closed = False
        self._error: BaseException | None = None
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".tmp{self._suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._thread = threading.Thread(target=self._run, name=f"record {self.path.name}", daemon=True)
        self._thread.start()

    def add(self, image: np.ndarray, time: float) -> None:
        """Queue one RGB uint8 (H, W, 3) frame shown at ``time`` seconds of the stream (increasing).
        Never blocks: a frame that finds the queue full is dropped and counted in ``dropped``."""
        if self._closed:
            raise ValueError(f"{self.path}: recorder is closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected an RGB uint8 (H, W, 3) frame, got {image.dtype} "
                             f"{image.shape}")
        height, width = image.shape[0] & ~1, image.shape[1] & ~1  # yuv420p needs even sides
        if self._size is None:
            if height == 0 or width == 0:
                raise ValueError(f"{self.path}: frame too small to record: {image.shape}")
            self._size = (height, width)
        elif image.shape[0] & ~1 != self._size[0] or image.shape[1] & ~1 != self._size[1]:
            raise ValueError(f"{self.path}: frame size changed from {self._size[1]}x{self._size[0]} "
                             f"to {image.shape[1]}x{image.shape[0]}")
        if self._error is not None:
            self.dropped += 1
            return
        try:  # a copy: the caller may reuse or draw on its array once this returns
            self._queue.put_nowait((image[:height, :width].copy(), float(time)))
        except queue.Full:
            self.dropped += 1

    def cue(self, start: float, end: float, text: str) -> None:
        """Add a subtitle showing ``text`` from ``start`` to ``end`` (stream seconds; ValueError unless
        0 <= start < end). Cues come in order of time; one that starts before the previous one ends is
        shown from that end (a subtitle track shows one cue at a time), and one without text is skipped."""
        if self._closed:
            raise ValueError(f"{self.path}: recorder is closed")
        text = "\n".join(line for line in text.splitlines() if line.strip())
        if not text:
            return
        try:
            cue = Cue(float(start), float(end), text)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None
        with self._lock:
            self._cues.append(cue)

    def close(self) -> Path | None:
        """Finish the file and give it its name; returns the path, or None when no frame came (no
        file is made). Raises OSError/ValueError naming the file when it could not be written."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)  # blocks only while the encoder takes a queued frame
        self._thread.join()
        if self._error is not None:
            self._tmp.unlink(missing_ok=True)
            err = self._error
            if isinstance(err, OSError):
                raise OSError(err.errno, f"{self.path}: cannot record: {err.strerror or err}") from err
            raise ValueError(f"{self.path}: cannot record: {err}") from err
        if self.frames == 0:
            self._tmp.unlink(missing_ok=True)
            return None
        if self._tmp.exists():
            make_readable(self._tmp)
            os.replace(self._tmp, self.path)
        return self.path

    def _take_cues(self) -> list[Cue]:
        with self._lock:
            cues, self._cues = self._cues, []
        return cues

    def _run(self) -> None:
        try:
            self._encode()
        except BaseException as err:  # kept for close() to report; the reader goes on meanwhile
            self._error = err
            while not self._input_ended:  # keep add() and close() from blocking
                if self._queue.get() is None:
                    self._input_ended = True
                else:
                    self.dropped += 1

    def _encode(self) -> None:
        container: av.container.OutputContainer | None = None
        template = _subtitle_template(self._suffix)
        try:
            first = self._queue.get()
            if first is None:
                self._input_ended = True
                return
            if self._suffix == ".mp4":  # the index up front at close, so a shared file plays while it downloads
                container = av.open(str(self._tmp), "w", format="mp4", options={"movflags": "+faststart"})
            else:
                container = av.open(str(self._tmp), "w", format="matroska")
            video = container.add_stream("libx264", rate=self.rate)
            video.height, video.width = first[0].shape[:2]
            video.pix_fmt = "yuv420p"
            video.options = {"preset": "ultrafast", "crf": str(self.crf)}
            video.codec_context.time_base = 1 / self.rate
            text = container.add_stream_from_template(template.streams.subtitles[0])
            text.time_base = _MS
            text.disposition = av.stream.Disposition.default.value  # players show the text unless switched off
            origin = first[1]  # the recording starts at its first frame
            last_pts = -1
            item: tuple[np.ndarray, float] | None = first
            while item is not None:
                image, time = item
                pts = round((time - origin) * self.rate)
                if pts > last_pts:
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts, frame.time_base = pts, 1 / self.rate
                    container.mux(video.encode(frame))
                    last_pts = pts
                    self.frames += 1
                self._mux_cues(container, text, origin)
                item = self._queue.get()
            self._input_ended = True
            container.mux(video.encode(None))
            self._mux_cues(container, text, origin)
        finally:
            template.close()
            if container is not None:
                container.close()

    def _mux_cues(self, container: av.container.OutputContainer, stream: av.stream.Stream,
                  origin: float) -> None:
        for cue in self._take_cues():
            start = max(round((cue.start - origin) * 1000), self._text_end_ms)
            end = round((cue.end - origin) * 1000)
            if end <= start:
                continue  # over before the recording began, or within a millisecond
            self._text_end_ms = end
            packet = av.Packet(_subtitle_payload(self._suffix, cue.text))
            packet.stream = stream
            packet.time_base = _MS
            packet.pts = packet.dts = start
            packet.duration = end - start
            container.mux(packet)
