"""Mouth regions of word clips as the word-level recipe prepares LRW: landmarks, a similarity transform to
a mean face (landmarks smoothed over time), a fixed grey crop centred on the mouth (96x96).

Unlike GRID's crops (``MouthExtractor.extract``: one scale per clip, no rotation, colour), each frame is
aligned to the mean face by the similarity transform (rotation, scale, shift) that best maps five
stable landmarks, the nose tip and the four eye corners, onto the mean face's, so head tilt and
distance to the camera are taken out, and the crop is centred on the mouth after the transform. The
landmarks are smoothed over time first (a Gaussian of ``smooth`` frames), so the crop does not
jitter. Frames are sampled once, straight from the source (``crop_frames``), blurred first where
they are shrunk, so a 4K phone video does not alias.

The mean face: the stable points of 225 frames of the three real GRID clips in ``../shared/grid``
(three speakers), each frame normalised (eye line level, outer eye corners one unit apart, origin at
the mouth centre), averaged and made left-right symmetric. In those units the mouth is 0.56 wide;
``EYE_SPAN`` puts the outer eye corners 0.8 crop widths apart, so the mouth spans about 45% of the
crop with the nose tip and chin at its edges, as in the recipe's LRW crops.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from utils.video.framing import similarity
from utils.video.mouth_extractor import MOUTH, MouthExtractor, crop_frames, decode_video, gaussian_smooth
from utils.video.reader import Shortfall

STABLE_POINTS = (33, 36, 39, 42, 45)  # nose tip, outer and inner corners of both eyes (68-point scheme)
MEAN_FACE = np.array([(0.0, -0.30), (-0.50, -0.89), (-0.21, -0.88), (0.21, -0.88), (0.50, -0.89)])
EYE_SPAN = 0.8  # outer eye corners apart, in crop widths
WORD_CROP_SIZE = 96


def aligned_crops(frames: Sequence[np.ndarray], landmarks: np.ndarray, size: int = WORD_CROP_SIZE,
                  smooth: float = 2.0, bgr: bool = True) -> np.ndarray:
    """Grey uint8 ``(T, size, size)`` mouth regions of colour ``frames`` with ``landmarks`` (T, 68, 2)."""
    points = gaussian_smooth(landmarks.reshape(len(landmarks), -1), smooth).reshape(landmarks.shape)
    reference = MEAN_FACE * EYE_SPAN * size
    scales, angles = np.array([similarity(p[list(STABLE_POINTS)], reference)[:2] for p in points]).T
    # The crop's centre on the mean face is the transformed mouth centre: the mouth centre in the frame.
    centres = points[:, MOUTH].mean(1)
    crops = crop_frames(frames, centres, scales, (size, size), -angles)
    to_grey = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
    return np.stack([cv2.cvtColor(crop, to_grey) for crop in crops])


class WordCropper:
    """Grey mouth regions of word clips; create one per process and reuse it (dlib's models load once)."""

    def __init__(self, size: int = WORD_CROP_SIZE, smooth: float = 2.0, step: int = 1,
                 min_frames: int = 10) -> None:
        """size: the square crop's side. smooth: Gaussian sigma of the landmark track, frames. step:
        find landmarks on every step-th frame (29-frame clips afford every frame), interpolating between."""
        if size < 16:
            raise ValueError(f"crop size must be at least 16, got {size}")
        self.size = size
        self.smooth = smooth
        self.extractor = MouthExtractor(size=(size, size), step=step, min_frames=min_frames)

    def crop(self, path: str | Path) -> np.ndarray:
        """Mouth regions of a video file; ExtractionError (naming the file, with a reason) when it has none."""
        return self.crop_video(path)[0]

    def crop_video(self, path: str | Path) -> tuple[np.ndarray, Shortfall | None]:
        """``crop``'s mouth regions and whether the file was read only in part (truncated or damaged:
        cropped as far as it goes)."""
        video = decode_video(path)
        return self.crop_frames(video.frames, path, bgr=True), video.shortfall

    def crop_frames(self, frames: Sequence[np.ndarray], name: str | Path = "<frames>", bgr: bool = False
                    ) -> np.ndarray:
        """Mouth regions of frames in memory (RGB unless ``bgr``)."""
        track = self.extractor.track(frames, name, bgr)
        return aligned_crops(frames, track.every_frame(len(frames)), self.size, self.smooth, bgr)
