"""Timing shared by the benchmarks and their PyTorch references, and the references' options and report (no
framework import: the references load it in the bench-only venv, ``bench/requirements.txt``)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from utils.runtime.cli import positive_int


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def add_reference_options(parser: argparse.ArgumentParser) -> None:
    """The options every PyTorch reference takes: its batch, its repetitions and its threads."""
    parser.add_argument("--batch_size", type=positive_int, default=8, help="clips per training step")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed training steps (inference is timed 4 times as often), after 2 warm-up runs")
    parser.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="torch.set_num_threads; the default is the cores this process may run on")


def report(batch_size: int, step_s: float, infer_ms: float, figures: dict) -> None:
    """A reference's figures, read by a person and then, as the last line (JSON), by ``bench/speed_table.py``."""
    print(f"training step, batch {batch_size}: {step_s:.2f} s ({batch_size / step_s:.1f} samples/s)")
    print(f"inference, one clip: {infer_ms:.0f} ms")
    print(json.dumps({"train_step_s": round(step_s, 3), "infer_ms": round(infer_ms, 1), "batch_size": batch_size,
                      **figures}))
