"""One LipNet-PyTorch network and input, drawn from fixed NumPy seeds: what the import tests read and what
``bench/reference/lipnet_pytorch_outputs.py`` ran through PyTorch once for
``tests/assets/lipnet_pytorch_reference.npz``.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parent.parent / "assets" / "lipnet_pytorch_reference.npz"
HIDDEN, CLASSES, GRU_INPUT = 256, 28, 96 * 4 * 8
SHAPES = {
    "conv1.weight": (32, 3, 3, 5, 5), "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 5, 5), "conv2.bias": (64,),
    "conv3.weight": (96, 64, 3, 3, 3), "conv3.bias": (96,),
    **{f"{gru}.{what}_l0{suffix}": shape
       for gru, inputs in (("gru1", GRU_INPUT), ("gru2", 2 * HIDDEN)) for suffix in ("", "_reverse")
       for what, shape in (("weight_ih", (3 * HIDDEN, inputs)), ("weight_hh", (3 * HIDDEN, HIDDEN)),
                           ("bias_ih", (3 * HIDDEN,)), ("bias_hh", (3 * HIDDEN,)))},
    "FC.weight": (CLASSES, 2 * HIDDEN), "FC.bias": (CLASSES,),
}  # LipNet-PyTorch's state dict, in its order


def state_dict(seed: int = 35) -> OrderedDict:
    """Weights of LipNet-PyTorch's shapes, each scaled by 1/sqrt(fan-in) so that every layer stays in range."""
    rng = np.random.default_rng(seed)
    state = OrderedDict()
    for name, shape in SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else HIDDEN
        state[name] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return state


def clips(seed: int = 36, batch: int = 2, frames: int = 8) -> np.ndarray:
    """(N, 3, T, 64, 128) crops in [0, 1], as LipNet-PyTorch feeds them (pixels / 255)."""
    return np.random.default_rng(seed).random((batch, 3, frames, 64, 128), dtype=np.float32)
