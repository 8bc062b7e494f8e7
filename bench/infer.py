"""Inference speed: raw .mpg to sentence per clip (extractor / network / decoder), the decoders on real
network outputs, and batch throughput over a preprocessed set.

    python bench/infer.py [--model_path=checkpoint] [--clips_dir=../shared/grid]

Model and extractor loading and the network's first call (graph building) are excluded; each clip is
run ``--repeats`` times and its fastest run counted, to damp contention on a shared CPU. Without
``--model_path`` a freshly initialised paper LipNet is timed: speed does not depend on the weights (but
the decoders' times do somewhat, a random network's output being flat). The throughput set is the
extractor's crops of the clips packed ``--copies`` times into a temporary folder, read by
``utils.scoring.sentence_evaluation.evaluate_network`` as infer.py does. CPU figures are the process's CPU time
over all its threads, which other load on a shared machine inflates less than wall time. The last line printed is a JSON
object with every figure.
"""
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from utils.runtime.cli import non_negative_int, parse_args, positive_int
from utils.runtime.paths import REPO_ROOT
from utils.text.decoders import DECODERS, DEFAULT_BEAM_WIDTH

if TYPE_CHECKING:
    from utils.reading.network import Network
    from utils.reading.sentence_videos import VideoLipreader

DEFAULT_CLIPS_DIR = REPO_ROOT.parent / "shared" / "grid"
TARGET_END_TO_END_S = 1.0
TARGET_CLIPS_PER_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", default=None,
                        help="checkpoint or the example's parameter file (default: a fresh paper LipNet)")
    parser.add_argument("--clips_dir", default=str(DEFAULT_CLIPS_DIR),
                        help="folder of raw videos to time (default: %(default)s)")
    parser.add_argument("--decoder", default="greedy", choices=DECODERS,
                        help="decoder of the end-to-end runs (default: %(default)s)")
    parser.add_argument("--beam_width", type=positive_int, default=DEFAULT_BEAM_WIDTH,
                        help="prefix beam width (default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="runs per clip, the fastest counted (default: 3)")
    parser.add_argument("--copies", type=positive_int, default=20,
                        help="times the clips are repeated in the throughput set (default: %(default)s)")
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="throughput batch size (default: %(default)s)")
    parser.add_argument("--num_workers", type=non_negative_int, default=0,
                        help="data-loading threads of the throughput run (default: %(default)s)")
    parser.add_argument("--num_gpus", type=non_negative_int, default=0, help="GPUs to run on (default: 0, the CPU)")
    return parser


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def time_videos(reader: "VideoLipreader", videos: Sequence[Path], repeats: int) -> list[dict]:
    """Per clip: the fastest of ``repeats`` runs, split into extractor, network and decoder."""
    rows = []
    for video in videos:
        best = None
        for _ in range(repeats):
            cpu0, t0 = time.process_time(), time.perf_counter()
            frames = reader.mouth(video)
            t1 = time.perf_counter()
            log_probs = reader.log_probs([frames])[0]
            t2 = time.perf_counter()
            text = reader.decode(log_probs)[0]
            t3, cpu3 = time.perf_counter(), time.process_time()
            run = {"clip": video.name, "frames": len(frames), "extract_ms": _ms(t1 - t0), "network_ms": _ms(t2 - t1),
                   "decoder_ms": _ms(t3 - t2), "total_ms": _ms(t3 - t0), "cpu_ms": _ms(cpu3 - cpu0),
                   "sentence": text, "log_probs": log_probs, "crops": frames}
            if best is None or run["total_ms"] < best["total_ms"]:
                best = run
        rows.append(best)
    return rows


def time_throughput(network: "Network", crops: dict[str, np.ndarray], copies: int, batch_size: int,
                    num_workers: int) -> dict:
    """Clips per second of infer.py's data-set reading over the crops packed ``copies`` times (speakers s1..sN)."""
    from utils.data.clip_store import save_packed
    from utils.data.sentence_clips import build_records, discover_clips
    from utils.scoring.sentence_evaluation import evaluate_network

    with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        for k in range(1, copies + 1):
            for name, frames in crops.items():
                save_packed(Path(tmp) / f"s{k}" / f"{name}.npz", frames)
        records = build_records(discover_clips(tmp), None)
        evaluate_network(network, records[:batch_size], batch_size)  # graph building for this batch size
        cpu, start = time.process_time(), time.perf_counter()
        result = evaluate_network(network, records, batch_size, num_workers=num_workers, progress="throughput")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = len(result.clip_ids)
    return {"clips": n, "seconds": round(elapsed, 3), "clips_per_s": round(n / elapsed, 2),
            "cpu_s_per_clip": round(cpu / n, 3), "batch_size": batch_size, "num_workers": num_workers}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = build_parser()
    args = parse_args(parser, argv)
    # MXNet loads here, after the command line is known to be valid.
    from bench.decoders import grid_lm, time_decoders
    from model.checkpoint import EXAMPLE_MEAN, EXAMPLE_STD, LoadedLipNet, load_lipnet
    from model.devices import contexts
    from model.lipnet import LipNet, LipNetConfig
    from model.mxnet_network import MXNetLipNet
    from utils.data.sentence_clips import NUM_FRAMES
    from utils.reading.sentence_videos import VideoLipreader, list_videos

    videos = list_videos(Path(args.clips_dir))
    if not videos:
        parser.error(f"{args.clips_dir}: no videos")
    ctxs = contexts(args.num_gpus)
    if args.model_path:
        loaded = load_lipnet(args.model_path, ctxs)
    else:
        loaded = LoadedLipNet(LipNet(LipNetConfig()), EXAMPLE_MEAN, EXAMPLE_STD)
        loaded.net.initialize(ctx=ctxs)
    network = MXNetLipNet(loaded, ctxs)  # prepared for inference
    reader = VideoLipreader(network, args.decoder, args.beam_width,
                            lm=grid_lm(args.beam_width) if args.decoder == "lm" else None)
    start = time.perf_counter()
    reader.log_probs([np.zeros((NUM_FRAMES, loaded.config.height, loaded.config.width, 3), np.uint8)])
    first_call = time.perf_counter() - start  # builds the graph for 75-frame clips

    threads = os.environ.get("OMP_NUM_THREADS")
    print(f"{len(videos)} clips from {args.clips_dir}; {len(os.sched_getaffinity(0))} CPU cores, OMP_NUM_THREADS="
          f"{threads}; weights: {args.model_path or 'fresh paper LipNet'}; fastest of {args.repeats} runs per clip")
    rows = time_videos(reader, videos, args.repeats)
    print(f"{'clip':14} {'frames':>6} {'extract':>9} {'network':>9} {'decoder':>9} {'total':>9} {'CPU':>9}  "
          f"sentence ({args.decoder})")
    for row in rows:
        print(f"{row['clip']:14} {row['frames']:6d} {row['extract_ms']:7.1f}ms {row['network_ms']:7.1f}ms "
              f"{row['decoder_ms']:7.1f}ms {row['total_ms']:7.1f}ms {row['cpu_ms']:7.1f}ms  {row['sentence']}")
    totals = [row["total_ms"] for row in rows]
    print(f"end to end: median {statistics.median(totals):.0f} ms, max {max(totals):.0f} ms per clip "
          f"(target <= {TARGET_END_TO_END_S * 1e3:.0f} ms); the network's first call took {first_call:.2f} s, "
          "not counted")

    decoders = time_decoders([row["log_probs"] for row in rows], DECODERS, args.beam_width, args.repeats)
    print("decoders on these network outputs, ms per clip: " + ", ".join(
        f"{m} median {t.median_ms:.2f} max {t.max_ms:.2f}" for m, t in decoders.items()))

    crops = {Path(row["clip"]).stem: row["crops"] for row in rows}
    throughput = time_throughput(network, crops, args.copies, args.batch_size, args.num_workers)
    print(f"batch throughput: {throughput['clips']} preprocessed clips in {throughput['seconds']:.2f} s = "
          f"{throughput['clips_per_s']:.1f} clips/s (batch {args.batch_size}, target >= {TARGET_CLIPS_PER_S:.0f}); "
          f"{throughput['cpu_s_per_clip']:.2f} CPU s per clip")

    figures = {
        "cores": len(os.sched_getaffinity(0)), "omp_threads": threads, "weights": args.model_path or "fresh paper",
        "input": f"{loaded.config.width}x{loaded.config.height}", "decoder": args.decoder,
        "clips": [{k: v for k, v in row.items() if k not in ("log_probs", "crops")} for row in rows],
        "end_to_end_ms": {"median": statistics.median(totals), "max": max(totals)},
        "extract_ms_median": statistics.median(row["extract_ms"] for row in rows),
        "network_ms_median": statistics.median(row["network_ms"] for row in rows),
        "decoder_ms_median": statistics.median(row["decoder_ms"] for row in rows),
        "first_network_call_s": round(first_call, 3),
        "decoders_ms": {m: {"median": round(t.median_ms, 3), "mean": round(t.mean_ms, 3), "max": round(t.max_ms, 3)}
                        for m, t in decoders.items()},
        "throughput": throughput,
        "meets_targets": {"end_to_end": max(totals) <= TARGET_END_TO_END_S * 1e3,
                          "throughput": throughput["clips_per_s"] >= TARGET_CLIPS_PER_S},
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
