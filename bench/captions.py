"""Captioned videos end to end, at the size docs/captions.md gives, scored over six speakers never trained on
and over seeds: synthetic talks -> prepare_captions.py -> LipNet (alphabet=captions) -> subtitles, read with
beam search and with the word language model; prints the WER and CER of each, the language model's cut
(1 - its WER / beam search's) per seed, their mean and range over the seeds, the thread count and the
time of each stage.

    python bench/captions.py [--seeds=0,1] [--work=folder] [any utils/captions_quickstart.py option but --seed]

Per seed it runs ``utils/captions_quickstart.py`` (same stages, same options) with that ``--seed``, which
draws the talks and seeds the training, in WORK/seed-N (``--work``; by default a temporary folder, so nothing
is resumed). The talks read are the test speakers' (default 14-18, 20 sentences each) and the validation
speaker's (13, 40 sentences; the last checkpoint is read, so validation chooses nothing): six speakers never
trained on, 679 words with seed 0 and 670 with seed 1. One speaker's 96 words are too few to mean anything:
on speaker 14 alone the language model's cut was 29% in one run and 43% in another.

Training is deterministic for a given seed and thread count (``OMP_NUM_THREADS``, by default the cores this
process may use: ``utils/runtime/threads.py``), so the thread count is printed with the figures. The last
line printed is a JSON object with every figure. The target: the language model cuts the WER by at least 30%
against beam search without it, on the mean over the seeds.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import json
import os
import statistics
import tempfile
import time

from utils.captions_quickstart import DECODERS, add_options, passed_on, read_args, reading_folder, run_script, score
from utils.captions_quickstart import main as quickstart
from utils.prepare_captions import read_speaker_map
from utils.runtime.cli import non_negative_int, parse_args
from utils.runtime.threads import default_omp_threads

TARGET_CUT = 0.30
TEST_SPEAKERS = [14, 15, 16, 17, 18]


def seed_list(value: str) -> list[int]:
    """argparse type: distinct comma-separated seeds (integers of at least 0) such as ``0,1``."""
    seeds = [non_negative_int(c.strip()) for c in value.split(",") if c.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated seeds such as 0,1, got {value!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    """The quick start's options but where and with which seed, ``--seeds`` and ``--work``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, test_speakers=TEST_SPEAKERS)
    parser.add_argument("--seeds", type=seed_list, default=[0, 1],
                        help="one run per seed, each drawing its own talks and training its own model; the "
                             "figures' spread over them is reported (default: 0,1)")
    parser.add_argument("--work", default=None,
                        help="folder of each seed's data and checkpoints (WORK/seed-N), kept (default: a temporary "
                             "one, removed)")
    return parser


def measure(args: argparse.Namespace, folder: Path, seed: int) -> dict:
    """One seed's run of the quick start in ``folder``, its validation speakers' talks read as well, and the
    WERs over all the talks read."""
    data, save = folder / "data", folder / "checkpoint"
    status = quickstart([f"--data_path={data}", f"--save_dir={save}", f"--seed={seed}", "--progress=false",
                         *passed_on(args)])
    if status:
        raise SystemExit(status)
    videos = validation_talks(args, data)
    return summarise(data, seed, videos, read_validation(data, save, videos))


def validation_talks(args: argparse.Namespace, data: Path) -> list[Path]:
    """The validation speakers' talks (``.mp4``) among the training talks in ``data``."""
    talks = data / "talks"
    return [talks / f"{stem}.mp4" for stem, speaker in read_speaker_map(talks / "speakers.txt").items()
            if int(speaker.lstrip("s")) in args.val_speakers]


def read_validation(data: Path, save: Path, videos: list[Path]) -> dict[str, float]:
    """Reads ``videos`` (the validation speakers' talks) with each decoder, as the quick start reads the test
    talks, into the same folders; returns the seconds each decoder took."""
    seconds = {}
    for decoder in DECODERS:
        started = time.perf_counter()
        print(f"reading the validation speakers' talks ({decoder})", file=sys.stderr)
        for video in videos:
            status = run_script("infer.py", *read_args(data, save, decoder, video, False))
            if status:
                raise SystemExit(f"infer.py failed with exit status {status} on {video}")
        seconds[f"reading validation ({decoder})"] = round(time.perf_counter() - started, 1)
    return seconds


def summarise(data: Path, seed: int, videos: list[Path], validation_seconds: dict[str, float]) -> dict:
    """One seed's figures: every talk read (the test talks and ``videos``, the validation speakers') scored
    with each decoder, the language model's cut, and the seconds of each stage."""
    seconds = json.loads((data / "results.json").read_text())["seconds"] | validation_seconds
    references = sorted((data / "test_talks").glob("*.srt")) + [video.with_suffix(".srt") for video in videos]
    results = {decoder: score(references, reading_folder(data, decoder)) for decoder in DECODERS}
    beam, lm = results["beam"]["wer"], results["lm"]["wer"]
    return {"seed": seed, "results": results, "lm_cut": round(1 - lm / beam, 3) if beam else None,
            "seconds": seconds, "minutes": round(sum(seconds.values()) / 60, 1)}


def spread(values: list[float]) -> dict:
    """Mean, least and greatest of ``values``."""
    return {"mean": round(statistics.fmean(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def report(runs: list[dict], threads: str) -> None:
    """Prints each seed's figures, their spread over the seeds and, last, all of it as one JSON line."""
    for run in runs:
        beam, lm = run["results"]["beam"], run["results"]["lm"]
        cut = "n/a" if run["lm_cut"] is None else f"{run['lm_cut']:.0%}"
        print(f"seed {run['seed']}: {beam['words']} words of {beam['talks']} talks; beam WER {beam['wer']:.3f} "
              f"(CER {beam['cer']:.3f}), with the language model {lm['wer']:.3f} (CER {lm['cer']:.3f}), cut {cut}; "
              f"{run['minutes']} min (" + ", ".join(f"{k} {v:.0f} s" for k, v in run["seconds"].items()) + ")")
    seeds = [run["seed"] for run in runs]
    over = {"beam_wer": spread([r["results"]["beam"]["wer"] for r in runs]),
            "lm_wer": spread([r["results"]["lm"]["wer"] for r in runs])}
    cuts = [r["lm_cut"] for r in runs if r["lm_cut"] is not None]
    over["lm_cut"] = spread(cuts) if cuts else None
    met = over["lm_cut"] is not None and over["lm_cut"]["mean"] >= TARGET_CUT
    for key, value in over.items():
        if value:
            print(f"{key} over seeds {','.join(str(s) for s in seeds)}: mean {value['mean']:.3f}, "
                  f"{value['min']:.3f}-{value['max']:.3f}")
    print(f"OMP_NUM_THREADS={threads}; target: a {TARGET_CUT:.0%} cut on the mean, {'met' if met else 'missed'}")
    print(json.dumps({"seeds": seeds, "omp_num_threads": threads, "runs": runs, "over_seeds": over,
                      "target_cut": TARGET_CUT, "target_met": met}))


def main(argv: list[str]) -> int:
    args = parse_args(build_parser(), argv)  # every option checked (and --help) before any work
    default_omp_threads()  # what main.py and infer.py would choose, set here so that it is the one reported
    threads = os.environ["OMP_NUM_THREADS"]
    print(f"OMP_NUM_THREADS={threads} ({len(os.sched_getaffinity(0))} cores usable)", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-captions-") as scratch:
        root = Path(args.work or scratch)
        for seed in args.seeds:
            print(f"seed {seed}", file=sys.stderr)
            runs.append(measure(args, root / f"seed-{seed}", seed))
    report(runs, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
