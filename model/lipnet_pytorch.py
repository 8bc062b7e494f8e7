"""LipNet-PyTorch's GRID checkpoints as our checkpoints.

LipNet-PyTorch (github.com/VIPL-Audio-Visual-Speech-Understanding/LipNet-PyTorch, MIT licence) publishes
``torch.save(model.state_dict())`` files of a LipNet that is our ``variant='paper'`` network (no normalisation,
conv3 padding (1,1,1), ReLU, channel-wise dropout and (1,2,2) max-pooling after each convolution, two
bidirectional GRUs of 256, a linear output layer) on 128x64 crops: ``LipNetConfig(height=64, width=128)``
holds its shapes, 96x4x8 = 3072 GRU inputs, so no other network is needed. Its earlier 100x50 network
(96x3x6 = 1728 GRU inputs) is read the same way.

What differs is only naming and order: ``FC`` is our ``dense`` and its 28 classes are 0 = CTC blank,
1 = space, 2..27 = 'A'..'Z', ours a..z = 0..25, space = 26, blank = 27 (the GRID alphabet); PyTorch's
GRU keeps its gates in the order (reset, update, new) as MXNet's does, with the same formula (the reset
gate applied after the hidden-to-hidden product), so its matrices are copied as they are. Its crops are
BGR (OpenCV's order) scaled to [0, 1] with no mean or standard deviation, which the checkpoint's
``normalisation`` (mean 0, std 1) and ``crop`` (``framing``, ``channel_order``) record.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from model.backend import mx
from model.checkpoint import file_record, save_checkpoint, set_parameters
from model.lipnet import LipNet, LipNetConfig
from utils.text.alphabet import GRID
from utils.text.grid_text import FPS
from utils.weights.torch_file import state_mismatches

KIND = "lipnet_pytorch"
REPOSITORY = "https://github.com/VIPL-Audio-Visual-Speech-Understanding/LipNet-PyTorch"
LICENCE = "MIT (the repository's README, 'License: The MIT License')"
# The publisher's figures for its GRID checkpoints (their README, 128x64 crops); not measured here.
PUBLISHED_WER = {"overlapped speakers": 0.046, "unseen speakers": 0.133}
# Their class of each of ours (a..z, space, blank): 'A'..'Z' are 2..27, space 1, the blank 0.
THEIR_CLASS = np.array([*range(2, 28), 1, 0])
CROP = {"framing": KIND, "channel_order": "bgr", "scale": "pixel / 255", "width": 128, "height": 64}
# The crop (height, width) of each GRU input width that LipNet-PyTorch's networks have had.
CROP_OF_GRU_INPUT = {96 * 4 * 8: (64, 128), 96 * 3 * 6: (50, 100)}
_GRU_PARTS = {"weight_ih": "i2h_weight", "weight_hh": "h2h_weight", "bias_ih": "i2h_bias", "bias_hh": "h2h_bias"}


def recognises(state: Mapping[str, np.ndarray]) -> bool:
    """True for a state dict with LipNet-PyTorch's names (its output layer ``FC`` and its first GRU)."""
    return "FC.weight" in state and "gru1.weight_ih_l0" in state


def config_for(state: Mapping[str, np.ndarray]) -> LipNetConfig:
    """Our config of the LipNet-PyTorch network whose first GRU's input width ``state`` holds (3072 or 1728)."""
    weight = state.get("gru1.weight_ih_l0")
    inputs = int(weight.shape[1]) if isinstance(weight, np.ndarray) and weight.ndim == 2 else None
    height, width = CROP_OF_GRU_INPUT.get(inputs, (64, 128))  # another width is named as a wrong shape below
    return LipNetConfig(variant="paper", height=height, width=width, num_classes=GRID.num_classes)


def _their_names(config: LipNetConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each of LipNet-PyTorch's names with our name for it and the shape ``config`` gives it."""
    names = {}
    net_shapes = {name: tuple(p.shape) for name, p in LipNet(config)._collect_params_with_prefix().items()}
    for i in (1, 2, 3):
        for what in ("weight", "bias"):
            names[f"conv{i}.{what}"] = f"conv{i}.{what}"
    for gru in ("gru1", "gru2"):
        for theirs, ours in _GRU_PARTS.items():
            names[f"{gru}.{theirs}_l0"] = f"{gru}._unfused.0.l_cell.{ours}"
            names[f"{gru}.{theirs}_l0_reverse"] = f"{gru}._unfused.0.r_cell.{ours}"
    names["FC.weight"], names["FC.bias"] = "dense.weight", "dense.bias"
    return {theirs: (ours, net_shapes[ours]) for theirs, ours in names.items()}


def convert(state: Mapping[str, np.ndarray], source: str | Path) -> tuple[LipNetConfig, dict[str, np.ndarray]]:
    """Our config and parameters (float32, our names, our class order) of a LipNet-PyTorch state dict.

    ValueError naming ``source`` and, at once, every unknown name, missing name and wrong shape."""
    config = config_for(state)
    expected = _their_names(config)
    unknown, missing, mismatched = state_mismatches(state, expected)
    wrong = [f"{name} {shape} (needs {needed})" for name, shape, needed in mismatched]
    if unknown or missing or wrong:
        parts = [f"{label}: {', '.join(items)}" for label, items in
                 (("unknown keys", unknown), ("missing keys", missing), ("wrong shapes", wrong)) if items]
        raise ValueError(f"{source}: not the LipNet-PyTorch network ({config.width}x{config.height} input, "
                         f"GRU input {expected['gru1.weight_ih_l0'][1][1]}, 28 classes): {'; '.join(parts)}")
    arrays = {}
    for theirs, (ours, _) in expected.items():
        array = np.asarray(state[theirs], dtype=np.float32)
        arrays[ours] = array[THEIR_CLASS] if theirs.startswith("FC.") else array
    for name, array in arrays.items():
        bad = int((~np.isfinite(array)).sum())
        if bad:
            raise ValueError(f"{source}: damaged ({name} holds {bad} NaN or infinite values)")
    return config, arrays


def import_checkpoint(state: Mapping[str, np.ndarray], source: Path, out: str | Path, layout: str) -> Path:
    """Write ``out`` as our checkpoint of the LipNet-PyTorch state dict ``state`` read from ``source``
    (``layout``: the torch file layout it was read from, ``zip`` or ``legacy``); returns the folder."""
    config, arrays = convert(state, source)
    net = LipNet(config)
    set_parameters(net, {name: mx.nd.array(array) for name, array in arrays.items()}, source, mx.cpu())
    meta = {
        "normalisation": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},  # pixel / 255 only
        "crop": {**CROP, "width": config.width, "height": config.height},
        "frame_rate": FPS,
        "alphabet": GRID.to_dict(),
        "decoder": {"method": "greedy"},  # LipNet-PyTorch's own decoding (ctc_arr2txt)
        "metrics": {},  # nothing measured here; the publisher's figures are in "imported_from"
        "imported_from": {"kind": KIND, "file": source.name, **file_record(source), "layout": layout,
                          "repository": REPOSITORY, "licence": LICENCE, "published_wer": PUBLISHED_WER,
                          "class_order": "theirs: 0 blank, 1 space, 2-27 A-Z; reordered to a-z, space, blank"},
    }
    return save_checkpoint(out, net, None, meta)
