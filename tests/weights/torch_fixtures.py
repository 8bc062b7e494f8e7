"""Tiny files that torch itself wrote (``tests/assets/torch_files/``), so that the reader is tested on torch's own
bytes as well as on the tests' writer's: ``bench/reference/lipnet_pytorch_outputs.py`` saved ``fixture_state()``
with ``torch.save`` in both layouts (``legacy.pt`` with ``_use_new_zipfile_serialization=False``, ``zip.pt``),
plus two views of one tensor and a transpose, which torch saves as views of a shared storage."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent.parent / "assets" / "torch_files"
LAYOUT_FILES = {"legacy": FOLDER / "legacy.pt", "zip": FOLDER / "zip.pt"}


def fixture_state(seed: int = 7) -> OrderedDict:
    """A state dict of the dtypes layers save (float32/64/16 weights, an int64 counter, bool and uint8 masks)."""
    rng = np.random.default_rng(seed)
    return OrderedDict([
        ("conv.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        ("conv.bias", rng.standard_normal(4).astype(np.float32)),
        ("bn.running_var", rng.random(4)),
        ("bn.num_batches_tracked", np.array(11, np.int64)),
        ("half", rng.standard_normal(5).astype(np.float16)),
        ("mask", rng.random(6) > 0.5),
        ("pixels", rng.integers(0, 256, 7).astype(np.uint8)),
    ])


def expected_views(state: OrderedDict) -> dict[str, np.ndarray]:
    """What the views torch saved beside ``fixture_state()`` hold: its conv weight's first row and transpose."""
    flat = state["conv.weight"].reshape(4, -1)
    return {"row": flat[1].copy(), "transposed": flat.T.copy()}
