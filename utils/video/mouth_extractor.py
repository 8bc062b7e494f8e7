"""Mouth crops of a clip (any video ``utils.video.reader`` decodes): the input stage of training data
and of inference; ``utils.video.utterances`` reuses its detection, landmarks, smoothing and crops
for long videos read as a stream.

Why it is built this way (the original example ran dlib's HOG detector with upsampling on every
frame, about 5.9 s per GRID clip, and cropped each frame at its own jittering centre):

- Only every ``step``-th frame (and the last) is examined. An examined frame gets a face box from
  the HOG detector run on a small region around the previous box, rescaled so the face is about
  ``_ROI_FACE`` pixels wide (a few ms instead of 13 ms for the full frame); the full frame is
  searched only when there is no previous box or the region search misses. Then the 68 landmarks
  are fitted inside that box.
- The full-frame search shrinks the frame to ``DETECT_MAX_SIDE`` pixels, so it sees faces from 80
  pixels (the detector's window) times the shrink: 160 px in a 1280x720 frame. Only when it finds
  no face in the clip does a finer pass (``detect_fine``) search the frame enlarged twice, finding
  faces down to ``FINE_FACE`` pixels; the crops of such a face are enlarged, and past
  ``ENLARGE_LIMIT`` times they carry a warning (``small_face_note``).
- Examined frames where the detector finds no face get no landmarks: the crop track there, and on
  the frames between examined ones, is interpolated from the neighbours, then smoothed with a
  Gaussian so the crop does not jitter from frame to frame.
- With ``upright`` (the default) the crop turns with the head's roll, measured from the eyes and
  smoothed like the centre (``utils.video.roll``), so a tilted head gives an upright mouth crop;
  without it crops are cut axis-aligned, as the original example's were.
- One scale per clip, from the median mouth width, so lip motion is not confused with zooming.
  ``width_ratio`` (crop width over mouth-corner distance) defaults to the framing the original
  example produced on GRID, so crops made here and its published crops are interchangeable.
- dlib's models load once per process (``load_models`` is cached); the 68-landmark predictor is the
  one shipped in the ``face-recognition-models`` package, so nothing is downloaded; the face detector
  is loaded from a copy in the user's cache (``frontal_face_detector``).

Frames come back RGB ``uint8`` of shape ``(T, H, W, 3)``, like everything in ``utils.data.clip_store``.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

from utils.runtime.atomic import make_readable
from utils.runtime.paths import cache_dir
from utils.video.errors import REASONS, ExtractionError  # noqa: F401 (REASONS: re-exported for callers)
from utils.video.framing import (
    DEFAULT_FRAMING,
    LIPNET_PYTORCH,
    PYTORCH_BOX,
    PYTORCH_WIDTH_RATIO,
    check_framing,
    pytorch_geometry,
    resize_boxes,
)
from utils.video.reader import MODEL_FPS, Shortfall, read_frames
from utils.video.roll import roll_angles

MOUTH = slice(48, 68)  # the 20 mouth points of the 68-landmark scheme
LEFT_CORNER, RIGHT_CORNER = 48, 54
DEFAULT_SIZE = (100, 50)
DEFAULT_WIDTH_RATIO = 2.75  # the original example's crop width over mouth width, measured on GRID
_ROI_FACE = 85  # face width (pixels) the local search rescales to; dlib's smallest window is 80
ROI_PAD = 0.25  # margin around the previous face box, in face widths, for the local search
DETECT_MAX_SIDE = 640  # full-frame search runs on frames shrunk to this size (faces stay >= 80 px)
FINE_FACE = 40  # smallest face width (source pixels) the finer pass finds: dlib's 80 px window, frame enlarged 2x
FINE_MAX_SIDE = 3840  # the finer pass enlarges frames to at most this size (1080p twice; 4K not at all)
# Crops enlarged more than this many times from the video (crop pixels per source pixel) get a warning:
# GRID's faces (about 105 px wide at 360x288) are cropped at 0.9-1.1 times, a 70 px face at about 1.6.
ENLARGE_LIMIT = 2.0

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class MouthClip:
    """Mouth crops of one clip and where they came from.

    Geometry: crop pixel ``(u, v)`` of frame ``t`` shows source pixel
    ``(x, y) = centres[t] + R(angles[t]) ((u, v) - ((W - 1) / 2, (H - 1) / 2)) / scale``, R turning by
    the angle (no turn when ``angles`` is None).
    """

    frames: np.ndarray  # (T, H, W, 3) RGB uint8
    centres: np.ndarray  # (T, 2) float: the smoothed mouth centre (x, y) in source pixels
    scale: float  # crop pixels per source pixel, one value for the whole clip
    examined: np.ndarray  # indices of the frames the detector ran on
    found: np.ndarray  # bool per examined frame: a face was found there
    fps: float
    source_size: tuple[int, int]  # (width, height) of the source frames
    shortfall: Shortfall | None = None  # the file was truncated or damaged, read only in part
    face_width: float = 0.0  # median width (source pixels) of the face boxes found
    angles: np.ndarray | None = None  # (T,) radians each crop is turned by (``upright``); None: axis-aligned

    @property
    def missed(self) -> int:
        """Examined frames whose crop position was interpolated because no face was found."""
        return int((~self.found).sum())

    @property
    def small_face(self) -> str | None:
        """Why the face is too small to read well (``small_face_note``), or None."""
        return small_face_note(self.scale, self.face_width)


def small_face_note(scale: float, face_width: float) -> str | None:
    """Why crops cut at ``scale`` (crop pixels per source pixel) from a face ``face_width`` pixels wide are
    too small to read well: enlarged more than ``ENLARGE_LIMIT`` times, so the crop shows fewer than half as
    many source pixels across as it has (a mouth under 18 source pixels wide for 100-pixel crops). None
    when they are not."""
    if scale <= ENLARGE_LIMIT:
        return None
    return (f"face about {face_width:.0f} px wide: its mouth crops are enlarged {scale:.1f}x from the video "
            f"(over {ENLARGE_LIMIT:g}x), too small to read well")


@dataclass(frozen=True)
class LandmarkTrack:
    """The landmarks ``MouthExtractor.track`` found in a clip."""

    examined: np.ndarray  # indices of the frames the detector ran on
    found: np.ndarray  # bool per examined frame: a face was found there
    good: np.ndarray  # indices of the frames with landmarks (examined, with a face)
    points: np.ndarray  # (len(good), 68, 2) landmarks, source pixels
    face_widths: np.ndarray  # (len(good),) widths of the face boxes they were fitted in, source pixels

    def every_frame(self, count: int) -> np.ndarray:
        """(count, 68, 2) landmarks of every frame, interpolated linearly in time between found ones."""
        flat = self.points.reshape(len(self.good), -1)
        times = np.arange(count)
        return np.stack([np.interp(times, self.good, flat[:, d]) for d in range(flat.shape[1])], 1).reshape(
            count, -1, 2)


def load_models(
    predictor_path: str | Path | None = None,
) -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    """dlib's HOG face detector and 68-landmark predictor, loaded once per process (the 100 MB predictor
    takes about a second; the detector comes from ``frontal_face_detector``'s cached copy).

    Without a path, the predictor shipped in the ``face-recognition-models`` package.
    """
    if predictor_path is None:
        import face_recognition_models

        predictor_path = face_recognition_models.pose_predictor_model_location()
    return _load_models(str(Path(predictor_path).resolve()))


@functools.cache
def _load_models(predictor_path: str) -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    return frontal_face_detector(), dlib.shape_predictor(predictor_path)


def frontal_face_detector(cache: Path | None = None) -> dlib.fhog_object_detector:
    """dlib's HOG face detector, from a copy saved in the user's cache (``cache_dir()``) after the first use.

    dlib builds it from a compressed copy inside its library: 0.8-2.5 s, as long as MXNet's import and
    most of a video reader's start-up, while its own serialisation of the same detector loads in 7 ms.
    The copy is named after dlib's version; a damaged or unwritable one only costs the slow build.
    """
    path = (cache or cache_dir()) / f"dlib-{dlib.__version__}-frontal_face_detector.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except RuntimeError:
            pass  # damaged: built and saved again below
    detector = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            detector.save(tmp)
            make_readable(tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except (OSError, RuntimeError):
        pass
    return detector


@dataclass(frozen=True)
class DecodedVideo:
    """Every frame of a video file (BGR, upright, at ``fps``) and whether it was read only in part."""

    frames: list[np.ndarray]
    fps: float
    shortfall: Shortfall | None


def decode_video(path: str | Path, fps: float = MODEL_FPS) -> DecodedVideo:
    """Every frame of a video, upright and resampled to ``fps`` by presentation time (BGR, as OpenCV
    gives it); see ``utils.video.reader``. A GRID clip comes back unchanged."""
    stream = read_frames(path, fps)
    frames = [frame.bgr() for frame in stream]
    return DecodedVideo(frames, fps, stream.shortfall)


def read_video(path: str | Path, fps: float = MODEL_FPS) -> tuple[list[np.ndarray], float]:
    """``decode_video``'s frames and rate, for callers that keep no record of a file read in part: it
    is logged as a warning instead."""
    video = decode_video(path, fps)
    if video.shortfall is not None:
        log.warning("%s", video.shortfall)
    return video.frames, video.fps


def _rect(box: np.ndarray) -> dlib.rectangle:
    left, top, right, bottom = (int(round(v)) for v in box)
    return dlib.rectangle(left, top, right, bottom)


def _box(rect: dlib.rectangle, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A dlib rectangle found in a rescaled, shifted image, back in source pixels (l, t, r, b)."""
    ox, oy = offset
    return np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64) / scale + (
        ox, oy, ox, oy)


def _closest(boxes: list[np.ndarray], target: np.ndarray | None) -> np.ndarray:
    """The box nearest the previous face, or the largest one when there is no previous face."""
    if target is None:
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    centre = (target[:2] + target[2:]) / 2
    return min(boxes, key=lambda b: float(np.hypot(*((b[:2] + b[2:]) / 2 - centre))))


def gaussian_smooth(track: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth a (T, D) track along time, repeating the end values so the ends are not pulled in."""
    if sigma <= 0 or len(track) < 2:
        return track.astype(np.float64)
    radius = int(math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(track.astype(np.float64), ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(track.shape[1])], axis=1)


def _blur_sigma(scale: float) -> float:
    """The anti-aliasing blur (source pixels) before a crop that shrinks by ``1 / scale``; see ``crop_frames``."""
    return 0.5 * math.sqrt(1 / scale**2 - 1) if scale < 0.8 else 0.0


def crop_source_box(centre: Sequence[float], scale: float, size: tuple[int, int],
                    angle: float = 0.0) -> tuple[int, int, int, int]:
    """The source pixels (x0, y0, x1, y1, not clipped to the frame) that ``crop_frames`` reads for a crop
    at ``centre``, its blur's margin included: a patch holding them gives the crop the whole frame gives."""
    margin = int(math.ceil(3 * _blur_sigma(scale))) + 2
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))  # a turned crop covers a wider box of the source
    w, h = size
    half_w, half_h = (w * cos + h * sin) / scale / 2 + margin, (w * sin + h * cos) / scale / 2 + margin
    cx, cy = centre
    return int(cx - half_w), int(cy - half_h), int(cx + half_w) + 1, int(cy + half_h) + 1


def crop_frames(frames: Sequence[np.ndarray], centres: np.ndarray, scale: float | np.ndarray,
                size: tuple[int, int], angles: np.ndarray | None = None) -> np.ndarray:
    """Crops of ``size`` (W, H) centred on ``centres`` at ``scale``, sampled straight from each frame.

    ``scale`` is one value for all frames or one per frame (frames that are themselves patches cut
    at different scales). ``angles`` (radians, one per frame) turn each crop: source direction
    ``(cos a, sin a)`` becomes the crop's x axis (the similarity transforms of word crops). Pixels
    outside the frame repeat its border. When shrinking by more than 1.25x the source is blurred
    first so the crop does not alias, with sigma = sqrt(1 / scale**2 - 1) / 2 source pixels (a crop
    pixel's footprint less the source pixel's own). How sharp crops of an upscaled video come out
    depends on how it was upscaled: on a noise texture enlarged 2-6x, bicubic upscales give crops within
    4-12% of the original's sharpness (variance of the Laplacian), bilinear ones 71-77%. scikit-image's
    smaller sigma, (1 / scale - 1) / 2, gives 91-97% for bilinear but 141-151% for bicubic, so this one
    was kept (a GRID clip's 1280x1024 H.264 copy, enlarged bilinearly, comes out at 55%: see
    ``tests/conftest.py::real_model``).
    """
    w, h = size
    scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), (len(frames),))
    turns = np.zeros(len(frames)) if angles is None else np.asarray(angles, dtype=np.float64)
    out = np.empty((len(frames), h, w, frames[0].shape[2]), dtype=np.uint8)
    for i, (frame, (cx, cy), s, a) in enumerate(zip(frames, centres, scales, turns)):
        sigma = _blur_sigma(s)
        src_x, src_y = 0, 0
        if sigma:
            x0, y0, x1, y1 = crop_source_box((cx, cy), s, size, a)
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(frame.shape[1], x1), min(frame.shape[0], y1)
            if x1 > x0 and y1 > y0:
                frame = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), sigma)
                src_x, src_y = x0, y0
        rotation = s * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        shift = np.array([(w - 1) / 2, (h - 1) / 2]) - rotation @ (cx - src_x, cy - src_y)
        matrix = np.hstack([rotation, shift[:, None]])
        out[i] = cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


class MouthExtractor:
    """Finds, tracks and crops the mouth in a clip; create one per process and reuse it."""

    def __init__(
        self,
        size: tuple[int, int] = DEFAULT_SIZE,
        step: int = 3,
        smooth: float = 2.0,
        width_ratio: float = DEFAULT_WIDTH_RATIO,
        min_frames: int = 10,
        min_face_fraction: float = 0.7,
        predictor_path: str | Path | None = None,
        framing: str = DEFAULT_FRAMING,
        upright: bool = True,
    ) -> None:
        """Load dlib's models (once per process) and keep the settings.

        size: crop (width, height). step: examine every step-th frame (1 = every frame; the track
        between examined frames is interpolated). smooth: Gaussian sigma of the crop track, in
        frames. width_ratio: crop width over the clip's median mouth width. min_frames: fewer
        decoded frames are rejected as too_short. min_face_fraction: the share of examined frames
        that must show a face, else no_face / few_faces. framing: a name of ``utils.video.framing``;
        ``lipnet_pytorch`` aligns each frame to LipNet-PyTorch's mean face instead (smooth, width_ratio
        and upright then do not apply: its alignment turns every crop already). upright: turn each crop
        with the head's roll (``utils.video.roll``); False cuts them axis-aligned, as checkpoints that
        record no upright crops want.
        """
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"crop size must be positive, got {size}")
        if step < 1:
            raise ValueError(f"step must be at least 1, got {step}")
        if not 0 < min_face_fraction <= 1:
            raise ValueError(f"min_face_fraction must be in (0, 1], got {min_face_fraction}")
        self.size = (int(size[0]), int(size[1]))
        self.step = step
        self.smooth = smooth
        self.framing = check_framing(framing)
        self.width_ratio = PYTORCH_WIDTH_RATIO if framing == LIPNET_PYTORCH else width_ratio
        self.min_frames = min_frames
        self.min_face_fraction = min_face_fraction
        self.upright = upright
        self.detector, self.predictor = load_models(predictor_path)

    def extract(self, path: str | Path) -> MouthClip:
        """Mouth crops of a video file; raises ExtractionError (naming the file) when it has none.
        A truncated or damaged file is cropped as far as it goes, with ``shortfall`` saying so.

        The decoded pictures are kept as they come (YUV) and converted to colour only where they are
        used: whole for the examined frames' grey, and for the crops only the patch each one reads
        (``crop_source_box``), converted as the stream reader converts its patches (``Frame.rgb``);
        converting every whole frame cost as much as decoding it."""
        stream = read_frames(path)
        frames = list(stream)
        if self.framing == LIPNET_PYTORCH:
            return self._extract_aligned(len(frames), lambda t: cv2.cvtColor(frames[t].bgr(), cv2.COLOR_BGR2GRAY),
                                         lambda t, box: frames[t].rgb(_clipped(box, frames[t].size)),
                                         frames[0].size if frames else (0, 0), stream.fps, path, stream.shortfall)

        def crops(centres: np.ndarray, scale: float, angles: np.ndarray | None) -> np.ndarray:
            turns = np.zeros(len(centres)) if angles is None else angles
            patches, origins = zip(*(frame.rgb(_clipped(crop_source_box(centre, scale, self.size, a), frame.size))
                                     for frame, centre, a in zip(frames, centres, turns)))
            return crop_frames(patches, centres - np.asarray(origins, np.float64), scale, self.size, angles)

        return self._extract(len(frames), lambda t: cv2.cvtColor(frames[t].bgr(), cv2.COLOR_BGR2GRAY), crops,
                             frames[0].size if frames else (0, 0), stream.fps, path, stream.shortfall)

    def extract_frames(self, frames: np.ndarray | list[np.ndarray], fps: float = 25.0,
                       name: str = "<frames>") -> MouthClip:
        """Mouth crops of frames already in memory (RGB uint8, e.g. from a camera)."""
        frames = list(frames)
        if not frames:
            raise ExtractionError("too_short", name, "no frames given")
        if self.framing == LIPNET_PYTORCH:
            return self._extract_aligned(len(frames), lambda t: cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY),
                                         lambda t, box: (frames[t], (0, 0)), frames[0].shape[1::-1], fps, name)
        return self._extract(len(frames), lambda t: cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY),
                             lambda centres, scale, angles: crop_frames(frames, centres, scale, self.size, angles),
                             frames[0].shape[1::-1], fps, name)

    # -- detection -----------------------------------------------------------------------------------

    def detect_all(self, gray: np.ndarray, upsample: int = 0) -> list[np.ndarray]:
        """Every face box (l, t, r, b, source pixels) of a grey frame, searched on a copy shrunk to at
        most ``DETECT_MAX_SIDE`` pixels, so a 4K frame costs what a 640-pixel one does."""
        shrink = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
        image = gray if shrink == 1.0 else cv2.resize(gray, None, fx=shrink, fy=shrink,
                                                      interpolation=cv2.INTER_AREA)
        return [_box(r, shrink) for r in self.detector(image, upsample)]

    def detect_fine(self, gray: np.ndarray) -> list[np.ndarray]:
        """Every face box (l, t, r, b, source pixels) of a grey frame down to ``FINE_FACE`` pixels wide: the
        frame enlarged twice (to at most ``FINE_MAX_SIDE``), which the detector's 80-pixel window needs. It
        costs several times ``detect_all`` (about 0.3 s for 1280x720), so it runs only where that finds no face."""
        zoom = min(2.0, FINE_MAX_SIDE / max(gray.shape))
        image = cv2.resize(gray, None, fx=zoom, fy=zoom,
                           interpolation=cv2.INTER_LINEAR if zoom > 1 else cv2.INTER_AREA)
        return [_box(r, zoom) for r in self.detector(image, 0)]

    def _detect_full(self, gray: np.ndarray, fine: bool, previous: np.ndarray | None) -> np.ndarray | None:
        boxes = self.detect_fine(gray) if fine else self.detect_all(gray)
        return _closest(boxes, previous) if boxes else None

    def detect_near(self, gray: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        face = max(previous[2] - previous[0], previous[3] - previous[1], 1.0)
        pad = ROI_PAD * face
        x0, y0 = max(0, int(previous[0] - pad)), max(0, int(previous[1] - pad))
        x1 = min(gray.shape[1], int(previous[2] + pad) + 1)
        y1 = min(gray.shape[0], int(previous[3] + pad) + 1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = _ROI_FACE / face
        roi = cv2.resize(gray[y0:y1, x0:x1], None, fx=scale, fy=scale,
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        boxes = [_box(r, scale, (x0, y0)) for r in self.detector(roi, 0)]
        return _closest(boxes, previous) if boxes else None

    def landmarks(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 68 landmarks (68, 2) of the face in ``box``."""
        shape = self.predictor(gray, _rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def _landmark_pass(self, grays: dict[int, np.ndarray], fine: bool) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The face box and 68 landmarks of every examined frame where a face is found, keyed by frame index
        (``fine``: the full-frame search is ``detect_fine``)."""
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        previous = None
        for t, gray in grays.items():
            box = self.detect_near(gray, previous) if previous is not None else None
            if box is None:
                box = self._detect_full(gray, fine, previous)
            if box is None:
                continue
            found[t] = box, self.landmarks(gray, box)
            previous = box
        return found

    def track(self, frames: Sequence[np.ndarray], name: str | Path, bgr: bool = True) -> LandmarkTrack:
        """The 68 landmarks of every examined frame that shows a face; raises ExtractionError (naming
        ``name``) when the clip is too short or too few examined frames show one."""
        to_gray = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
        return self._track(len(frames), lambda t: cv2.cvtColor(frames[t], to_gray), name)

    def _track(self, count: int, gray: Callable[[int], np.ndarray], name: str | Path) -> LandmarkTrack:
        """``track`` of ``count`` frames, frame ``t``'s grey image being ``gray(t)``."""
        if count < self.min_frames:
            raise ExtractionError("too_short", name, f"only {count} frame(s) decoded, "
                                  f"at least {self.min_frames} needed (a very short or truncated video)")
        examined = np.unique(np.r_[np.arange(0, count, self.step), count - 1])
        grays = {int(t): gray(int(t)) for t in examined}
        landmarks = self._landmark_pass(grays, fine=False)
        if not landmarks:
            # Faces too small for the shrunk frame need the finer pass; try it on three frames first.
            probes = [int(examined[i]) for i in sorted({0, len(examined) // 2, len(examined) - 1})]
            if any(self._detect_full(grays[t], True, None) is not None for t in probes):
                landmarks = self._landmark_pass(grays, fine=True)
        found = np.array([int(t) in landmarks for t in examined])
        if found.mean() < self.min_face_fraction:
            reason = "few_faces" if found.any() else "no_face"
            raise ExtractionError(reason, name, f"a face found in {found.sum()} of {len(examined)} examined "
                                  f"frames, at least {self.min_face_fraction:.0%} needed")
        good = np.array(sorted(landmarks))
        return LandmarkTrack(examined, found, good, np.stack([landmarks[t][1] for t in good]),
                             np.array([landmarks[t][0][2] - landmarks[t][0][0] for t in good]))

    def _extract(self, count: int, gray: Callable[[int], np.ndarray],
                 crops: Callable[[np.ndarray, float, np.ndarray | None], np.ndarray], source_size: tuple[int, int],
                 fps: float, name: str | Path, shortfall: Shortfall | None = None) -> MouthClip:
        """The crops of ``count`` frames (RGB ``crops(centres, scale, angles)``) from the track of their grey images."""
        track = self._track(count, gray, name)
        examined, found, good, mouths = track.examined, track.found, track.good, track.points
        face_width = float(np.median(track.face_widths))
        mouth_centres = mouths[:, MOUTH].mean(axis=1)
        times = np.arange(count)
        track = np.stack([np.interp(times, good, mouth_centres[:, d]) for d in range(2)], axis=1)
        centres = gaussian_smooth(track, self.smooth)
        widths = np.hypot(*(mouths[:, RIGHT_CORNER] - mouths[:, LEFT_CORNER]).T)
        scale = self.size[0] / (self.width_ratio * max(float(np.median(widths)), 1.0))
        angles = self.roll(times, good, mouths)
        return MouthClip(crops(centres, scale, angles), centres, scale, examined, found, float(fps), source_size,
                         shortfall, face_width, angles)

    def roll(self, times: np.ndarray, good: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """The crops' angles at ``times`` from the landmarks ``points`` of frames ``good``: the head's roll
        interpolated and smoothed like the centre; None (axis-aligned) unless ``upright``."""
        if not self.upright:
            return None
        return gaussian_smooth(np.interp(times, good, roll_angles(points))[:, None], self.smooth)[:, 0]

    def _extract_aligned(self, count: int, gray: Callable[[int], np.ndarray],
                         patch: Callable[[int, tuple[int, int, int, int]], tuple[np.ndarray, tuple[int, int]]],
                         source_size: tuple[int, int], fps: float, name: str | Path,
                         shortfall: Shortfall | None = None) -> MouthClip:
        """``_extract`` in LipNet-PyTorch's framing (``utils.video.framing``): every frame's landmarks (those of
        frames without a face interpolated) give its box, cut from ``patch(t, source box)`` (RGB, and its
        corner in source pixels), then resized to ``size``. ``scale`` and ``centres`` are the median scale and
        the boxes' centres; each box is also turned."""
        track = self._track(count, gray, name)
        centres, scales, angles = pytorch_geometry(track.every_frame(count))
        patches, origins = zip(*(patch(t, crop_source_box(centre, scale, PYTORCH_BOX, angle))
                                 for t, (centre, scale, angle) in enumerate(zip(centres, scales, angles))))
        boxes = crop_frames(patches, centres - np.asarray(origins, np.float64), scales, PYTORCH_BOX, angles)
        scale = float(np.median(scales)) * self.size[0] / PYTORCH_BOX[0]
        return MouthClip(resize_boxes(boxes, self.size), centres, scale, track.examined, track.found, float(fps),
                         source_size, shortfall, float(np.median(track.face_widths)))


def _clipped(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` clipped to a frame of ``size`` (width, height), at least a pixel wide and high: a crop reaching
    beyond the frame repeats the frame's edge, which the clipped box holds."""
    width, height = size
    x0, y0 = min(max(0, box[0]), width - 1), min(max(0, box[1]), height - 1)
    return x0, y0, max(min(width, box[2]), x0 + 1), max(min(height, box[3]), y0 + 1)
