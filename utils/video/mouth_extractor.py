"""Mouth crops from any video OpenCV can decode: the input stage of training data and of inference.

Why it is built this way (the original example ran dlib's HOG detector with upsampling on every
frame, about 5.9 s per GRID clip, and cropped each frame at its own jittering centre):

- Only every ``step``-th frame (and the last) is examined. An examined frame gets a face box from
  the HOG detector run on a small region around the previous box, rescaled so the face is about
  ``_ROI_FACE`` pixels wide (a few ms instead of 13 ms for the full frame); the full frame is
  searched only when there is no previous box or the region search misses. Then the 68 landmarks
  are fitted inside that box.
- Examined frames where the detector finds no face get no landmarks: the crop track there, and on
  the frames between examined ones, is interpolated from the neighbours, then smoothed with a
  Gaussian so the crop does not jitter from frame to frame.
- One scale per clip, from the median mouth width, so lip motion is not confused with zooming.
  ``width_ratio`` (crop width over mouth-corner distance) defaults to the framing the original
  example produced on GRID, so crops made here and its published crops are interchangeable.
- dlib's models load once per process (``load_models`` is cached); the 68-landmark predictor is the
  one shipped in the ``face-recognition-models`` package, so nothing is downloaded.

Frames come back RGB ``uint8`` of shape ``(T, H, W, 3)``, like everything in ``utils.clip_store``.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

MOUTH = slice(48, 68)  # the 20 mouth points of the 68-landmark scheme
LEFT_CORNER, RIGHT_CORNER = 48, 54
DEFAULT_SIZE = (100, 50)
DEFAULT_WIDTH_RATIO = 2.75  # the original example's crop width over mouth width, measured on GRID
_ROI_FACE = 85  # face width (pixels) the local search rescales to; dlib's smallest window is 80
_ROI_PAD = 0.25  # margin around the previous face box, in face widths, for the local search
_DETECT_MAX_SIDE = 640  # full-frame search runs on frames shrunk to this size (faces stay >= 80 px)

REASONS = {
    "missing": "the file does not exist",
    "permission_denied": "permission denied: this user may not read the file",
    "read_error": "the file cannot be read",
    "empty_file": "the file is empty",
    "decode_error": "OpenCV cannot decode a video frame from the file",
    "too_short": "too few frames decoded (a very short or truncated video)",
    "no_face": "no face found in any examined frame",
    "few_faces": "a face found in too few of the examined frames",
}


class ExtractionError(Exception):
    """A clip that yields no mouth crops: ``reason`` is a key of ``REASONS``, ``str()`` names the file."""

    def __init__(self, reason: str, path: str | Path, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown extraction failure reason {reason!r}")
        self.reason = reason
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{path}: {detail}")


@dataclass(frozen=True)
class MouthClip:
    """Mouth crops of one clip and where they came from.

    Geometry: crop pixel ``(u, v)`` of frame ``t`` shows source pixel
    ``(x, y) = centres[t] + ((u, v) - ((W - 1) / 2, (H - 1) / 2)) / scale``.
    """

    frames: np.ndarray  # (T, H, W, 3) RGB uint8
    centres: np.ndarray  # (T, 2) float: the smoothed mouth centre (x, y) in source pixels
    scale: float  # crop pixels per source pixel, one value for the whole clip
    examined: np.ndarray  # indices of the frames the detector ran on
    found: np.ndarray  # bool per examined frame: a face was found there
    fps: float
    source_size: tuple[int, int]  # (width, height) of the source frames

    @property
    def missed(self) -> int:
        """Examined frames whose crop position was interpolated because no face was found."""
        return int((~self.found).sum())


def load_models(
    predictor_path: str | Path | None = None,
) -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    """dlib's HOG face detector and 68-landmark predictor, loaded once per process (about 1.2 s).

    Without a path, the predictor shipped in the ``face-recognition-models`` package.
    """
    if predictor_path is None:
        import face_recognition_models

        predictor_path = face_recognition_models.pose_predictor_model_location()
    return _load_models(str(Path(predictor_path).resolve()))


@functools.cache
def _load_models(predictor_path: str) -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path)


def _quiet_ffmpeg() -> None:
    """Keep FFmpeg's own messages ("moov atom not found", "ac-tex damaged") off the console.

    OpenCV's FFmpeg backend logs straight to stderr, where they reached ``infer.py``'s users beside
    our one-line reason. OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` once, when the first video of the
    process is opened, so this runs at import; a value the user set is kept.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


_quiet_ffmpeg()


def _check_readable(path: Path) -> None:
    """ExtractionError with the OS's reason when ``path`` cannot be read, before OpenCV hides it.

    OpenCV reports an unreadable file only as one that yields no frames, so a file of mode 000 was
    called "not a video".
    """
    if not path.is_file():
        raise ExtractionError("missing", path, REASONS["missing"])
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except PermissionError:
        raise ExtractionError("permission_denied", path, REASONS["permission_denied"]) from None
    except OSError as err:
        raise ExtractionError("read_error", path, f"{REASONS['read_error']} ({err.strerror or err})") from None
    if empty:
        raise ExtractionError("empty_file", path, REASONS["empty_file"])


def read_video(path: str | Path) -> tuple[list[np.ndarray], float]:
    """Every frame of a video (BGR, as OpenCV decodes it) and its frame rate (25 when unknown)."""
    path = Path(path)
    _check_readable(path)
    cap = cv2.VideoCapture(str(path))
    try:
        frames = []
        if cap.isOpened():
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(frame)
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    if not frames:
        raise ExtractionError("decode_error", path, REASONS["decode_error"] + " (not a video or damaged)")
    return frames, (fps if math.isfinite(fps) and fps > 0 else 25.0)


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


def crop_frames(frames: list[np.ndarray], centres: np.ndarray, scale: float,
                size: tuple[int, int]) -> np.ndarray:
    """Crops of ``size`` (W, H) centred on ``centres`` at ``scale``, sampled straight from each frame.

    Pixels outside the frame repeat its border. When shrinking by more than 1.25x the source is
    blurred first so the crop does not alias.
    """
    w, h = size
    out = np.empty((len(frames), h, w, frames[0].shape[2]), dtype=np.uint8)
    sigma = 0.5 * math.sqrt(1 / scale**2 - 1) if scale < 0.8 else 0.0
    margin = int(math.ceil(3 * sigma)) + 2
    for i, (frame, (cx, cy)) in enumerate(zip(frames, centres)):
        src_x, src_y = 0, 0
        if sigma:
            half_w, half_h = w / scale / 2 + margin, h / scale / 2 + margin
            x0, y0 = max(0, int(cx - half_w)), max(0, int(cy - half_h))
            x1, y1 = min(frame.shape[1], int(cx + half_w) + 1), min(frame.shape[0], int(cy + half_h) + 1)
            if x1 > x0 and y1 > y0:
                frame = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), sigma)
                src_x, src_y = x0, y0
        matrix = np.array([[scale, 0.0, (w - 1) / 2 - scale * (cx - src_x)],
                           [0.0, scale, (h - 1) / 2 - scale * (cy - src_y)]])
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
    ) -> None:
        """Load dlib's models (once per process) and keep the settings.

        size: crop (width, height). step: examine every step-th frame (1 = every frame; the track
        between examined frames is interpolated). smooth: Gaussian sigma of the crop track, in
        frames. width_ratio: crop width over the clip's median mouth width. min_frames: fewer
        decoded frames are rejected as too_short. min_face_fraction: the share of examined frames
        that must show a face, else no_face / few_faces.
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
        self.width_ratio = width_ratio
        self.min_frames = min_frames
        self.min_face_fraction = min_face_fraction
        self.detector, self.predictor = load_models(predictor_path)

    def extract(self, path: str | Path) -> MouthClip:
        """Mouth crops of a video file; raises ExtractionError (naming the file) when it has none."""
        frames, fps = read_video(path)
        return self._extract(frames, fps, path, bgr=True)

    def extract_frames(self, frames: np.ndarray | list[np.ndarray], fps: float = 25.0,
                       name: str = "<frames>") -> MouthClip:
        """Mouth crops of frames already in memory (RGB uint8, e.g. from a camera)."""
        frames = list(frames)
        if not frames:
            raise ExtractionError("too_short", name, "no frames given")
        return self._extract(frames, fps, name, bgr=False)

    # -- detection -----------------------------------------------------------------------------------

    def _detect_full(self, gray: np.ndarray, upsample: int, previous: np.ndarray | None) -> np.ndarray | None:
        shrink = min(1.0, _DETECT_MAX_SIDE / max(gray.shape))
        image = gray if shrink == 1.0 else cv2.resize(gray, None, fx=shrink, fy=shrink,
                                                      interpolation=cv2.INTER_AREA)
        boxes = [_box(r, shrink) for r in self.detector(image, upsample)]
        return _closest(boxes, previous) if boxes else None

    def _detect_near(self, gray: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        face = max(previous[2] - previous[0], previous[3] - previous[1], 1.0)
        pad = _ROI_PAD * face
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

    def _landmark_pass(self, grays: dict[int, np.ndarray], upsample: int) -> dict[int, np.ndarray]:
        """68 landmarks for every examined frame where a face is found, keyed by frame index."""
        found: dict[int, np.ndarray] = {}
        previous = None
        for t, gray in grays.items():
            box = self._detect_near(gray, previous) if previous is not None else None
            if box is None:
                box = self._detect_full(gray, upsample, previous)
            if box is None:
                continue
            shape = self.predictor(gray, _rect(box))
            found[t] = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            previous = box
        return found

    def _extract(self, frames: list[np.ndarray], fps: float, name: str | Path, bgr: bool) -> MouthClip:
        if len(frames) < self.min_frames:
            raise ExtractionError("too_short", name, f"only {len(frames)} frame(s) decoded, "
                                  f"at least {self.min_frames} needed (a very short or truncated video)")
        examined = np.unique(np.r_[np.arange(0, len(frames), self.step), len(frames) - 1])
        to_gray = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
        grays = {int(t): cv2.cvtColor(frames[t], to_gray) for t in examined}
        landmarks = self._landmark_pass(grays, upsample=0)
        if not landmarks:
            # Faces under 80 pixels need the detector's upsampling; try it on three frames first.
            probes = [int(examined[i]) for i in sorted({0, len(examined) // 2, len(examined) - 1})]
            if any(self._detect_full(grays[t], 1, None) is not None for t in probes):
                landmarks = self._landmark_pass(grays, upsample=1)
        found = np.array([int(t) in landmarks for t in examined])
        if found.mean() < self.min_face_fraction:
            reason = "few_faces" if found.any() else "no_face"
            raise ExtractionError(reason, name, f"a face found in {found.sum()} of {len(examined)} examined "
                                  f"frames, at least {self.min_face_fraction:.0%} needed")
        good = np.array(sorted(landmarks))
        mouths = np.stack([landmarks[t] for t in good])
        mouth_centres = mouths[:, MOUTH].mean(axis=1)
        times = np.arange(len(frames))
        track = np.stack([np.interp(times, good, mouth_centres[:, d]) for d in range(2)], axis=1)
        centres = gaussian_smooth(track, self.smooth)
        widths = np.hypot(*(mouths[:, RIGHT_CORNER] - mouths[:, LEFT_CORNER]).T)
        scale = self.size[0] / (self.width_ratio * max(float(np.median(widths)), 1.0))
        crops = crop_frames(frames, centres, scale, self.size)
        if bgr:
            crops = np.ascontiguousarray(crops[..., ::-1])
        height, width = frames[0].shape[:2]
        return MouthClip(crops, centres, scale, examined, found, float(fps), (width, height))
