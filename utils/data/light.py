"""Light that does not matter: the input normalisations a LipNet can be trained with, and the photometric
augmentation (a change of brightness, contrast and gamma) of its training clips. Plain NumPy and OpenCV,
shared by training, reading on MXNet and reading with an ONNX file.

``dataset`` (the default, and what every checkpoint that records none used) scales each channel by the
training set's mean and std: a darker or flatter video is then another input, which a model trained on a
few clips reads wrong. ``clip`` standardises each clip by its own statistics, each channel over all of its
real frames (never the padding), so that a change of light that is one gain and offset per channel (a
darker, flatter, warmer or colder copy) gives the network nearly the same input. Per channel rather than
over all three: a tinted light (a warm lamp, a camera's white balance) scales the channels differently,
and one figure for all three would leave that change in the input.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import cv2
import numpy as np

INPUT_NORMS = ("dataset", "clip")
DEFAULT_INPUT_NORM = "dataset"
# The smallest std a clip is divided by (on the [0, 1] scale: one grey level): a flat clip, a channel of one
# value, comes out as zeros instead of a division by zero.
MIN_CLIP_STD = 1.0 / 255.0
_LEVELS = np.arange(256, dtype=np.float64) / 255.0


class Light(NamedTuple):
    """The photometric augmentation of training clips (``relight``): the probability that a clip gets
    another light (0: off) and the largest change of each part. The ranges' defaults are main.py's."""

    prob: float = 0.0
    brightness: float = 0.3
    contrast: float = 0.5
    gamma: float = 0.5


NO_LIGHT = Light()  # no photometric augmentation (validation, and training by default)


def recorded_input_norm(meta: Mapping) -> str:
    """The input normalisation a checkpoint's ``meta.json`` (or an ONNX file's metadata, as the reader holds
    it) records under ``normalisation.input``; ``dataset`` where it records none (checkpoints from before the
    setting, the original example's parameters). ValueError for a value this version does not know."""
    value = (meta.get("normalisation") or {}).get("input", DEFAULT_INPUT_NORM)
    if value not in INPUT_NORMS:
        raise ValueError(f"unknown input normalisation {value!r} (expected one of {', '.join(INPUT_NORMS)})")
    return value


def channel_tables(mean: np.ndarray | list[float], std: np.ndarray | list[float]) -> list[np.ndarray]:
    """One float32 lookup table (1, 256) per channel: a uint8 level scaled to [0, 1], then ``(v - mean) / std``."""
    return [((_LEVELS - m) / s).astype(np.float32).reshape(1, 256) for m, s in zip(mean, std)]


def clip_stats(planes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std on the [0, 1] scale (std at least ``MIN_CLIP_STD``) of each uint8 channel plane, from its
    histogram: exact, and a fraction of the cost of float arithmetic over the pixels."""
    means, stds = [], []
    for plane in planes:
        hist = cv2.calcHist([plane], [0], None, [256], [0, 256]).ravel().astype(np.float64)
        count = max(hist.sum(), 1.0)
        mean = float(hist @ _LEVELS) / count
        var = float(hist @ _LEVELS**2) / count - mean**2
        means.append(mean)
        stds.append(max(np.sqrt(max(var, 0.0)), MIN_CLIP_STD))
    return np.array(means), np.array(stds)


def light_table(brightness: float, contrast: float, gamma: float) -> np.ndarray:
    """The uint8 lookup table of a change of light on the [0, 1] scale: ``v ** gamma``, then contrast about
    mid-grey (as ffmpeg's ``eq`` filter: ``(v - 0.5) * contrast + 0.5``), then ``+ brightness``, clipped."""
    values = (_LEVELS**gamma - 0.5) * contrast + 0.5 + brightness
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def relight(frames: np.ndarray, rng: np.random.Generator, p: float, brightness: float, contrast: float,
            gamma: float) -> np.ndarray:
    """Frames (T, H, W, 3) RGB uint8 under another light with probability ``p``: one change for the whole clip
    (a video's light) of its luma (the Y of YCrCb; colour kept), as a camera's or ffmpeg's brightness,
    contrast and gamma act, with a brightness offset drawn from [-brightness, brightness] (of full scale), a
    contrast factor from [1 - contrast, 1 + contrast] and a gamma from [1 / (1 + gamma), 1 + gamma]
    (log-uniform). A range of 0 leaves that part out. Returns ``frames`` itself when not drawn.

    Why: a model trained on few clips learns their light. ``input_norm=clip`` removes a gain and offset of
    each RGB channel, but a change of luma alone is not one (each pixel's colour shifts it by its own
    amount) and neither are a gamma or levels clipped at black; this shows the network such changes.
    """
    if not rng.random() < p:
        return frames
    offset = rng.uniform(-brightness, brightness)
    factor = rng.uniform(1.0 - contrast, 1.0 + contrast)
    power = float(np.exp(rng.uniform(-np.log1p(gamma), np.log1p(gamma))))
    t, h, w, c = frames.shape
    ycc = cv2.cvtColor(np.ascontiguousarray(frames).reshape(t * h, w, c), cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = light_table(offset, factor, power)[ycc[..., 0]]
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB).reshape(t, h, w, c)
