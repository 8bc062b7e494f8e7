"""The reference word network (``lrw_resnet18_mstcn``, PyTorch) timed as ``bench/words.py`` times ours.

    ~/.cache/lipnet-bench/venv-*/bin/python -m bench.reference.tcn_torch     # from the repository root

Runs only in the bench-only venv (``bench/requirements.txt``: the CPU build of torch); ``bench/speed_table.py``
finds or makes that venv and runs this after ``bench/words.py``. Run as a module from the repository root, so
that it finds ``bench.timing`` and ``utils.runtime.cli`` (neither imports a framework).

Timed, each the median of the timed repetitions after 2 warm-up runs, as ``bench/words.py`` does:
``train_step_s``, one training step on a random batch of ``batch_size`` clips of 1x29x88x88 (the generator
reseeded for the batch, forward, cross-entropy, backward, AdamW at lr 3e-4 and weight decay 1e-4);
``infer_ms``, the forward pass of one clip (batch 1) in eval mode under ``torch.inference_mode()``, timed 4
times as often. The last line printed is a JSON object with ``train_step_s``, ``infer_ms``, ``batch_size``,
``threads`` (``torch.set_num_threads``), ``torch`` (its version), ``parameters`` (trainable) and ``relu_type``.
"""
from __future__ import annotations

import argparse
import sys

from bench.timing import add_reference_options, median_time, report
from utils.runtime.cli import bounded, parse_args

FRAMES, SIZE = 29, 88
RELU_TYPES = ("relu", "prelu", "swish")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_reference_options(parser)
    parser.add_argument("--num_classes", type=bounded(int, 2), default=500, help="words the classifier tells apart")
    parser.add_argument("--relu_type", default="swish", choices=RELU_TYPES,
                        help="activation (configs/lrw_resnet18_mstcn.json's is swish; prelu adds 13,120 parameters)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    # torch is in the bench venv only: imported here, so that the project's tests can check this parser without it.
    import torch

    from bench.reference.tcn_net import TcnWordNet, count_trainable

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = TcnWordNet(args.num_classes, args.relu_type)
    parameters = count_trainable(net)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=1e-4)
    data = torch.randn(args.batch_size, 1, FRAMES, SIZE, SIZE)
    lengths = torch.full((args.batch_size,), FRAMES)
    labels = torch.tensor([i % args.num_classes for i in range(args.batch_size)])
    step = {"n": 0}

    def train_step() -> None:
        step["n"] += 1
        torch.manual_seed(step["n"])  # as bench/words.py reseeds dropout for every batch
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(net(data, lengths), labels)
        loss.backward()
        optimiser.step()

    net.train()
    for _ in range(2):
        train_step()
    step_s = median_time(train_step, args.repeats)

    one, one_length = torch.randn(1, 1, FRAMES, SIZE, SIZE), torch.full((1,), FRAMES)

    def infer() -> None:
        with torch.inference_mode():
            net(one, one_length)

    net.eval()
    for _ in range(2):
        infer()
    infer_ms = median_time(infer, args.repeats * 4) * 1000
    print(f"PyTorch {torch.__version__}, {args.threads} threads, {parameters:,} parameters")
    report(args.batch_size, step_s, infer_ms, {"threads": args.threads, "torch": torch.__version__,
                                               "parameters": parameters, "relu_type": args.relu_type})
    return 0


if __name__ == "__main__":
    sys.exit(main())
