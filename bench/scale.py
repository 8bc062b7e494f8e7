"""Training throughput of one process against dist_sync workers on this machine (loopback).

    python bench/scale.py                    # synthetic clips, small network: a few minutes on 2 cores
    python bench/scale.py --workers 1,2,4 --image_path data/datasets --channels 32,64,96 --hidden 256

Runs ``main.py`` as one plain process, then under ``utils/launch.py`` with ``kvstore=dist_sync``
for each worker count (one server), and prints the global samples/s of the last epoch (the first
also builds the graphs) with the speed-up over the plain process. Each worker keeps
``--batch_size`` clips a step (weak scaling: the global batch grows with the workers) and the
launcher splits this machine's cores between the workers. On one machine, workers only compete
for the same cores and pay for the parameter-server round trips, so expect no speed-up here: the
figure that matters comes from one worker per machine, launched with ``--launcher ssh``.
The last line is a JSON object of the figures.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import csv
import json
import os
import subprocess
import tempfile
import time

from utils.runtime.cli import (
    bounded,
    channel_list,
    parse_args,
    parse_size,
    positive_float,
    positive_int,
    positive_ints,
)
from utils.runtime.paths import REPO_ROOT
from utils.synthetic import generate

VAL_SPEAKER = 99  # the synthetic speaker held out for the (small) validation pass


def make_corpus(root: Path, clips_per_speaker: int, size: tuple[int, int]) -> None:
    """Synthetic GRID-style clips: speakers 1 and 2 to train on, a few of speaker 99 to validate on."""
    generate(root, speakers=(1, 2), clips_per_speaker=clips_per_speaker, size=size, progress=False)
    generate(root, speakers=(VAL_SPEAKER,), clips_per_speaker=2, size=size, progress=False)


def last_epoch(save_dir: Path) -> dict[str, float]:
    """The last row of a run's metrics.csv (written by rank 0: global figures under dist_sync)."""
    with open(save_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items()}


def run(command: list[str], timeout: float, log_path: Path) -> float:
    """Run ``command`` from the repository root with its output in ``log_path``; wall seconds."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode != 0:
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(command[:6])} ... exited with {done.returncode}:\n{tail}")
    return time.perf_counter() - start


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=positive_ints, default=[1, 2],
                        help="dist_sync worker counts to run (default 1,2)")
    parser.add_argument("--image_path", default=None,
                        help="clips to train on, with --align_path; default: a synthetic corpus made in a "
                             "temporary folder (validation on its speaker 99)")
    parser.add_argument("--align_path", default=None, help="align files for --image_path (default: from clip names)")
    parser.add_argument("--val_speakers", default=str(VAL_SPEAKER),
                        help="validation speakers for --image_path, e.g. 1,2,20,22 (default: the synthetic one)")
    parser.add_argument("--clips_per_speaker", type=positive_int, default=24,
                        help="synthetic clips for each of the two training speakers (default 24)")
    parser.add_argument("--size", type=parse_size, default=(100, 50), help="synthetic frame size (default 100x50)")
    parser.add_argument("--channels", type=channel_list, default="8,16,16",
                        help="LipNet convolution channels (default 8,16,16)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="GRU units per direction (default 64)")
    parser.add_argument("--batch_size", type=positive_int, default=4, help="clips per step per worker (default 4)")
    parser.add_argument("--epochs", type=bounded(int, 2), default=2,
                        help="epochs per run, at least 2: the first builds the graphs, the last one is timed "
                             "(default 2)")
    parser.add_argument("--timeout", type=positive_float, default=900, help="seconds allowed per run (default 900)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="lipnet-scale-") as tmp:
        tmp = Path(tmp)
        image_path = args.image_path
        if image_path is None:
            print(f"writing {2 * args.clips_per_speaker + 2} synthetic clips ...", flush=True)
            make_corpus(tmp / "corpus", args.clips_per_speaker, args.size)
            image_path = tmp / "corpus" / "datasets"
            align_path = tmp / "corpus" / "align"
        else:
            align_path = args.align_path
        common = [f"image_path={image_path}", f"val_speakers={args.val_speakers}", f"channels={args.channels}",
                  f"hidden={args.hidden}", f"batch_size={args.batch_size}", f"epochs={args.epochs}", "num_gpus=0",
                  "progress=false", "show_examples=0"]
        if align_path is not None:
            common.append(f"align_path={align_path}")
        setups = [("1 process (kvstore=device)", 1, [], "device")]
        setups += [(f"dist_sync, {n} worker{'s' if n > 1 else ''}, 1 server", n,
                    [sys.executable, "utils/launch.py", "-n", str(n), "-s", "1", "--timeout", str(args.timeout),
                     "--"], "dist_sync") for n in args.workers]
        results = []
        for i, (name, workers, launcher, kvstore) in enumerate(setups):
            save_dir = tmp / f"run{i}"
            command = [*launcher, sys.executable, "main.py", *common, f"kvstore={kvstore}", f"save_dir={save_dir}"]
            print(f"{name} ...", flush=True)
            wall = run(command, args.timeout + 60, tmp / f"run{i}.log")
            metrics = last_epoch(save_dir)
            results.append({"setup": name, "workers": workers, "global_batch": workers * args.batch_size,
                            "samples_per_s": round(metrics["samples_per_s"], 2), "wall_s": round(wall, 1)})
    base = results[0]["samples_per_s"]
    print(f"\n{cores} CPU cores; per-worker batch {args.batch_size}; samples/s of epoch {args.epochs} "
          "(whole job, all workers)")
    print(f"{'setup':<34}{'workers':>8}{'global batch':>14}{'samples/s':>11}{'vs 1 process':>14}{'run wall s':>12}")
    for r in results:
        r["speedup"] = round(r["samples_per_s"] / base, 2) if base else 0.0
        print(f"{r['setup']:<34}{r['workers']:>8}{r['global_batch']:>14}{r['samples_per_s']:>11.1f}"
              f"{r['speedup']:>14.2f}{r['wall_s']:>12.1f}")
    print(json.dumps({"cores": cores, "batch_size": args.batch_size, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
