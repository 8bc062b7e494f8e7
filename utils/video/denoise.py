"""Grey face regions made fit for dlib's landmarks when the camera is noisy.

dlib's shape predictor reads the lips from single pixel differences, so sensor noise throws its
landmarks about: on the shared GRID clips with FFmpeg's ``noise=alls=25:allf=t`` (then H.264), the
inner lips' opening frame by frame kept a correlation of 0.63 with the clean clip's, its changes hid
the speech, and the utterance reader took the speech for a still mouth (lwbsza read as 0-1.88 s or
1.68-2.32 s of its 3 s). A Gaussian blur of about the noise's size restores it (0.92 with a blur of
sigma 1.0) but costs a clean video detail (0.96 at 1.0, 0.91 at 2.0), so only a region whose own
noise is well above a clean camera's is blurred, by an amount that grows with the noise.

The noise is Immerkaer's estimate ("Fast noise variance estimation", 1996): the mean absolute
response to a Laplacian difference mask that cancels flat areas and ramps. On the tracker's face
regions it reads 0.4-1.6 grey levels for the shared clips (MPEG-1), their H.264 copies (12-30 fps,
1280x1024, crf 40) and a synthetic talk, and 12.4-14.7 for them with ``alls=25``.
"""
from __future__ import annotations

import cv2
import numpy as np

NOISY = 3.0  # noise (grey levels) from which a region is blurred: about twice a clean camera's
BLUR_PER_LEVEL = 1 / 14  # blur sigma (pixels) per grey level of noise: sigma 1.0 for alls=25's 14 levels
MAX_BLUR = 2.5
_SAMPLE = 160  # the noise is estimated on at most this many pixels square from the region's centre
_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_level(gray: np.ndarray) -> float:
    """The standard deviation (grey levels) of the noise in ``gray``, from its centre at most
    ``_SAMPLE`` pixels square (Immerkaer's estimate); 0 for an image under 3 pixels a side."""
    height, width = gray.shape[:2]
    top, left = max(0, (height - _SAMPLE) // 2), max(0, (width - _SAMPLE) // 2)
    sample = gray[top: top + _SAMPLE, left: left + _SAMPLE].astype(np.float32)
    if min(sample.shape) < 3:
        return 0.0
    response = cv2.filter2D(sample, -1, _MASK)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6)


def for_landmarks(gray: np.ndarray) -> np.ndarray:
    """``gray`` as is when its noise is under ``NOISY``, else blurred by a Gaussian of sigma
    ``noise * BLUR_PER_LEVEL`` (at most ``MAX_BLUR``)."""
    noise = noise_level(gray)
    if noise < NOISY:
        return gray
    return cv2.GaussianBlur(gray, (0, 0), min(MAX_BLUR, noise * BLUR_PER_LEVEL))
