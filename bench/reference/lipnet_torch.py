"""The paper LipNet in PyTorch, timed as ``bench/train.py`` times ours: the reference its speed is measured against.

    ~/.cache/lipnet-bench/venv-torch/bin/python -m bench.reference.lipnet_torch     # from the repository root

Runs only in the bench-only virtual environment that has PyTorch (CPU build), never in the project's: no project
code or test imports torch. Run as a module from the repository root, so that it finds ``bench.timing`` and
``utils.runtime.cli`` (neither imports a framework); torch is imported only when it runs, so the parser can be
checked without it.

The network is ``model/lipnet.py``'s ``variant='paper'`` layer for layer: three stages of Conv3d (3->32
kernel (3,5,5) stride (1,2,2) padding (1,2,2); 32->64 kernel (3,5,5) padding (1,2,2); 64->96 kernel (3,3,3)
padding (1,1,1)), each followed by ReLU, channel-wise dropout of 0.5 (one mask per feature map, shared over time
and space) and max pooling (1,2,2); then two bidirectional GRUs of 256 units over time (input 96x3x6, then 512),
a linear layer to 28 classes and log-softmax; CTC loss with the blank last; Adam at lr 1e-4 with gradients
clipped to 10 elementwise (Gluon's ``clip_gradient``).

Timed, each the median of the timed repetitions after 2 warm-up runs: ``train_step_s``, one training step on a
random batch of ``batch_size`` full-length clips of 3x75x50x100 with a 21-character sentence label (the
generator reseeded for the batch, forward, CTC, backward, clipping, Adam step); ``infer_ms``, the forward pass of
one random clip (batch 1) in eval mode under ``torch.inference_mode()``. ``threads`` is
``torch.set_num_threads``'s value, by default the cores this process may run on (what ``model/backend.py`` gives
MXNet's ``OMP_NUM_THREADS``). The last line printed is a JSON object with ``train_step_s``, ``infer_ms``,
``batch_size``, ``threads`` and ``torch`` (its version), keys shared with ``bench/train.py``'s where they overlap.
"""
from __future__ import annotations

import argparse
import sys

from bench.timing import add_reference_options, median_time, report
from utils.runtime.cli import parse_args

FRAMES, HEIGHT, WIDTH = 75, 50, 100
CLASSES = 28  # a-z, space and the CTC blank (last), as utils/text/grid_text.py's NUM_CLASSES
SENTENCE = [1, 8, 13, 26, 1, 11, 20, 4, 26, 0, 19, 26, 5, 26, 19, 22, 14, 26, 13, 14, 22]  # bench/train.py's label


def paper_lipnet(hidden: int = 256, dropout: float = 0.5) -> object:
    """STCNN x3 -> Bi-GRU x2 -> Linear as a ``torch.nn.Module``; input (N, 3, T, H, W), output
    log-probabilities (T, N, classes)."""
    import torch
    from torch import nn

    class LipNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv3d(3, 32, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))
            self.conv2 = nn.Conv3d(32, 64, (3, 5, 5), stride=(1, 1, 1), padding=(1, 2, 2))
            self.conv3 = nn.Conv3d(64, 96, (3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1))
            self.pool = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
            self.dropout = nn.Dropout3d(dropout)  # one mask per (sample, channel), as Gluon's Dropout(axes=(2, 3, 4))
            self.gru1 = nn.GRU(96 * 3 * 6, hidden, bidirectional=True)
            self.gru2 = nn.GRU(2 * hidden, hidden, bidirectional=True)
            self.dense = nn.Linear(2 * hidden, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for conv in (self.conv1, self.conv2, self.conv3):
                x = self.pool(self.dropout(torch.relu(conv(x))))
            x = x.permute(2, 0, 1, 3, 4).flatten(2)  # (T, N, C*H*W)
            x, _ = self.gru1(x)
            x, _ = self.gru2(x)
            return torch.log_softmax(self.dense(x), dim=-1)

    return LipNet()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_reference_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    # torch is in the bench venv only: imported here, so that the project's tests can check this parser without it.
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    net = paper_lipnet()
    loss_fn = nn.CTCLoss(blank=CLASSES - 1, reduction="sum")
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    data = torch.randn(args.batch_size, 3, FRAMES, HEIGHT, WIDTH)
    labels = torch.tensor([SENTENCE] * args.batch_size)
    lengths = torch.full((args.batch_size,), FRAMES, dtype=torch.long)
    label_lengths = torch.full((args.batch_size,), len(SENTENCE), dtype=torch.long)
    step = {"n": 0}

    def train_step() -> None:
        step["n"] += 1
        torch.manual_seed(step["n"])  # as bench/train.py reseeds dropout for every batch
        net.train()
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(net(data), labels, lengths, label_lengths) / args.batch_size
        loss.backward()
        nn.utils.clip_grad_value_(net.parameters(), 10.0)
        optimiser.step()

    one = torch.randn(1, 3, FRAMES, HEIGHT, WIDTH)

    def infer() -> None:
        net.eval()
        with torch.inference_mode():
            net(one)

    for _ in range(2):
        train_step()
        infer()
    step_s = median_time(train_step, args.repeats)
    infer_ms = median_time(infer, args.repeats * 4) * 1000
    print(f"PyTorch {torch.__version__}, {args.threads} threads")
    report(args.batch_size, step_s, infer_ms, {"threads": args.threads, "torch": torch.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
