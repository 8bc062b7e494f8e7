"""Write a synthetic GRID-style lip-reading corpus (see utils/synthetic/ for how it is made).

    python utils/make_synthetic.py --speakers 1-12 --clips_per_speaker 60 --size 48x24

writes ``data/synthetic/datasets/sN/{clip}.npz`` and ``data/synthetic/align/sN/{clip}.align``,
the layout the real-data pipeline produces, so training and evaluation run on it unchanged.

    python utils/make_synthetic.py --talks 2 --speakers 1-4 --tgt_path data/talks [--text FILE]

writes captioned talks instead (utils/synthetic/talks.py): ``sN_talkK.mp4`` videos of a drawn face
saying English sentences (a small built-in grammar, or the sentences of ``--text``), each with its
``.srt`` (one cue per sentence) and ``speakers.txt``, the input of utils/prepare_captions.py.
Re-running skips what is already written; the same seed always gives the same clips and talks.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from utils.cli import parse_args, parse_size, parse_speakers, positive_int  # noqa: E402
from utils.synthetic import (  # noqa: E402
    DEFAULT_CLIPS_PER_SPEAKER,
    DEFAULT_SIZE,
    DEFAULT_SPEAKERS,
    DEFAULT_TGT_PATH,
    N_SENTENCES,
    generate,
    save_preview,
)
from utils.synthetic.talks import generate_talks  # noqa: E402

DEFAULT_TALKS_PATH = DEFAULT_TGT_PATH.parent / "synthetic_talks"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tgt_path", type=Path, default=DEFAULT_TGT_PATH,
                        help="corpus root; clips go to TGT_PATH/datasets/sN, aligns to TGT_PATH/align/sN "
                             "(default: %(default)s)")
    parser.add_argument("--speakers", type=parse_speakers, default=list(DEFAULT_SPEAKERS),
                        help="speaker numbers, a range or list such as 1-12 or 1,2,20,22; each is a "
                             "different synthetic face and voice (default: 1-12; note '12' means speaker s12 only)")
    parser.add_argument("--clips_per_speaker", type=positive_int, default=DEFAULT_CLIPS_PER_SPEAKER,
                        help=f"distinct GRID sentences per speaker, at most {N_SENTENCES} (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives byte-identical clips and aligns (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE,
                        help="frame size WIDTHxHEIGHT; 100x50 is GRID's mouth crop, 48x24 or 64x32 train "
                             "much faster on a CPU (default: 100x50)")
    parser.add_argument("--n_process", type=positive_int, default=None,
                        help="worker processes drawing clips in parallel; the output does not depend on it "
                             "(default: one per available core)")
    talks = parser.add_argument_group("captioned talks (instead of GRID clips)")
    talks.add_argument("--talks", type=positive_int, default=None,
                       help="write this many captioned talks per speaker (320x240 videos + .srt, one after "
                            "another; --size, --n_process and --clips_per_speaker are for GRID clips) instead "
                            "of GRID clips")
    talks.add_argument("--sentences_per_talk", type=positive_int, default=12,
                       help="sentences (subtitle cues) per talk (default: %(default)s)")
    talks.add_argument("--text", type=Path, default=None,
                       help="say the sentences of this UTF-8 text file (long ones split between words) "
                            "instead of the built-in grammar's")
    parser.add_argument("--preview", type=Path, default=None,
                        help="instead of writing a corpus, write a PNG strip of frames from the first clip "
                             "of the first three speakers to this path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.preview is not None:
        try:
            save_preview(args.preview, seed=args.seed, speakers=args.speakers[:3], size=args.size)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote {args.preview}")
        return 0
    start = time.perf_counter()
    if args.talks is not None:
        return write_talks(args, start)
    try:
        report = generate(args.tgt_path, args.speakers, args.clips_per_speaker, args.seed, args.size,
                          n_process=args.n_process)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    rate = f" ({report.written / seconds:.0f} clips/s)" if report.written else ""
    print(f"{report.written} clips written, {report.skipped} already present, {len(report.errors)} failed "
          f"in {seconds:.1f} s{rate} under {os.fspath(args.tgt_path)}")
    return 1 if report.errors else 0


def write_talks(args: argparse.Namespace, start: float) -> int:
    tgt = DEFAULT_TALKS_PATH if args.tgt_path == DEFAULT_TGT_PATH else args.tgt_path
    try:
        text = args.text.read_text(encoding="utf-8") if args.text is not None else None
        report = generate_talks(tgt, args.speakers, args.talks, args.sentences_per_talk, args.seed, text)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{report.written} talks written, {report.skipped} already present in {time.perf_counter() - start:.1f} s "
          f"under {os.fspath(tgt)} (speaker mapping: {os.fspath(Path(tgt) / 'speakers.txt')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
