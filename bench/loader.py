"""Throughput of the training data pipeline (decode, augment, normalise, batch) in clips/s.

``python bench/loader.py`` crops the mouths of the real GRID clips in ``../shared/grid``, packs them
as a small data set in a temporary folder (each clip repeated under several speakers), and times
the training DataLoader (flip and temporal jitter on, batch 8) with 0 and with 2 worker processes.
The last line is a JSON object with the figures.
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

import data_loader
from utils.data.clip_store import save_packed
from utils.runtime.cli import parse_args, positive_int
from utils.runtime.paths import REPO_ROOT
from utils.video.mouth_extractor import MouthExtractor


def make_dataset(grid_dir: Path, root: Path, copies: int) -> None:
    extractor = MouthExtractor()
    for video in sorted(grid_dir.glob("*.mpg")):
        frames = extractor.extract(video).frames
        for speaker in range(1, copies + 1):
            save_packed(root / f"s{speaker}" / f"{video.stem}.npz", frames)


def clips_per_second(root: Path, workers: int, epochs: int, batch_size: int) -> float:
    records = data_loader.build_records(data_loader.discover_clips(root), None)
    mean, std = data_loader.channel_stats(records)
    dataset = data_loader.SentenceDataset(records, train=True)
    sampler = data_loader.EpochShuffleSampler(len(dataset), 0)
    loader = data_loader.make_loader(dataset, batch_size, mean, std, sampler, workers)
    next(iter(loader))  # start the workers outside the timing
    count, start = 0, time.perf_counter()
    for epoch in range(epochs):
        sampler.epoch = epoch
        for batch in loader:
            count += batch[0].shape[0]
    return count / (time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--grid_dir", default=str(REPO_ROOT.parent / "shared" / "grid"),
                        help="folder of GRID .mpg clips")
    parser.add_argument("--copies", type=positive_int, default=32, help="speakers each real clip is repeated under")
    parser.add_argument("--epochs", type=positive_int, default=3, help="timed epochs of each loader")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="clips per batch")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(Path(args.grid_dir), Path(tmp), args.copies)
        figures = {f"workers_{w}": round(clips_per_second(Path(tmp), w, args.epochs, args.batch_size), 1)
                   for w in (0, 2)}
    for name, value in figures.items():
        print(f"{name.replace('_', ' ')}: {value} clips/s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
