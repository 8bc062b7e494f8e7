"""Speed of the paper LipNet on this machine: one training step at batch 8 and one clip's inference.

``python bench/train.py`` prints a JSON object as its last line with ``train_step_s`` (forward, CTC,
backward and Adam update of a batch of 8 full-length clips of 3x75x50x100, as ``trainer.py`` runs
it: dropout reseeded for the batch, ``LipNet.read``, which takes the fused bidirectional GRU),
``train_step_padded_s`` (the same with half the batch single-word clips of 9 frames padded to 75,
which takes the length-aware path) and ``infer_ms`` (one clip, batch 1), each the median of
several timed repetitions after warm-up, with the network hybridized as ``trainer.py`` does it, and
``threads``: MXNet's OpenMP threads (``OMP_NUM_THREADS``, by default the usable cores: ``model/backend.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401



from bench.timing import median_time
from model.backend import autograd, gluon, mx
from model.lipnet import VARIANTS, LipNet, LipNetConfig, prepare_for_inference
from model.training.loop import batch_seed
from utils.runtime.cli import parse_args, positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch_size", type=positive_int, default=8, help="clips per training step")
    parser.add_argument("--variant", default="paper", choices=VARIANTS, help="LipNet variant timed")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed repetitions (after 2 warm-up runs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)

    mx.random.seed(0)
    net = LipNet(LipNetConfig(variant=args.variant))
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-4, "clip_gradient": 10.0})
    data = mx.nd.random.normal(shape=(args.batch_size, 3, 75, 50, 100))
    labels = mx.nd.array([[1, 8, 13, 26, 1, 11, 20, 4, 26, 0, 19, 26, 5, 26, 19, 22, 14, 26, 13, 14, 22]]
                         * args.batch_size)

    full = mx.nd.full((args.batch_size,), 75)
    sentence = labels[0].asnumpy().tolist()
    with_word = [22, 8, 19, 7] + [-1] * (len(sentence) - 4)  # "with"
    padded = mx.nd.array([75 if i % 2 else 9 for i in range(args.batch_size)])
    padded_labels = mx.nd.array([sentence if i % 2 else with_word for i in range(args.batch_size)])
    step = {"n": 0}

    def train_step(lengths: mx.nd.NDArray = full, target: mx.nd.NDArray = labels) -> None:
        step["n"] += 1
        mx.random.seed(batch_seed(0, 0, step["n"]))  # as the trainer reseeds dropout for every batch
        with autograd.record():
            loss = loss_fn(net.read(data, lengths), target, lengths)
        loss.backward()
        trainer.step(args.batch_size)
        mx.nd.waitall()

    def train_step_padded() -> None:
        train_step(padded, padded_labels)

    one = mx.nd.random.normal(shape=(1, 3, 75, 50, 100))
    infer_net = LipNet(LipNetConfig(variant=args.variant))
    infer_net.initialize()
    prepare_for_inference(infer_net, [mx.cpu()])  # as infer.py runs it

    def infer() -> None:
        infer_net.read(one).wait_to_read()

    for _ in range(2):
        train_step()
        train_step_padded()
        infer()
    step_s = median_time(train_step, args.repeats)
    padded_s = median_time(train_step_padded, args.repeats)
    infer_ms = median_time(infer, args.repeats * 4) * 1000
    print(f"training step, batch {args.batch_size}: {step_s:.2f} s ({args.batch_size / step_s:.1f} samples/s)")
    print(f"training step, half of it 9-frame word clips: {padded_s:.2f} s")
    print(f"inference, one clip: {infer_ms:.0f} ms")
    print(json.dumps({"train_step_s": round(step_s, 3), "train_step_padded_s": round(padded_s, 3),
                      "infer_ms": round(infer_ms, 1), "batch_size": args.batch_size, "variant": args.variant,
                      "threads": int(os.environ["OMP_NUM_THREADS"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
