"""Named crop framings: where a mouth crop is cut from a frame, and in which channel order a network
takes it, so that a network reads crops framed as the ones it was trained on.

- ``lipnet_gluon`` (the default): ``MouthExtractor``'s own framing, the original MXNet Gluon example's:
  the mouth centre tracked and smoothed over the clip, one scale per clip from the median mouth width
  (``width_ratio``), no rotation, 100x50, RGB.
- ``lipnet_pytorch``: LipNet-PyTorch's (github.com/VIPL-Audio-Visual-Speech-Understanding/LipNet-PyTorch,
  ``scripts/extract_lip.py`` and ``demo.py``). Each frame's landmarks 17-67 of the 68-point scheme
  (brows, nose, eyes, mouth; it used face_alignment's landmarks, which follow dlib's scheme) are mapped
  onto its mean face (``PYTORCH_MEAN_FACE``, placed in a 256x256 square with a padding of 0.25) by a
  similarity transform, and a 160x80 box is cut around the mean face's mouth centre (the mean of its last
  20 points, truncated to whole pixels as its scripts do), then resized to 128x64 with Lanczos
  interpolation (its ``dataset.py`` resizes its 160x80 crops so). Its loader and demo read frames with
  OpenCV, so its networks take BGR. Its transform takes the rotation of the least-squares fit and the
  scale as the ratio of the two point sets' spreads (RMS distance to their centroid), not the
  least-squares scale; this module does the same, so its crops are framed as the published ones.
  Where it drops a frame without a face, here the landmarks of such a frame are interpolated from
  its neighbours, so a clip keeps its length (and its alignment with the word times).

``similarity`` (the least-squares fit) is shared with the word-level crops (``utils.video.word_crops``).
"""
from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

LIPNET_GLUON = "lipnet_gluon"
LIPNET_PYTORCH = "lipnet_pytorch"
FRAMINGS = (LIPNET_GLUON, LIPNET_PYTORCH)
DEFAULT_FRAMING = LIPNET_GLUON
CHANNEL_ORDERS = ("rgb", "bgr")
DEFAULT_CHANNEL_ORDER = "rgb"
# The crop size each framing's networks were trained with (its channel order is the network's: a checkpoint's ``crop``).
FRAMING_SIZES = {LIPNET_GLUON: (100, 50), LIPNET_PYTORCH: (128, 64)}
# Landmarks on every how-many frames preprocessing finds (LipNet-PyTorch's crops: every frame's own).
FRAMING_STEPS = {LIPNET_GLUON: 3, LIPNET_PYTORCH: 1}

# LipNet-PyTorch's mean face: (x, y) of landmarks 17-67 (68-point scheme) in a unit square, the values of
# its scripts/extract_lip.py and demo.py (``get_position``), the mean face widely used by face-alignment code.
PYTORCH_MEAN_FACE = np.array([
    (0.000213256, 0.106454), (0.0752622, 0.038915), (0.18113, 0.0187482), (0.29077, 0.0344891),
    (0.393397, 0.0773906), (0.586856, 0.0773906), (0.689483, 0.0344891), (0.799124, 0.0187482),
    (0.904991, 0.038915), (0.98004, 0.106454), (0.490127, 0.203352), (0.490127, 0.307009),
    (0.490127, 0.409805), (0.490127, 0.515625), (0.36688, 0.587326), (0.426036, 0.609345),
    (0.490127, 0.628106), (0.554217, 0.609345), (0.613373, 0.587326), (0.121737, 0.216423),
    (0.187122, 0.178758), (0.265825, 0.179852), (0.334606, 0.231733), (0.260918, 0.245099),
    (0.182743, 0.244077), (0.645647, 0.231733), (0.714428, 0.179852), (0.793132, 0.178758),
    (0.858516, 0.216423), (0.79751, 0.244077), (0.719335, 0.245099), (0.254149, 0.780233),
    (0.340985, 0.745405), (0.428858, 0.727388), (0.490127, 0.742578), (0.551395, 0.727388),
    (0.639268, 0.745405), (0.726104, 0.780233), (0.642159, 0.864805), (0.556721, 0.902192),
    (0.490127, 0.909281), (0.423532, 0.902192), (0.338094, 0.864805), (0.290379, 0.784792),
    (0.428096, 0.778746), (0.490127, 0.785343), (0.552157, 0.778746), (0.689874, 0.784792),
    (0.553364, 0.824182), (0.490127, 0.831803), (0.42689, 0.824182),
])
PYTORCH_POINTS = slice(17, 68)  # the landmarks the mean face holds
PYTORCH_SQUARE = 256  # side of the aligned face image, pixels
PYTORCH_PADDING = 0.25  # margin around the mean face in that square, in face sizes on each side
PYTORCH_BOX = (160, 80)  # the box cut around the mouth in the aligned image, (width, height)


def pytorch_reference(square: int = PYTORCH_SQUARE, padding: float = PYTORCH_PADDING) -> np.ndarray:
    """(51, 2) the mean face's points in the aligned image: the unit face padded on every side, scaled to ``square``."""
    return (PYTORCH_MEAN_FACE + padding) / (2 * padding + 1) * square


_REFERENCE = pytorch_reference()
# The box's top-left corner in the aligned image: the mouth centre (last 20 points) truncated, less half the box.
_BOX_ORIGIN = _REFERENCE[-20:].mean(0).astype(np.int32) - (PYTORCH_BOX[0] // 2, PYTORCH_BOX[1] // 2)
# The box's width over the mean face's mouth width (corners 48 and 54): sizes the patches a video stream keeps.
PYTORCH_WIDTH_RATIO = PYTORCH_BOX[0] / float(np.hypot(*(_REFERENCE[54 - 17] - _REFERENCE[48 - 17])))


def check_framing(framing: str) -> str:
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; expected one of {', '.join(FRAMINGS)}")
    return framing


def check_channel_order(order: str) -> str:
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"unknown channel order {order!r}; expected one of {', '.join(CHANNEL_ORDERS)}")
    return order


def recorded_crop(meta: Mapping) -> tuple[str, str]:
    """``(framing, channel_order)`` a checkpoint's meta.json records in its ``crop`` (the defaults where it records
    none: checkpoints from before framings were named); ValueError for a framing or order not known here."""
    crop = meta.get("crop") or {}
    return (check_framing(crop.get("framing") or DEFAULT_FRAMING),
            check_channel_order(crop.get("channel_order") or DEFAULT_CHANNEL_ORDER))


def similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(scale, angle, shift)`` of the least-squares similarity ``target ~ scale * R(angle) @ source + shift``
    (Umeyama, 1991), for (N, 2) point sets; ``R(angle)`` turns x towards y."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    cov = t.T @ s / len(source)
    u, d, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / (s ** 2).sum(1).mean())
    return scale, float(np.arctan2(rotation[1, 0], rotation[0, 0])), mu_t - scale * rotation @ mu_s


def pytorch_transform(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 matrix mapping a frame's pixels into LipNet-PyTorch's aligned 256x256 face image, from the
    frame's (68, 2) landmarks: the least-squares rotation, the scale as the ratio of spreads."""
    source = np.asarray(landmarks, np.float64)[PYTORCH_POINTS]
    _, angle, _ = similarity(source, _REFERENCE)
    spread = np.sqrt(((_REFERENCE - _REFERENCE.mean(0)) ** 2).sum() / ((source - source.mean(0)) ** 2).sum())
    rotation = spread * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rotation, (_REFERENCE.mean(0) - rotation @ source.mean(0))[:, None]])


def pytorch_geometry(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centres (T, 2), scales (T,), angles (T,))`` of the 160x80 boxes of LipNet-PyTorch's framing for
    frames with ``landmarks`` (T, 68, 2), as ``mouth_extractor.crop_frames`` takes them with size
    ``PYTORCH_BOX``: the source point under the box's centre, box pixels per source pixel, and the turn."""
    box_centre = _BOX_ORIGIN + (np.array(PYTORCH_BOX) - 1) / 2
    centres, scales, angles = [], [], []
    for points in landmarks:
        matrix = pytorch_transform(points)
        linear, shift = matrix[:, :2], matrix[:, 2]
        centres.append(np.linalg.solve(linear, box_centre - shift))
        scales.append(float(np.sqrt(abs(np.linalg.det(linear)))))
        angles.append(-float(np.arctan2(linear[1, 0], linear[0, 0])))  # crop_frames turns the other way
    return np.array(centres), np.array(scales), np.array(angles)


def resize_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The 160x80 boxes ``(T, 80, 160, C)`` resized to ``size`` (width, height) with Lanczos interpolation,
    as LipNet-PyTorch's loader resizes its crops."""
    if (boxes.shape[2], boxes.shape[1]) == tuple(size):
        return boxes
    return np.stack([cv2.resize(box, tuple(size), interpolation=cv2.INTER_LANCZOS4) for box in boxes])
