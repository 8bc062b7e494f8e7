"""A video of any length read as a stream of utterances: mouth crops of one face over one stretch
of time, each short enough for the network to read on its own.

Frames come from ``utils.video.reader`` at the network's rate, faces from ``utils.video.tracks``.
For every tracked face and frame only a small colour patch around the mouth is kept (cut at the
mouth's last known place, wide enough for the smoothed track to move inside it, shrunk when the
mouth is large): a 4K frame is never held, and memory is bounded by the longest utterance, not by
the video. An utterance ends

- at a scene cut (the mean absolute difference of 32x24 luma thumbnails of consecutive frames
  jumps: 21-22 levels between two GRID clips against at most 0.65 within one),
- where its face is lost for ``lost`` seconds (the frames after the face was last seen are
  dropped; the span is reported as having no face),
- in a pause, where the mouth has been still for ``pause`` seconds after speech: in its middle (of a
  longer silence before speech only the last half pause is kept; ``paused_after`` for a live reader),
- and before it grows past ``max_seconds``: it is then cut where the mouth is stillest in its
  second half (the pause between two phrases), and the rest starts the next utterance.

A stretch where the mouth moves on fewer than ``min_seconds / 2`` (silence) is not read.

The crops of an utterance are made as ``MouthExtractor`` makes a clip's: landmarks on every
``step``-th frame, the mouth centre interpolated between them and smoothed with a Gaussian, one
scale from the median mouth width, turned with the head's roll when the extractor is ``upright``;
``crop_frames`` then samples them from the patches.
"""
from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from utils.video.errors import ExtractionError
from utils.video.framing import LIPNET_PYTORCH, PYTORCH_BOX, pytorch_geometry, resize_boxes
from utils.video.mouth_extractor import (
    LEFT_CORNER,
    MOUTH,
    RIGHT_CORNER,
    LandmarkTrack,
    MouthExtractor,
    crop_frames,
    gaussian_smooth,
    small_face_note,
)
from utils.video.reader import MODEL_FPS, Frame, Shortfall, read_frames
from utils.video.roll import roll_angles, turned_growth
from utils.video.tracks import FaceTracker

CUT_LEVEL = 10.0  # thumbnail difference (grey levels) that is a scene cut ...
CUT_RATIO = 4.0  # ... when it is also this many times the recent median difference
_THUMB = (32, 24)
_PATCH_HALF = (0.8, 0.55)  # patch half-size in crop widths (x, y): room for the smoothed track to move
# A patch is shrunk by the largest whole factor that leaves the crop's span at least this many times the
# crop's pixels (so it spans 1.5-3 times them kept whole, 1.5-2.25 times shrunk): by a whole factor,
# OpenCV's area shrink is a plain box average, 0.4 ms for a 720p mouth patch against 6-11 ms at a
# fractional factor such as 0.65 (measured on 2 busy cores), a cost paid on every frame.
_PATCH_MIN = 1.5
_OPEN_PAIRS = ((61, 67), (62, 66), (63, 65))  # inner-lip point pairs: how open the mouth is
# Mouth motion (see mouth_motion) at or below this is a still mouth: measured on the GRID clips,
# silence 0-0.004 (landmark jitter on a re-encoded frozen frame up to 0.006; up to 0.013 while the
# lips get ready to speak), speech mostly 0.01-0.06 with brief dips to 0.005.
STILL = 0.008
# Mouth motion that only speech reaches: silence on the GRID clips stays under 0.013 (lips getting ready
# to speak), speech rises to 0.02-0.07 within a few frames. A run of motion above STILL that never reaches
# it is a still mouth's jitter (bumps of 0.010-0.017 on the synthetic talks' faces, dlib's landmarks on a
# closed drawn mouth), not speech.
SPEECH_LEVEL = 0.015

log = logging.getLogger(__name__)


@dataclass
class Utterance:
    """Mouth crops of one face over one stretch of the video."""

    face: int  # track id (0, 1, ... in order of appearance)
    start: float  # seconds from the video's first frame
    end: float
    frames: np.ndarray  # (T, H, W, 3) RGB uint8 at the reader's rate
    face_width: float  # median face width (source pixels): which face is largest
    scale: float = 1.0  # crop pixels per source pixel

    @property
    def small_face(self) -> str | None:
        """Why the face is too small to read well (``small_face_note``), or None."""
        return small_face_note(self.scale, self.face_width)


@dataclass
class StreamSummary:
    """What reading a whole video found, filled in as it is read."""

    frames: int = 0  # frames at the reader's rate
    fps: float = MODEL_FPS
    faces: int = 0  # face tracks seen on at least three examined frames
    no_face: list[tuple[float, float]] = field(default_factory=list)  # spans (s) no utterance covers
    shortfall: Shortfall | None = None  # the file was truncated or damaged, read as far as it goes

    @property
    def duration(self) -> float:
        return self.frames / self.fps


@dataclass
class _Segment:
    start: int  # frame index of the first patch
    patches: list[np.ndarray] = field(default_factory=list)
    origins: list[tuple[int, int]] = field(default_factory=list)  # patch corner in source pixels
    shrinks: list[float] = field(default_factory=list)  # patch pixels per source pixel
    marks: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> 68 landmarks
    faces: dict[int, float] = field(default_factory=dict)  # frame index -> face width, where found

    @property
    def end(self) -> int:
        return self.start + len(self.patches)

    @property
    def face_width(self) -> float:
        """The median width of the face where it was found (0 before it was)."""
        return float(np.median(list(self.faces.values()))) if self.faces else 0.0

    def found(self, index: int, landmarks: np.ndarray, width: float) -> None:
        """The face found at frame ``index``: its landmarks and its width."""
        self.marks[index] = landmarks
        self.faces[index] = width

    def split(self, at: int) -> _Segment:
        """Keep frames before index ``at`` here, return the rest as a new segment."""
        cut = at - self.start
        rest = _Segment(at, self.patches[cut:], self.origins[cut:], self.shrinks[cut:],
                        {k: v for k, v in self.marks.items() if k >= at},
                        {k: v for k, v in self.faces.items() if k >= at})
        del self.patches[cut:], self.origins[cut:], self.shrinks[cut:]
        self.marks = {k: v for k, v in self.marks.items() if k < at}
        self.faces = {k: v for k, v in self.faces.items() if k < at}
        return rest


class UtteranceReader:
    """Reads videos into utterances with one extractor (dlib's models) reused across videos."""

    def __init__(self, extractor: MouthExtractor, fps: float = MODEL_FPS, max_seconds: float = 3.0,
                 min_seconds: float = 0.4, lost: float = 0.5, pause: float = 1.0, step: int = 3,
                 margin: float | None = None) -> None:
        """fps: the network's frame rate. max_seconds: the longest utterance (default: GRID's clip
        length, what LipNet is trained on). min_seconds: shorter utterances are dropped, and a video
        must be at least this long. lost: seconds without its face that end an utterance. pause:
        seconds of a still mouth after speech that end one; half of it is kept in the utterance (and of a
        silence before speech: see ``paused_after`` for a live reader's). margin: seconds kept before an
        utterance's speech begins and after it ends (``speaking_frames``; None: all of it, up to half a
        pause on each side, as GRID's clips hold; a model trained on clips cut at subtitle cues reads best
        with about the stillness its clips had)."""
        if max_seconds <= min_seconds or min_seconds <= 0:
            raise ValueError(f"need 0 < min_seconds < max_seconds, got {min_seconds} and {max_seconds}")
        self.extractor = extractor
        self.fps = fps
        self.max_frames = max(2, int(round(max_seconds * fps)))
        self.min_frames = max(2, int(round(min_seconds * fps)))
        self.lost_frames = max(step, int(round(lost * fps)))
        self.pause_frames = max(2 * step, int(round(pause * fps)))
        self.keep_frames = self.pause_frames // 2  # frames of a pause kept after (and before) speech
        self.speech_only = False  # a pause ends nothing before speech (``speaking_frames``): live readers'
        self.speech_frames = max(2, self.min_frames // 2)  # frames of a moving mouth that make speech
        self.step = step
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin_frames = None if margin is None else int(round(margin * fps))

    def paused_after(self, pause: float) -> UtteranceReader:
        """These settings, but an utterance ends after ``pause`` seconds of a still mouth and keeps all of
        them (a live reader's: it ends where a file reading ends it, half a second after the speech, as
        soon as that is known)."""
        reader = copy.copy(self)
        reader.pause_frames = reader.keep_frames = max(2 * self.step, int(round(pause * self.fps)))
        # A pause ends nothing until there has been speech: half a second of stillness after the lips got
        # ready to speak (movement above STILL, below SPEECH_LEVEL) cut bbaf2n before its first word. The
        # pause itself still starts after the last movement: from the last speaking-pace frame, swwp2s lost
        # the end of "soon".
        reader.speech_only = True
        return reader

    # -- one face's patches ---------------------------------------------------------------------------

    def _patch(self, frame: Frame, landmarks: np.ndarray) -> tuple[np.ndarray, tuple[int, int], float]:
        mouth = landmarks[MOUTH]
        cx, cy = mouth.mean(axis=0)
        width = max(float(np.hypot(*(landmarks[RIGHT_CORNER] - landmarks[LEFT_CORNER]))), 4.0)
        crop_w = self.extractor.width_ratio * width  # source pixels the crop will span
        half_w, half_h = _PATCH_HALF[0] * crop_w + 4, _PATCH_HALF[1] * crop_w + 4
        if self.extractor.upright:  # room for the crop turned with the head
            grow_w, grow_h = turned_growth(crop_w, crop_w * self.extractor.size[1] / self.extractor.size[0],
                                           float(roll_angles(landmarks[None])[0]))
            half_w, half_h = half_w + grow_w, half_h + grow_h
        patch, origin = frame.rgb((int(cx - half_w), int(cy - half_h), int(cx + half_w) + 1, int(cy + half_h) + 1))
        factor = int(crop_w // (_PATCH_MIN * self.extractor.size[0]))
        height, width = patch.shape[:2]
        if factor < 2 or min(height, width) < factor:
            return patch, origin, 1.0
        # Output pixel j averages source pixels [factor * j, factor * (j + 1)): the pixel-centre mapping
        # p = (x + 0.5) * shrink - 0.5 that _crops uses holds exactly.
        patch = cv2.resize(patch[: height - height % factor, : width - width % factor],
                           (width // factor, height // factor), interpolation=cv2.INTER_AREA)
        return patch, origin, 1.0 / factor

    def _crops(self, segment: _Segment) -> tuple[np.ndarray, float]:
        """The segment's mouth crops, made as MouthExtractor makes a clip's, from its patches, and their scale."""
        ex = self.extractor
        good = np.array(sorted(segment.marks))
        marks = np.stack([segment.marks[k] for k in good])
        if ex.framing == LIPNET_PYTORCH:
            return self._aligned_crops(segment, good, marks)
        centres = marks[:, MOUTH].mean(axis=1)
        times = np.arange(segment.start, segment.end)
        track = np.stack([np.interp(times, good, centres[:, d]) for d in range(2)], axis=1)
        track = gaussian_smooth(track, ex.smooth)
        widths = np.hypot(*(marks[:, RIGHT_CORNER] - marks[:, LEFT_CORNER]).T)
        scale = ex.size[0] / (ex.width_ratio * max(float(np.median(widths)), 1.0))
        shrinks = np.asarray(segment.shrinks)
        # cv2.resize maps pixel centres: patch p = (x - origin + 0.5) * shrink - 0.5
        in_patch = (track - np.asarray(segment.origins, np.float64) + 0.5) * shrinks[:, None] - 0.5
        return crop_frames(segment.patches, in_patch, scale / shrinks, ex.size, ex.roll(times, good, marks)), scale

    def _aligned_crops(self, segment: _Segment, good: np.ndarray, marks: np.ndarray) -> tuple[np.ndarray, float]:
        """``_crops`` in LipNet-PyTorch's framing: each frame's landmarks (interpolated between examined frames)
        give its box (``utils.video.framing``), cut from the patches."""
        track = LandmarkTrack(good, np.ones(len(good), bool), good - segment.start, marks, np.zeros(len(good)))
        centres, scales, angles = pytorch_geometry(track.every_frame(segment.end - segment.start))
        shrinks = np.asarray(segment.shrinks)
        in_patch = (centres - np.asarray(segment.origins, np.float64) + 0.5) * shrinks[:, None] - 0.5
        boxes = crop_frames(segment.patches, in_patch, scales / shrinks, PYTORCH_BOX, angles)
        size = self.extractor.size
        return resize_boxes(boxes, size), float(np.median(scales)) * size[0] / PYTORCH_BOX[0]

    def _utterance(self, face: int, segment: _Segment) -> Utterance:
        frames, scale = self._crops(segment)
        return Utterance(face, segment.start / self.fps, segment.end / self.fps, frames,
                         segment.face_width, scale)

    @staticmethod
    def _stillest(segment: _Segment, lo: int, hi: int) -> int:
        """The frame in [lo, hi) where the mouth moves least."""
        motion = mouth_motion(segment.marks, segment.start, segment.end)
        if motion is None:
            return hi
        return lo + int(np.argmin(motion[lo - segment.start: hi - segment.start]))

    def _pause(self, segment: _Segment) -> int | None:
        """Where to end the segment when it closes on a long enough still mouth after speech: ``keep_frames``
        into the pause (the middle of its first ``pause`` seconds, or all of it for a live reader)."""
        last = max(segment.marks) + 1
        motion = mouth_motion(segment.marks, segment.start, last)
        if motion is None or len(motion) <= self.pause_frames:
            return None
        moving = np.flatnonzero(motion > STILL)
        said = len(speaking_frames(motion)) if self.speech_only else len(moving)
        if said < self.speech_frames or last - (segment.start + moving[-1] + 1) < self.pause_frames:
            return None
        return segment.start + int(moving[-1]) + 1 + self.keep_frames

    def _speaks(self, segment: _Segment) -> bool:
        motion = mouth_motion(segment.marks, segment.start, max(segment.marks) + 1)
        return motion is not None and int((motion > STILL).sum()) >= self.speech_frames

    def _trim(self, segment: _Segment) -> _Segment:
        """The segment without what lies more than ``margin`` before its speech begins and after it ends
        (``speaking_frames``: a still mouth's jitter bumps do not count). With movement above STILL alone,
        the synthetic talks' utterances kept a median 0.5 s more than their cues on either side and read
        at WER 1.13; around speech, medians of -0.04 and +0.09 s and 0.94 (margin=0.15, one checkpoint)."""
        if self.margin_frames is None:
            return segment
        motion = mouth_motion(segment.marks, segment.start, segment.end)
        moving = speaking_frames(motion) if motion is not None else np.array([], int)
        if not len(moving):
            return segment
        last = segment.start + int(moving[-1]) + 1 + self.margin_frames
        if last < segment.end:
            segment.split(last)
        first = segment.start + int(moving[0]) - self.margin_frames
        return segment.split(first) if first > segment.start else segment

    def _finish(self, segment: _Segment, face: int) -> Utterance | None:
        if segment.end - segment.start < self.min_frames or len(segment.marks) < 2:
            return None
        if not self._speaks(segment):
            return None  # silence
        segment = self._trim(segment)
        if len(segment.marks) < 2:
            return None
        return self._utterance(face, segment)

    # -- the stream -----------------------------------------------------------------------------------

    def read(self, path: str | Path, summary: StreamSummary | None = None,
             progress: Callable[[int], None] | None = None) -> Iterator[Utterance]:
        """Utterances of every face as they end (in order of their end); ``summary`` is filled in
        as the video is read. Raises ExtractionError for a file that cannot be read, is too short,
        or shows no face long enough to read."""
        summary = summary if summary is not None else StreamSummary()
        cutter = UtteranceCutter(self)
        stream = read_frames(path, self.fps)
        for frame in stream:
            yield from cutter.feed(frame)
            if progress is not None:
                progress(cutter.frames)
        yield from cutter.close()
        cutter.summarise(summary)
        summary.shortfall = stream.shortfall
        frames = cutter.frames
        if frames < self.min_frames:
            cut = f" ({stream.shortfall.description})" if stream.shortfall else ""
            raise ExtractionError("too_short", path, f"the video lasts {frames / self.fps:.2f} s, at least "
                                  f"{self.min_frames / self.fps:.2f} s needed to read it{cut}")
        if not cutter.covered:
            reason = "no_face" if not summary.faces else "few_faces"
            raise ExtractionError(reason, path, "no face seen long enough to read (at least "
                                  f"{self.min_frames / self.fps:.2f} s)" if summary.faces else
                                  "no face found in any examined frame")

    # -- given spans ----------------------------------------------------------------------------------

    def read_spans(self, path: str | Path, spans: Sequence[tuple[float, float]],
                   progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, Utterance | ExtractionError]]:
        """Mouth crops of the face seen most over each span ``(start, end)`` in seconds (a subtitle
        cue's times), as ``(span index, Utterance)``, or ``(span index, ExtractionError)`` for a span
        without a face on ``extractor.min_face_fraction`` of its examined frames; one pass over the
        video in order of time. Frame ``k`` (time ``k / fps``) belongs to a span when start <= k / fps
        < end. Faces are searched afresh at each span's first frame (captions often cross scene cuts)
        and landmarks fitted only inside spans, so uncaptioned stretches cost only their decoding.
        Raises ExtractionError for a file that cannot be read."""
        order = sorted(range(len(spans)), key=lambda i: tuple(spans[i]))
        bounds = {i: (int(np.ceil(spans[i][0] * self.fps - 1e-6)), int(np.ceil(spans[i][1] * self.fps - 1e-6)))
                  for i in order}
        queue = deque(i for i in order if bounds[i][1] > bounds[i][0])
        tracker = FaceTracker(self.extractor, step=self.step, lost_after=self.lost_frames)
        segments: dict[int, _Segment] = {}
        last_marks: dict[int, np.ndarray] = {}
        examined = 0
        last: Frame | None = None  # the latest frame inside a span

        def finish(span: int) -> tuple[int, Utterance | ExtractionError]:
            nonlocal examined
            if last is not None and tracker.last_examined < last.index and segments:
                # The span's last frame is examined too (as MouthExtractor does), so the track ends on landmarks.
                examined += 1
                for face, marks in (tracker.update(last, force=True) or {}).items():
                    if face in segments:
                        segments[face].found(last.index, marks, tracker.tracks[face].width)
            candidates = [(len(s.marks), s.face_width, face) for face, s in segments.items() if s.marks]
            seen, _, face = max(candidates) if candidates else (0, 0.0, -1)
            needed = self.extractor.min_face_fraction * max(examined, 1)
            if seen < 2 or seen < needed or segments[face].end - segments[face].start < self.min_frames:
                reason = "few_faces" if seen else "no_face"
                return span, ExtractionError(reason, path, f"{spans[span][0]:.2f}-{spans[span][1]:.2f} s: a face "
                                             f"found in {seen} of {examined} examined frames, at least "
                                             f"{self.extractor.min_face_fraction:.0%} needed")
            segment = segments[face]
            return span, self._utterance(face, segment)

        stream = read_frames(path, self.fps)
        for frame in stream:
            index = frame.index
            while queue and index >= bounds[queue[0]][1]:
                yield finish(queue.popleft())
                segments.clear()
                last_marks.clear()
                examined, last = 0, None
            if progress is not None:
                progress(index + 1)
            if not queue:
                break
            if index < bounds[queue[0]][0]:
                continue
            if index == bounds[queue[0]][0]:
                tracker.restart(index)
            last = frame
            found = tracker.update(frame)
            if found is not None:
                examined += 1
                last_marks.update(found)
                for face, landmarks in found.items():
                    segment = segments.setdefault(face, _Segment(index))
                    segment.found(index, landmarks, tracker.tracks[face].width)
            for face, segment in segments.items():
                patch, origin, shrink = self._patch(frame, last_marks[face])
                segment.patches.append(patch)
                segment.origins.append(origin)
                segment.shrinks.append(shrink)
        if stream.shortfall is not None:
            log.warning("%s", stream.shortfall)
        ended = (last.index + 1 if last is not None else 0) / self.fps
        while queue:  # a span reaching past the end of the video ends with it; one beyond it has no frames
            span = queue.popleft()
            if last is not None and segments:
                yield finish(span)
            else:
                yield span, ExtractionError("too_short", path, f"{spans[span][0]:.2f}-{spans[span][1]:.2f} s lies "
                                            f"beyond the end of the video (its last frame read at {ended:.2f} s)")
            segments.clear()
            last_marks.clear()
            examined, last = 0, None


class UtteranceCutter:
    """One stream being cut into utterances, a frame at a time: ``feed`` each frame in order of index and
    get the utterances that end with it; ``close`` ends those still open. Frames may skip indices (a live
    reader drops frames it cannot keep up with): each face's last patch then stands in for the missing
    frames, so times stay the decoder's, and the next frame is examined at once. A gap longer than a face
    may be lost (a stream lost and reconnected) ends every utterance, as a scene cut does."""

    def __init__(self, reader: UtteranceReader) -> None:
        self.reader = reader
        self.tracker = FaceTracker(reader.extractor, step=reader.step, lost_after=reader.lost_frames)
        self.segments: dict[int, _Segment] = {}
        self.last_marks: dict[int, np.ndarray] = {}  # latest landmarks of each face
        self.covered: list[tuple[int, int]] = []  # frame spans where a face was seen long enough
        self.frames = 0  # index of the last frame fed, plus one
        self._previous_thumb: np.ndarray | None = None
        self._diffs: deque[float] = deque(maxlen=12)  # recent frame differences without a cut
        self._last: Frame | None = None

    def _finish(self, face: int, segment: _Segment) -> Iterator[Utterance]:
        if segment.end - segment.start >= self.reader.min_frames and len(segment.marks) >= 2:
            self._cover(segment.start, segment.end)  # a face was seen (even if silent)
        utterance = self.reader._finish(segment, face)
        if utterance is not None:
            yield utterance

    def _cover(self, start: int, end: int) -> None:
        """Frames [start, end) had a face: joined to the last span when less than ``min_frames`` apart
        (a shorter span without a face is not reported), so a stream read for hours keeps a short list."""
        near, spans = self.reader.min_frames, self.covered
        if spans and start < spans[-1][1] + near and end > spans[-1][0] - near:
            spans[-1] = (min(spans[-1][0], start), max(spans[-1][1], end))
        else:
            spans.append((start, end))

    def _cut(self, frame: Frame) -> bool:
        """Whether ``frame`` starts a new scene (its thumbnail differs from the previous frame's)."""
        luma = frame.luma
        every = max(1, min(luma.shape) // (4 * _THUMB[1]))  # a sparse grid first: 0.05 ms, not 0.7 for 720p
        thumb = cv2.resize(luma[::every, ::every], _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._previous_thumb = self._previous_thumb, thumb
        if previous is None:
            return False
        diff = float(np.abs(thumb - previous).mean())
        if diff > CUT_LEVEL and diff > CUT_RATIO * float(np.median(self._diffs or [0.0])):
            return True
        self._diffs.append(diff)
        return False

    def feed(self, frame: Frame) -> Iterator[Utterance]:
        """The utterances that end at ``frame`` (a scene cut, a lost face, a pause, the longest length)."""
        reader, tracker, segments, last_marks = self.reader, self.tracker, self.segments, self.last_marks
        index = frame.index
        gap = index - self.frames > reader.lost_frames  # longer than a face may be lost: a stream reconnected
        if not gap:
            for segment in segments.values():  # frames dropped before this one: the last patch stands in
                missing = index - segment.end
                segment.patches.extend([segment.patches[-1]] * missing)
                segment.origins.extend([segment.origins[-1]] * missing)
                segment.shrinks.extend([segment.shrinks[-1]] * missing)
        self.frames = index + 1
        self._last = frame
        if self._cut(frame) or gap:
            for face, segment in sorted(segments.items()):
                yield from self._finish(face, segment)
            segments.clear()
            last_marks.clear()
            tracker.restart(index)
        found = tracker.update(frame, force=index - tracker.last_examined > reader.step and tracker.last_examined >= 0)
        if found is not None:
            last_marks.update(found)
            for face in list(segments):
                if face not in found and index - tracker.tracks[face].last_seen >= reader.lost_frames:
                    segment = segments.pop(face)
                    last_marks.pop(face, None)
                    seen = tracker.tracks[face].last_seen + 1
                    if seen > segment.start:
                        segment.split(seen)
                        yield from self._finish(face, segment)
            for face, landmarks in found.items():
                segment = segments.setdefault(face, _Segment(index))
                segment.found(index, landmarks, tracker.tracks[face].width)
                at = reader._pause(segment)
                if at is not None:
                    segments[face] = segment.split(at)
                    yield from self._finish(face, segment)
                elif index - segment.start > reader.pause_frames and not reader._speaks(segment):
                    # A long silence before speech: keep only its last ``keep_frames``.
                    at = index - reader.keep_frames
                    self._cover(segment.start, at)
                    segments[face] = segment.split(at)
        for face, segment in list(segments.items()):
            patch, origin, shrink = reader._patch(frame, last_marks[face])
            segment.patches.append(patch)
            segment.origins.append(origin)
            segment.shrinks.append(shrink)
            if len(segment.patches) > reader.max_frames:
                at = reader._stillest(segment, segment.start + reader.max_frames // 2,
                                      segment.start + reader.max_frames)
                segments[face] = segment.split(at)
                yield from self._finish(face, segment)

    def close(self) -> Iterator[Utterance]:
        """The utterances still open when the stream ends (or is stopped)."""
        tracker, segments, frame = self.tracker, self.segments, self._last
        if frame is not None and tracker.last_examined < frame.index:
            # The last frame is examined too (as MouthExtractor does), so the track ends on landmarks.
            for face, landmarks in (tracker.update(frame, force=True) or {}).items():
                if face in segments:
                    segments[face].found(frame.index, landmarks, tracker.tracks[face].width)
        for face, segment in sorted(segments.items()):
            # Frames after the face was last missed are not part of its utterance.
            seen = tracker.tracks[face].last_seen
            if tracker.last_examined > seen:
                segment.split(max(seen + 1, segment.start))
            yield from self._finish(face, segment)
        segments.clear()

    def mouth_box(self) -> tuple[float, float, float, float] | None:
        """Where the largest tracked face's mouth was last seen (x0, y0, x1, y1 source pixels): for a window."""
        if not self.last_marks:
            return None
        face = max(self.last_marks, key=lambda f: self.tracker.tracks[f].width)
        mouth = self.last_marks[face][MOUTH]
        return (*mouth.min(axis=0), *mouth.max(axis=0))

    def summarise(self, summary: StreamSummary) -> None:
        """What was read so far: frames, faces and the spans without a face to read."""
        fps, minimum = self.reader.fps, self.reader.min_frames
        summary.fps = fps
        summary.frames = self.frames
        summary.faces = sum(t.hits >= 3 for t in self.tracker.tracks)
        summary.no_face = [(a / fps, b / fps) for a, b in _gaps(self.covered, self.frames) if b - a >= minimum]


def mouth_motion(marks: dict[int, np.ndarray], start: int, end: int) -> np.ndarray | None:
    """How fast the mouth opens or closes at each frame of [start, end): the change per frame of the
    inner lips' distance over the mouth width (interpolated between landmark frames), averaged over
    5 frames. None with fewer than 3 landmark frames."""
    good = np.array(sorted(k for k in marks if start <= k < end))
    if len(good) < 3:
        return None
    points = np.stack([marks[k] for k in good])
    widths = np.maximum(np.hypot(*(points[:, RIGHT_CORNER] - points[:, LEFT_CORNER]).T), 1.0)
    opening = np.mean([np.hypot(*(points[:, a] - points[:, b]).T) for a, b in _OPEN_PAIRS], axis=0) / widths
    motion = np.abs(np.gradient(np.interp(np.arange(start, end), good, opening)))
    return np.convolve(motion, np.ones(5) / 5, mode="same")


def speaking_frames(motion: np.ndarray) -> np.ndarray:
    """Indices of the frames of ``motion`` in runs above STILL that reach SPEECH_LEVEL somewhere: the
    speech, with its onsets and endings, without a still mouth's brief jitter bumps."""
    above = np.r_[False, motion > STILL, False]
    starts, ends = np.flatnonzero(~above[:-1] & above[1:]), np.flatnonzero(above[:-1] & ~above[1:])
    runs = [np.arange(a, b) for a, b in zip(starts, ends) if motion[a:b].max() > SPEECH_LEVEL]
    return np.concatenate(runs) if runs else np.array([], int)


def _gaps(covered: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The spans of [0, total) that no interval of ``covered`` touches."""
    gaps, position = [], 0
    for start, end in sorted(covered):
        if start > position:
            gaps.append((position, start))
        position = max(position, end)
    if position < total:
        gaps.append((position, total))
    return gaps


def search_edges(length: int, score: Callable[[list[tuple[int, int]]], Sequence[float]], max_trim: int,
                 min_frames: int = 1, step: int = 2, rounds: int = 2) -> tuple[int, int]:
    """Frames ``(a, b)`` to drop from an utterance's start and end, at most ``max_trim`` each and in
    steps of ``step``, that ``score`` (one value per candidate, higher better, called with a list so
    candidates can share a batch) rates best, leaving at least ``min_frames``.

    A coordinate search: the best start for the current end, then the best end for that start,
    ``rounds`` times; ties keep more frames. On the captions quick start's test talk (20 utterances read
    with margin=0.4, trims of 0-0.8 s each side) two rounds, about 40 readings an utterance, chose as
    well as trying all 121 pairs did (language-model WER 0.35 against 0.37; one round: 0.41).
    """
    seen: dict[tuple[int, int], float] = {}

    def best(candidates: list[tuple[int, int]]) -> tuple[int, int]:
        new = [c for c in candidates if c not in seen]
        if new:
            seen.update(zip(new, (float(s) for s in score(new))))
        return max(candidates, key=lambda c: seen[c])  # the first of equals: candidates run from fewer trims

    a = b = 0
    for _ in range(rounds):
        a = best([(x, b) for x in range(0, max_trim + 1, step) if length - x - b >= min_frames] or [(a, b)])[0]
        b = best([(a, y) for y in range(0, max_trim + 1, step) if length - a - y >= min_frames] or [(a, b)])[1]
    return a, b
