"""LipNet-PyTorch's own log-probabilities for the seeded test network, computed once with torch and committed.

    ~/.cache/lipnet-bench/venv-torch/bin/python -m bench.reference.lipnet_pytorch_outputs   # from the repository root

Runs only in the bench-only virtual environment that has PyTorch; the project and its tests never import torch.
It writes the seeded weights of ``tests/weights/lipnet_pytorch_case.py`` in both of torch.save's layouts with
the tests' own writer (``tests/weights/torch_writer.py``), checks that ``torch.load`` (``weights_only=True``)
reads back exactly those weights from each, loads them (``strict=True``) into LipNet-PyTorch's network as its
model.py defines it (names ``conv1..3``, ``gru1``, ``gru2``, ``FC``; ReLU, Dropout3d and max-pooling after each
convolution; log-softmax over its 28 classes, blank first) for 128x64 input, and saves the network's
log-probabilities (N, T, 28), in its own class order, on the seeded clips in eval mode. The tests compare the
imported network's (reordered) against them within 1e-4. With ``fixtures=true`` it also saves, with torch.save
itself, the tiny files of ``tests/weights/torch_fixtures.py`` that the reader's tests read.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.weights.lipnet_pytorch_case import GRU_INPUT, HIDDEN, REFERENCE, clips, state_dict
from tests.weights.torch_fixtures import FOLDER, LAYOUT_FILES, fixture_state
from tests.weights.torch_writer import write_torch_file
from utils.runtime.cli import parse_args, str2bool


def lipnet_pytorch() -> object:
    """LipNet-PyTorch's network (its model.py at 128x64) as a ``torch.nn.Module``: (N, 3, T, 64, 128) ->
    log-probabilities (N, T, 28)."""
    import torch
    from torch import nn

    class LipNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv3d(3, 32, (3, 5, 5), (1, 2, 2), (1, 2, 2))
            self.conv2 = nn.Conv3d(32, 64, (3, 5, 5), (1, 1, 1), (1, 2, 2))
            self.conv3 = nn.Conv3d(64, 96, (3, 3, 3), (1, 1, 1), (1, 1, 1))
            self.pool = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
            self.gru1 = nn.GRU(GRU_INPUT, HIDDEN, 1, bidirectional=True)
            self.gru2 = nn.GRU(2 * HIDDEN, HIDDEN, 1, bidirectional=True)
            self.FC = nn.Linear(2 * HIDDEN, 28)  # noqa: N815 (LipNet-PyTorch's name, which its state dict keeps)
            self.dropout3d, self.dropout = nn.Dropout3d(0.5), nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for conv in (self.conv1, self.conv2, self.conv3):
                x = self.pool(self.dropout3d(torch.relu(conv(x))))
            x = x.permute(2, 0, 1, 3, 4).contiguous()
            x = x.view(x.size(0), x.size(1), -1)  # (T, N, C*H*W)
            x, _ = self.gru1(x)
            x, _ = self.gru2(self.dropout(x))
            x = self.FC(self.dropout(x)).log_softmax(2)
            return x.permute(1, 0, 2).contiguous()

    return LipNet()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REFERENCE), help="the .npz to write (default: %(default)s)")
    parser.add_argument("--fixtures", type=str2bool, default=True,
                        help=f"also write torch's own files of a tiny state dict in both layouts to {FOLDER} "
                             "(default: true)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    import torch  # the bench venv's only

    torch.set_num_threads(1)
    state = state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("legacy", "zip"):
            loaded = torch.load(write_torch_file(state, Path(tmp) / f"{layout}.pt", layout), weights_only=True)
            if list(loaded) != list(state) or not all(np.array_equal(loaded[k].numpy(), v) for k, v in state.items()):
                print(f"error: torch.load does not read back the {layout} file the tests' writer wrote",
                      file=sys.stderr)
                return 1
    net = lipnet_pytorch()
    net.load_state_dict(loaded, strict=True)
    net.eval()
    data = clips()
    with torch.inference_mode():
        log_probs = net(torch.from_numpy(data)).numpy()
    np.savez(args.out, log_probs=log_probs, torch=np.array(torch.__version__),
             clips_sum=np.float64(data.astype(np.float64).sum()),
             weights_sum=np.float64(sum(float(np.abs(v).astype(np.float64).sum()) for v in state.values())))
    print(f"wrote {args.out}: log-probabilities {log_probs.shape} with torch {torch.__version__}")
    if args.fixtures:
        write_fixtures()
    return 0


def write_fixtures() -> None:
    """``tests/assets/torch_files``: ``fixture_state()`` and two views of its conv weight saved by torch itself."""
    import torch

    state = {name: torch.from_numpy(array) for name, array in fixture_state().items()}
    flat = state["conv.weight"].view(4, -1)
    state["row"], state["transposed"] = flat[1], flat.t()  # views: saved as offsets and strides in one storage
    FOLDER.mkdir(parents=True, exist_ok=True)
    for layout, path in LAYOUT_FILES.items():
        torch.save(state, path, _use_new_zipfile_serialization=layout == "zip")
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    sys.exit(main())
