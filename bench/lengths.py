"""Training on clips of different lengths, with and without batching by length.

``python bench/lengths.py`` writes a set of clips of random lengths (``min_frames`` to ``max_frames``,
uniform) with GRID sentences, then trains a LipNet on it as ``trainer.py`` does with ``frames=any``:
each clip keeps its own length, a batch is padded to its longest clip, and the network reads each clip
only up to its length. For shuffled batches (``bucket=false``) and batches grouped by length
(``BucketSampler``, the default) it prints the padded fraction (padding frames over all frames of the
batches) and training clips/s over ``epochs`` epochs after one warm-up epoch (which builds the graphs
for the batch shapes), the two alternating epoch by epoch, and a JSON line. The network is the paper
LipNet at the quick start's width (16/32/48 channels, 128 GRU units, 48x24).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401



import numpy as np

import data_loader
from bench.decoders import random_sentence
from model.backend import autograd, gluon, mx
from model.lipnet import LipNet, LipNetConfig
from utils.data.clip_store import save_packed
from utils.runtime.cli import (
    bounded,
    channel_list,
    non_negative_int,
    parse_args,
    parse_size,
    positive_int,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
MIN_FRAMES = 30  # a GRID sentence needs up to 30 frames


def make_clips(root: Path, count: int, min_frames: int, max_frames: int, size: tuple[int, int],
               seed: int) -> list[data_loader.ClipRecord]:
    """``count`` packed clips of random lengths and random GRID sentences under ``root``."""
    rng = np.random.default_rng(seed)
    width, height = size
    records = []
    for i in range(count):
        frames = int(rng.integers(min_frames, max_frames + 1))
        path = root / "s1" / f"clip{i:04d}.npz"
        save_packed(path, rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8))
        records.append(data_loader.ClipRecord(f"s1/clip{i:04d}", path, random_sentence(rng)))
    return records


class Run:
    """One way of batching the set, with its own network, optimiser and loader; ``epoch`` trains one epoch."""

    def __init__(self, records: list[data_loader.ClipRecord], args: argparse.Namespace, bucket: bool) -> None:
        mx.random.seed(0)
        width, height = args.size
        channels = tuple(int(c) for c in args.channels.split(","))
        self.net = LipNet(LipNetConfig(channels=channels, hidden=args.hidden, width=width, height=height))
        self.net.initialize()
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.trainer = gluon.Trainer(self.net.collect_params(), "adam", {"learning_rate": 1e-4, "clip_gradient": 10})
        self.loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
        dataset = data_loader.SentenceDataset(records, num_frames=None, train=True, seed=0)
        self.sampler = (data_loader.BucketSampler(data_loader.clip_lengths(records), args.batch_size, 0) if bucket
                        else data_loader.EpochShuffleSampler(len(records), 0))
        self.loader = data_loader.make_loader(dataset, args.batch_size, MEAN, STD, self.sampler, args.num_workers)
        self.clips, self.seconds, self.frames = 0, 0.0, []

    def epoch(self, epoch: int, timed: bool) -> None:
        self.sampler.epoch = epoch
        start = time.perf_counter()
        for data, labels, lengths, label_lengths, _, np_lengths in self.loader:
            with autograd.record():
                loss = self.loss_fn(self.net.read(data, lengths), labels, lengths, label_lengths)
            loss.backward()
            self.trainer.step(data.shape[0])
            mx.nd.waitall()
            if timed:
                self.clips += data.shape[0]
                self.frames.append((int(np_lengths.sum()), data.shape[0] * data.shape[2]))
        if timed:
            self.seconds += time.perf_counter() - start

    def result(self) -> dict[str, float]:
        return {"padded_fraction": round(data_loader.padded_fraction(self.frames), 4),
                "clips_per_s": round(self.clips / self.seconds, 2), "batches": len(self.frames)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    frames = bounded(int, MIN_FRAMES)
    parser.add_argument("--clips", type=positive_int, default=96, help="clips in the set (default: %(default)s)")
    parser.add_argument("--min_frames", type=frames, default=40,
                        help=f"shortest clip, at least {MIN_FRAMES} (default: %(default)s)")
    parser.add_argument("--max_frames", type=frames, default=150,
                        help="longest clip, at least min_frames (default: %(default)s)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="clips per step (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=1,
                        help="timed epochs after a warm-up one (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, default=(48, 24), help="frame WIDTHxHEIGHT (default: 48x24)")
    parser.add_argument("--channels", type=channel_list, default="16,32,48",
                        help="convolution channels (default: %(default)s, the quick start's)")
    parser.add_argument("--hidden", type=positive_int, default=128, help="GRU units (default: %(default)s)")
    parser.add_argument("--num_workers", type=non_negative_int, default=0,
                        help="loader threads (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the clip set (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.min_frames > args.max_frames:
        parser.error(f"min_frames {args.min_frames} is above max_frames {args.max_frames}")
    with tempfile.TemporaryDirectory(prefix="lipnet-lengths-") as tmp:
        records = make_clips(Path(tmp), args.clips, args.min_frames, args.max_frames, args.size, args.seed)
        runs = {"shuffled": Run(records, args, False), "bucketed": Run(records, args, True)}
        for epoch in range(args.epochs + 1):  # the two alternate, epoch by epoch, so drift hits both alike
            for run in runs.values():
                run.epoch(epoch, timed=epoch > 0)
        results = {name: run.result() for name, run in runs.items()}
        for name in runs:
            print(f"{name:9}: padded fraction {results[name]['padded_fraction']:.3f}, "
                  f"{results[name]['clips_per_s']:.1f} clips/s ({results[name]['batches']} batches of "
                  f"{args.batch_size}, clips of {args.min_frames}-{args.max_frames} frames)")
    print(json.dumps({**results, "clips": args.clips, "batch_size": args.batch_size,
                      "frames": [args.min_frames, args.max_frames]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
