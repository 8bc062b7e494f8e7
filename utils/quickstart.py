"""The whole system in minutes on a CPU: synthetic data -> training -> inference on unseen speakers.

    python utils/quickstart.py

1. ``utils/synthetic/`` renders GRID-grammar sentences as small mouth clips for speakers 1-22
   (packed clips and GRID align files in the standard layout, under data/quickstart/).
2. ``main.py`` trains a narrow LipNet (the same class and trainer as for GRID: 16/32/48 channels,
   128 GRU units, instance norm, 48x24 frames, 20 epochs with a cosine learning rate) on speakers
   1-20, validating on 21 and 22, who are never trained on. Many speakers with few clips each teach
   a reader that carries over to new faces better than few speakers with many clips.
3. ``infer.py`` reads the unseen speakers' clips with the best checkpoint and prints
   ``[Target]``/``[Pred]`` pairs, CER and WER overall and per speaker.
Each stage is resumable: rerunning with the same options skips clips already generated and resumes
training from ``checkpoint/quickstart/last``; other options are refused there (the data set and the run
would mix), unless ``overwrite=true`` starts both afresh. Every option below can be overridden
(``--key=value`` or ``key=value``).
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import subprocess
import time

from utils.runtime.cli import (
    channel_list,
    non_negative_int,
    parse_args,
    parse_size,
    parse_speakers,
    positive_float,
    positive_int,
    str2bool,
)
from utils.runtime.paths import CHECKPOINT_DIR, DATA_DIR, REPO_ROOT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", default=str(DATA_DIR / "quickstart"),
                        help="synthetic corpus root (datasets/ and align/ go here) (default: %(default)s)")
    parser.add_argument("--save_dir", default=str(CHECKPOINT_DIR / "quickstart"),
                        help="training run folder (default: %(default)s)")
    parser.add_argument("--train_speakers", type=parse_speakers, default=parse_speakers("1-20"),
                        help="speakers trained on (default: 1-20)")
    parser.add_argument("--val_speakers", type=parse_speakers, default=parse_speakers("21-22"),
                        help="unseen speakers validated and read at the end (default: 21-22)")
    parser.add_argument("--clips_per_speaker", type=positive_int, default=30,
                        help="synthetic clips rendered per speaker (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, default=(48, 24), help="frame WIDTHxHEIGHT (default: 48x24)")
    parser.add_argument("--channels", type=channel_list, default="16,32,48",
                        help="LipNet conv channels (default: %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=128,
                        help="GRU units per direction (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="clips per step (default: %(default)s)")
    parser.add_argument("--decoder", default="grammar", choices=("greedy", "beam", "grammar"),
                        help="decoder for the final read (default: %(default)s, the most probable GRID sentence)")
    parser.add_argument("--lr", type=positive_float, default=3e-3,
                        help="peak learning rate of the cosine schedule (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seeds the synthetic speakers and sentences, and training (default: %(default)s)")
    parser.add_argument("--overwrite", type=str2bool, default=False,
                        help="start afresh: remove a synthetic set or run made with other options in data_path or "
                             "save_dir (default: false, such folders are refused)")
    parser.add_argument("--progress", type=str2bool, default=True, help="progress bars (default: true)")
    return parser


def _speakers(values: list[int]) -> str:
    return ",".join(str(v) for v in values)


def _run_script(script: str, args: list[str]) -> int:
    """Run one of the project's entry scripts as its own process (its output goes straight to ours)."""
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    overlap = set(args.train_speakers) & set(args.val_speakers)
    if overlap:
        print(f"train and validation speakers overlap: {sorted(overlap)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    from utils.synthetic import SetMismatch, generate

    print(f"[1/3] generating synthetic clips in {args.data_path}", file=sys.stderr)
    try:
        generate(args.data_path, speakers=sorted(args.train_speakers + args.val_speakers),
                 clips_per_speaker=args.clips_per_speaker, seed=args.seed, size=args.size, progress=args.progress,
                 overwrite=args.overwrite)
    except SetMismatch as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    data = [f"image_path={Path(args.data_path) / 'datasets'}", f"align_path={Path(args.data_path) / 'align'}",
            f"speakers={_speakers(args.train_speakers + args.val_speakers)}",
            f"val_speakers={_speakers(args.val_speakers)}", "num_gpus=0", f"progress={args.progress}"]
    print(f"[2/3] training a narrow LipNet in {args.save_dir}", file=sys.stderr)
    last = Path(args.save_dir) / "last"
    resume = [f"model_path={last}"] if (last / "meta.json").is_file() and not args.overwrite else []
    status = _run_script("main.py", data + resume + [
        f"save_dir={args.save_dir}", f"channels={args.channels}", f"hidden={args.hidden}",
        f"epochs={args.epochs}", f"batch_size={args.batch_size}", f"lr={args.lr}", f"seed={args.seed}",
        "norm=instance", "dr_rate=0.2", "flip_prob=0", "jitter_prob=0", "lr_schedule=cosine", "val_interval=5",
        "show_examples=2", f"overwrite={args.overwrite}",
    ])
    if status:
        if resume and status == 2:
            print(f"the quick start's {args.save_dir} holds a run made with other options: rerun with "
                  "overwrite=true to start afresh, or give another save_dir", file=sys.stderr)
        return status
    print(f"[3/3] reading the unseen speakers {_speakers(args.val_speakers)} with {args.save_dir}/best",
          file=sys.stderr)
    status = _run_script("infer.py", data + [f"model_path={args.save_dir}", "data_type=valid",
                                             f"decoder={args.decoder}"])
    print(f"quick start finished in {(time.perf_counter() - started) / 60:.1f} min; the checkpoint is in "
          f"{args.save_dir} (python infer.py model_path={args.save_dir} ...)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
