"""The TCN reference's word network on fixed weights and clips: what the import tests compare against.

Weights are drawn from a fixed NumPy seed per parameter name (``draw_state``), never stored: batch norms get
trained-looking statistics (means away from 0, variances from 0.5 to 2, scales and shifts away from 1 and 0),
convolutions and the linear layer N(0, c / fan-in), so that values stay of the order of a trained network's
(logits within tens) through the eval-mode batch norms, PReLU slopes 0.05 to 0.35. The clips are random grey
frames normalised as the reference's loader does (``/ 255``, centred 88x88 crop, ``(x - 0.421) / 0.165``).

Run once with torch, in the bench-only venv (never a project dependency), from the repository root::

    ~/.cache/lipnet-bench/venv-torch/bin/python -m tests.tcn_reference

It builds ``bench/reference/tcn_net.py``'s network (the reference's module names and arithmetic) for each case,
loads the drawn weights with ``load_state_dict(strict=True)``, and writes the log-probabilities of its forward
pass in eval mode to ``tests/assets/tcn_reference/expected.json``, with every case's state-dict names and shapes
and those of the full-size ``lrw_resnet18_mstcn`` (500 words, swish): small arrays, no weights.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets" / "tcn_reference"
EXPECTED = ASSETS / "expected.json"
SEED = 2020
# Reduced widths (trunk 16-32-64-128, 16 channels per TCN branch) keep the tests fast; the layout is the full one's.
CASES = {
    "swish": {"num_classes": 12, "relu_type": "swish", "width_mult": 0.25, "hidden": 16},
    "prelu": {"num_classes": 12, "relu_type": "prelu", "width_mult": 0.25, "hidden": 16},
}
FULL = {"num_classes": 500, "relu_type": "swish"}
LENGTHS = (29, 21)  # the second clip's last 8 frames are padding, left out of its time average
MEAN, STD = 0.421, 0.165  # the reference loader's normalisation of grey frames scaled to [0, 1]


def draw_state(shapes: Mapping[str, tuple[int, ...]], seed: int = SEED) -> dict[str, np.ndarray]:
    """A reference state dict of the given names and shapes, each array drawn from ``(seed, crc32(name))``."""
    state = {}
    for name, shape in shapes.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        shape = tuple(shape)
        head, _, param = name.rpartition(".")
        is_norm = f"{head}.running_mean" in shapes
        if param == "num_batches_tracked":
            state[name] = np.array(1000 + rng.integers(1000), np.int64)
            continue
        if param == "running_var":
            value = rng.uniform(0.5, 2.0, shape)
        elif param == "running_mean":
            value = rng.normal(0.0, 0.3, shape)
        elif is_norm and param == "weight":
            value = rng.uniform(0.6, 1.4, shape)
        elif is_norm and param == "bias":
            value = rng.normal(0.0, 0.2, shape)
        elif param == "weight" and len(shape) == 1:  # PReLU slopes
            value = rng.uniform(0.05, 0.35, shape)
        elif param == "weight" and len(shape) >= 3:  # convolutions: N(0, 1 / fan-in), which keeps values O(1)
            value = rng.normal(0.0, np.sqrt(1.0 / np.prod(shape[1:])), shape)
        elif param == "weight":  # the linear layer
            value = rng.normal(0.0, np.sqrt(36.0 / shape[1]), shape)
        else:
            value = rng.normal(0.0, 0.05, shape)
        state[name] = value.astype(np.float32)
    return state


def grey_frames(seed: int = SEED) -> np.ndarray:
    """Two clips of 29 grey uint8 96x96 frames: smooth random blobs that drift, not white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96]
    clips = np.empty((len(LENGTHS), 29, 96, 96), np.uint8)
    for c in range(len(LENGTHS)):
        centres, widths = rng.uniform(20, 76, (4, 2)), rng.uniform(6, 20, 4)
        drift = rng.normal(0, 0.6, (4, 2))
        for t in range(29):
            image = np.full((96, 96), 90.0)
            for (cy, cx), w, (dy, dx) in zip(centres, widths, drift):
                image += 120 * np.exp(-((y - cy - t * dy) ** 2 + (x - cx - t * dx) ** 2) / (2 * w * w))
            clips[c, t] = np.clip(image + rng.normal(0, 6, (96, 96)), 0, 255).astype(np.uint8)
    return clips


def reference_input(seed: int = SEED) -> np.ndarray:
    """The network input ``(2, 1, 29, 88, 88)`` float32 of ``grey_frames``, as the reference's loader makes it."""
    frames = grey_frames(seed)[:, :, 4:92, 4:92].astype(np.float32) / 255.0
    return ((frames - MEAN) / STD).astype(np.float32)[:, None]


def main() -> None:
    import torch

    from bench.reference.tcn_net import TcnWordNet

    torch.set_num_threads(1)
    data = torch.from_numpy(reference_input())
    lengths = torch.tensor(LENGTHS)
    out = {"seed": SEED, "lengths": list(LENGTHS), "torch": torch.__version__, "cases": {}}
    for case, options in CASES.items():
        net = TcnWordNet(**options).eval()
        shapes = {name: tuple(t.shape) for name, t in net.state_dict().items()}
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in draw_state(shapes).items()}, strict=True)
        with torch.inference_mode():
            log_probs = torch.log_softmax(net(data, lengths), dim=1).numpy()
        out["cases"][case] = {"options": options, "shapes": {k: list(v) for k, v in shapes.items()},
                              "log_probs": [[float(v) for v in row] for row in log_probs]}
        print(f"{case}: {sum(np.prod(s) for s in shapes.values()):,} values; top classes {log_probs.argmax(1)}")
    full = TcnWordNet(**FULL)
    out["full_size"] = {"options": FULL, "shapes": {k: list(t.shape) for k, t in full.state_dict().items()}}
    ASSETS.mkdir(parents=True, exist_ok=True)
    EXPECTED.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {EXPECTED}")


if __name__ == "__main__":
    main()
