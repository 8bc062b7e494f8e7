"""Upright mouth crops: the crop turns with the head's roll (its tilt in the image plane), so a tilted
head gives the crop an upright one gives.

Cut axis-aligned, the mouth of a head turned 15 degrees comes out tilted, and its crops match the
upright head's only loosely (frame-by-frame Pearson r about 0.6 on GRID clips). The roll of a frame
is the direction of the line through the two eye centres (landmarks 36-41 and 42-47 of the
68-point scheme): the eyes move little while speaking, the mouth corners do. It is interpolated
between examined frames and smoothed over time like the crop centre, and the crop is cut turned by
it (``crop_frames``' ``angles``: rotation, scale and crop in one affine warp).

The setting is recorded: preprocessing's manifest holds ``upright`` with each clip's settings,
training copies it from its data's manifest into the checkpoint's ``crop`` record (beside the framing's
name and the channel order: ``{"upright": true, ...}``), the ONNX export carries it (``lipnet.crop``),
and reading crops as the checkpoint's data was cropped. A checkpoint without it (the original
example's, and those trained before it existed) was trained on axis-aligned crops and is read with them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # the eye on the image's left (the person's right), the other
CROP = "crop"  # a checkpoint's (and an ONNX file's) record of how its training crops were cut
UPRIGHT = "upright"  # the setting, in manifests and in that record


def roll_angles(points: np.ndarray) -> np.ndarray:
    """The roll (radians) of each set of 68 landmarks ``(N, 68, 2)``: the direction of the line from the
    eye on the image's left to the other, as ``crop_frames`` takes its ``angles`` (0 for an upright
    head; positive for one turned clockwise on screen, image y pointing down). Unwrapped along the
    first axis, so interpolating between frames never crosses the +-180 degree seam."""
    line = points[:, RIGHT_EYE].mean(axis=1) - points[:, LEFT_EYE].mean(axis=1)
    return np.unwrap(np.arctan2(line[:, 1], line[:, 0]))


def turned_growth(width: float, height: float, angle: float) -> tuple[float, float]:
    """How much the half-width and half-height of the axis-aligned box holding a ``width`` x ``height``
    rectangle grow when it is turned by ``angle`` (radians): the extra margin a patch needs around a
    mouth so that a turned crop still lies inside it."""
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    return (width * cos + height * sin - width) / 2, (width * sin + height * cos - height) / 2


def upright_of(meta: Mapping) -> bool:
    """Whether a checkpoint's (or an ONNX file's) crops were cut upright: its ``crop`` record's
    ``upright``; False for one that records none, which was trained on axis-aligned crops."""
    crop = meta.get(CROP)
    return isinstance(crop, Mapping) and crop.get(UPRIGHT) is True


def data_upright(records: Mapping[str, dict], folder: Path) -> dict:
    """What a checkpoint's ``crop`` record takes from a data set's manifest records by id
    (``utils/preprocess_data.py``'s clip records hold ``upright``; ``utils/prepare_captions.py``'s cue records
    take it from their video's record, which holds it in its ``settings``): ``{"upright": bool}``, or nothing
    when none records it (crops made before the setting existed, or published ones: axis-aligned).
    ValueError naming ``folder`` when its crops were cut both ways, which no checkpoint can be read as."""
    def setting(record: dict) -> object:
        if UPRIGHT in record:
            return record[UPRIGHT]
        settings = record.get("settings")
        if isinstance(settings, dict):
            return settings.get(UPRIGHT)
        video = records.get(record.get("video"))  # type: ignore[arg-type]
        return setting(video) if isinstance(video, dict) and video is not record else None

    values = {setting(record) for record in records.values() if record.get("status") == "ok"}
    if values <= {None}:
        return {}
    upright = {value is True for value in values}  # a clip without the setting was cut axis-aligned
    if len(upright) > 1:
        raise ValueError(f"{folder}: its manifest records clips cropped upright and others cropped axis-aligned; "
                         "rerun the preprocessing over the whole folder with one --upright setting")
    return {UPRIGHT: upright.pop()}
