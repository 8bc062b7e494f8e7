"""The original example's preprocessing algorithm, rewritten only as the baseline bench/preprocess.py times.

What it does per clip, as the original did: decode every frame; on EVERY frame run dlib's HOG
face detector with one upsampling and fit the 68 landmarks in the last face found; take the
mouth width from the first frame (its min and max x shifted by 19% of their own value, the
original's arithmetic), resize the WHOLE frame by 100 / that width, cut 100x50 around that frame's
mouth centroid, and write one PNG per frame to ``{tgt}/{speaker}/{clip}/mouth_NNN.png``. A clip
with a frame lacking a face leaves an empty folder, and an existing folder is skipped.

Differences that do not change the cost: frames are decoded with OpenCV instead of scikit-video
and resized with OpenCV instead of scipy's imresize.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from utils.data.clip_store import PNG_PATTERN
from utils.video.mouth_extractor import MOUTH, load_models, read_video

MOUTH_WIDTH, MOUTH_HEIGHT = 100, 50
HORIZONTAL_PAD = 0.19


def original_mouth_frames(frames_rgb: list[np.ndarray]) -> tuple[list[np.ndarray], float] | None:
    """The original's crops and its resize ratio, or None when a frame has no face."""
    detector, predictor = load_models()
    ratio = None
    crops = []
    for frame in frames_rgb:
        faces = detector(frame, 1)
        if not faces:
            return None
        shape = predictor(frame, faces[-1])
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)[MOUTH]
        centroid = points.mean(axis=0)
        if ratio is None:
            left = points[:, 0].min() * (1.0 - HORIZONTAL_PAD)
            right = points[:, 0].max() * (1.0 + HORIZONTAL_PAD)
            ratio = MOUTH_WIDTH / float(right - left)
        resized = cv2.resize(frame, (int(frame.shape[1] * ratio), int(frame.shape[0] * ratio)))
        cx, cy = centroid * ratio
        top, left_x = int(cy - MOUTH_HEIGHT / 2), int(cx - MOUTH_WIDTH / 2)
        crops.append(resized[top:top + MOUTH_HEIGHT, left_x:left_x + MOUTH_WIDTH])
    return crops, ratio


def preprocess_clip(video: Path, target_dir: Path) -> bool:
    """One clip the original way; True when its PNGs were written."""
    if target_dir.exists():
        return True
    frames, _ = read_video(video)
    result = original_mouth_frames([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])
    target_dir.mkdir(parents=True)
    if result is None:
        return False
    for i, crop in enumerate(result[0]):
        cv2.imwrite(str(target_dir / PNG_PATTERN.format(i)), crop[..., ::-1])
    return True
