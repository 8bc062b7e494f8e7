"""Time utils/preprocess_data.py against the original example's algorithm, and measure the packed format.

    python bench/preprocess.py                  # the clips in ../shared/grid, copied 12x under s1..s12

One run times: our pipeline on one process, the original algorithm (bench/baseline_preprocess.py:
HOG with upsampling on every frame, landmarks, a PNG per frame) on each clip once, and our
pipeline on two processes; then compares the packed clips with 75 PNGs (size, decode speed, error).
The clips are copied into a temporary folder under several speaker names so two processes get
balanced work, and enough of them (36 by default) that each worker's one-time model load (about
1.3 s) is spread over many clips as on a real corpus; nothing is written into the repository.
Wall times depend on what else the machine runs: the load average is printed, and CPU seconds are
given beside wall seconds. The last line is a JSON object of the figures (``bench/speed_table.py`` reads it):
``ours_s_per_clip`` and ``original_s_per_clip`` (wall seconds per clip on one process, the model load
excluded), their CPU seconds (``*_cpu_s_per_clip``), ``two_over_one`` (two processes' speed-up), ``clips``
and ``original_clips`` (how many each timed) and ``packed_decode_clips_per_s``.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import tempfile
import time

import cv2
import dlib
import numpy as np

from bench.baseline_preprocess import preprocess_clip
from utils.data.clip_store import load_packed, load_png_folder, save_png_folder
from utils.preprocess_data import main as preprocess_main
from utils.runtime.cli import parse_args, positive_int
from utils.runtime.paths import REPO_ROOT
from utils.video.mouth_extractor import MouthExtractor, load_models


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, *args):
    """(result, wall seconds, CPU seconds) of fn(*args), its console output swallowed."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = fn(*args)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def load_fresh_models() -> None:
    """What loading dlib's models costs a process (load_models caches them, so it cannot tell)."""
    import face_recognition_models

    dlib.get_frontal_face_detector()
    dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_ours(src: Path, tgt: Path, n_process: int) -> tuple[float, float]:
    argv = [f"--src_path={src}", f"--tgt_path={tgt}", f"--n_process={n_process}"]
    rc, wall, cpu = timed(preprocess_main, argv)
    if rc != 0:
        raise SystemExit(f"preprocess_data failed with exit status {rc} on {src}")
    return wall, cpu


def storage_rows(videos: list[Path], packed_root: Path, work: Path, repeats: int) -> list[tuple]:
    """Per clip: packed bytes, our 75-PNG folder bytes, decode CPU ms for each, and the packed error."""
    extractor = MouthExtractor()
    rows = []
    for video in videos:
        raw = extractor.extract(video).frames
        packed = packed_root / "s1" / f"{video.stem}.npz"
        png = work / "png" / video.stem
        save_png_folder(png, raw)
        start = time.process_time()  # CPU time: the figure per core, whatever else the machine runs
        for _ in range(repeats):
            decoded = load_packed(packed)
        packed_ms = (time.process_time() - start) / repeats * 1e3
        start = time.process_time()
        for _ in range(max(1, repeats // 5)):
            load_png_folder(png)
        png_ms = (time.process_time() - start) / max(1, repeats // 5) * 1e3
        error = float(np.abs(decoded.astype(np.int16) - raw).mean())
        rows.append((video.stem, packed.stat().st_size, folder_bytes(png), packed_ms, png_ms, error))
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark mouth-crop preprocessing against the original.")
    parser.add_argument("--grid_dir", default=str(REPO_ROOT.parent / "shared" / "grid"),
                        help="folder of GRID .mpg clips (default: %(default)s)")
    parser.add_argument("--copies", type=positive_int, default=12,
                        help="speaker folders the clips are copied under, for balanced parallel work "
                             "(default: %(default)s)")
    parser.add_argument("--decode_repeats", type=positive_int, default=50,
                        help="decodes per clip when timing the packed format (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    videos = sorted(Path(args.grid_dir).glob("*.mpg"))
    if not videos:
        print(f"error: no .mpg clips in {args.grid_dir}", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        work = Path(tmp)
        for k in range(1, args.copies + 1):
            (work / "src" / f"s{k}").mkdir(parents=True)
            for video in videos:
                shutil.copy(video, work / "src" / f"s{k}" / video.name)
        n_clips = len(videos) * args.copies

        _, load_wall, load_cpu = timed(load_fresh_models)
        load_models()  # loaded once here, so both runs below time the clips alone
        one_wall, one_cpu = run_ours(work / "src", work / "one", 1)
        two_wall, two_cpu = run_ours(work / "src", work / "two", 2)
        base_wall, base_cpu = 0.0, 0.0
        for video in videos:
            _, wall, cpu = timed(preprocess_clip, video, work / "baseline" / "s1" / video.stem)
            base_wall, base_cpu = base_wall + wall, base_cpu + cpu
        identical = all((work / "one" / f"s{k}" / f"{v.stem}.npz").read_bytes()
                        == (work / "two" / f"s{k}" / f"{v.stem}.npz").read_bytes()
                        for k in range(1, args.copies + 1) for v in videos)
        storage = storage_rows(videos, work / "one", work, args.decode_repeats)
        baseline_bytes = folder_bytes(work / "baseline") / len(videos)
    load_after = os.getloadavg()[0]

    ours, base = one_wall / n_clips, base_wall / len(videos)
    print(f"# Preprocessing benchmark ({len(videos)} GRID clips x {args.copies} copies = {n_clips} clips; "
          f"{len(os.sched_getaffinity(0))} cores; load average {load_before:.1f} before, "
          f"{load_after:.1f} after)")
    print()
    print("| run | clips | wall s | wall s/clip | CPU s/clip |")
    print("|---|---|---|---|---|")
    print(f"| dlib model load (once per run) | - | {load_wall:.2f} | - | {load_cpu:.2f} (once) |")
    print(f"| ours, 1 process | {n_clips} | {one_wall:.2f} | {ours:.3f} | {one_cpu / n_clips:.3f} |")
    print(f"| ours, 2 processes | {n_clips} | {two_wall:.2f} | {two_wall / n_clips:.3f} | "
          f"{two_cpu / n_clips:.3f} |")
    print(f"| original algorithm, 1 process | {len(videos)} | {base_wall:.2f} | {base:.3f} | "
          f"{base_cpu / len(videos):.3f} |")
    print()
    print(f"- ours end to end on 1 process, the model load included: "
          f"{(one_wall + load_wall) / n_clips:.3f} s/clip")
    print(f"- speed-up over the original algorithm: {base / ours:.1f}x wall, "
          f"{(base_cpu / len(videos)) / (one_cpu / n_clips):.1f}x CPU")
    print(f"- 2 processes over 1: {one_wall / two_wall:.2f}x; outputs identical: {identical}")
    print()
    print("| clip | packed MB | 75 PNGs MB | smaller | packed decode CPU ms | PNG decode CPU ms "
          "| mean abs error /255 |")
    print("|---|---|---|---|---|---|---|")
    for name, packed, png, packed_ms, png_ms, error in storage:
        print(f"| {name} | {packed / 1e6:.3f} | {png / 1e6:.3f} | {png / packed:.1f}x | {packed_ms:.2f} | "
              f"{png_ms:.2f} | {error:.2f} |")
    mean_ms = float(np.mean([row[3] for row in storage]))
    print()
    print(f"- packed decode: {1e3 / mean_ms:.0f} clips/s on one core; the original's PNG folders "
          f"(written by the baseline) hold {baseline_bytes / 1e6:.3f} MB per clip")
    print(json.dumps({"ours_s_per_clip": round(ours, 4), "original_s_per_clip": round(base, 4),
                      "ours_cpu_s_per_clip": round(one_cpu / n_clips, 4),
                      "original_cpu_s_per_clip": round(base_cpu / len(videos), 4),
                      "two_over_one": round(one_wall / two_wall, 3), "clips": n_clips, "original_clips": len(videos),
                      "packed_decode_clips_per_s": round(1e3 / mean_ms, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
