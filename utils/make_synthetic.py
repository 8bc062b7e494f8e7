"""Write a synthetic GRID-style lip-reading corpus (see utils/synthetic/ for how it is made).

    python utils/make_synthetic.py --speakers 1-12 --clips_per_speaker 60 --size 48x24

writes ``data/synthetic/datasets/sN/{clip}.npz`` and ``data/synthetic/align/sN/{clip}.align``,
the layout the real-data pipeline produces, so training and evaluation run on it unchanged.
Re-running skips what is already written; the same seed always gives the same clips and talks.
Each target folder records the parameters of its set (``.synthetic.json``): a rerun with other ones
(another seed or size, a speaker moved to another split, ...) is refused with what differs, and
``--overwrite`` deletes the old set first; more speakers, clips, words or talks add to a set.

    python utils/make_synthetic.py layout=lrw --words ABOUT,MONEY,WORLD --clips_per_speaker 10

writes a word-level set in LRW's layout instead (see utils/synthetic/words.py):
``data/synthetic_words/WORD/{train,val,test}/WORD_NNNNN.npz`` (grey 29x96x96) with its ``.txt``,
each split spoken by its own speakers (``--train_speakers``, ``--val_speakers``, ``--test_speakers``).

    python utils/make_synthetic.py --talks 2 --speakers 1-4 --tgt_path data/talks [--text FILE]

writes captioned talks instead (utils/synthetic/talks.py): ``sN_talkK.mp4`` videos of a drawn face
saying English sentences (a small built-in grammar, or the sentences of ``--text``), each with its
``.srt`` (one cue per sentence) and ``speakers.txt``, the input of utils/prepare_captions.py.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import os
import time

from utils.runtime.cli import (
    bounded,
    non_negative_int,
    parse_args,
    parse_size,
    parse_speakers,
    positive_int,
    str2bool,
)
from utils.synthetic import (
    DEFAULT_CLIPS_PER_SPEAKER,
    DEFAULT_SIZE,
    DEFAULT_SPEAKERS,
    DEFAULT_TGT_PATH,
    MIN_GRID_SIZE,
    N_SENTENCES,
    GenerateReport,
    generate,
    save_preview,
)
from utils.synthetic.talks import generate_talks
from utils.synthetic.words import (
    DEFAULT_SPLIT_SPEAKERS,
    DEFAULT_WORD_CLIPS,
    DEFAULT_WORDS,
    DEFAULT_WORDS_PATH,
    MAX_CLIPS_PER_SPEAKER,
    MAX_SPEAKER,
    MIN_SIZE,
    WORD_SIZE,
    generate_words,
)

DEFAULT_TALKS_PATH = DEFAULT_TGT_PATH.parent / "synthetic_talks"

LAYOUTS = ("grid", "lrw")


def _speaker_list(value: str) -> list[int]:
    """Like ``parse_speakers``, and ``none`` for a split without speakers."""
    return [] if value.strip().lower() == "none" else parse_speakers(value)


def _word_list(value: str) -> list[str]:
    return [w.strip().upper() for w in value.split(",") if w.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=LAYOUTS, default="grid",
                        help="grid: GRID sentences (datasets/sN, align/sN); lrw: single words in LRW's "
                             "layout, WORD/{train,val,test}/WORD_NNNNN.npz + .txt (default: %(default)s)")
    parser.add_argument("--tgt_path", type=Path, default=None,
                        help="corpus root; grid: clips go to TGT_PATH/datasets/sN, aligns to TGT_PATH/align/sN "
                             f"(default: {DEFAULT_TGT_PATH}); lrw: TGT_PATH/WORD/split (default: {DEFAULT_WORDS_PATH})")
    parser.add_argument("--speakers", type=parse_speakers, default=list(DEFAULT_SPEAKERS),
                        help="speaker numbers, a range or list such as 1-12 or 1,2,20,22; each is a "
                             "different synthetic face and voice (default: 1-12; note '12' means speaker s12 only)")
    parser.add_argument("--clips_per_speaker", type=bounded(int, 1, N_SENTENCES), default=None,
                        help=f"grid: distinct GRID sentences per speaker, at most {N_SENTENCES} (default: "
                             f"{DEFAULT_CLIPS_PER_SPEAKER}); lrw: clips of each word per speaker, at most "
                             f"{MAX_CLIPS_PER_SPEAKER} (default: {DEFAULT_WORD_CLIPS})")
    parser.add_argument("--words", type=_word_list, default=list(DEFAULT_WORDS),
                        help="lrw: comma-separated words to say, letters only (default: "
                             f"{','.join(DEFAULT_WORDS)})")
    for split, speakers in DEFAULT_SPLIT_SPEAKERS.items():
        parser.add_argument(f"--{split}_speakers", type=_speaker_list, default=list(speakers),
                            help=f"lrw: the speakers of the {split} split, each in one split only, or none "
                                 f"(default: {speakers[0]}-{speakers[-1]})")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed; the same seed gives byte-identical clips and aligns (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="frame size WIDTHxHEIGHT; 100x50 is GRID's mouth crop, 48x24 or 64x32 train "
                             f"much faster on a CPU, at least {MIN_GRID_SIZE[0]}x{MIN_GRID_SIZE[1]} (default: "
                             f"100x50); lrw: square, at least {MIN_SIZE}x{MIN_SIZE} (default: {WORD_SIZE}x{WORD_SIZE} "
                             "as LRW is preprocessed)")
    parser.add_argument("--n_process", type=positive_int, default=None,
                        help="worker processes drawing clips in parallel; the output does not depend on it "
                             "(default: one per available core)")
    talks = parser.add_argument_group("captioned talks (instead of GRID clips)")
    talks.add_argument("--talks", type=positive_int, default=None,
                       help="write this many captioned talks per speaker (320x240 videos + .srt, one after "
                            "another; --size, --n_process and --clips_per_speaker are for GRID clips) instead "
                            "of GRID clips (default: none, GRID clips)")
    talks.add_argument("--sentences_per_talk", type=positive_int, default=12,
                       help="sentences (subtitle cues) per talk (default: %(default)s)")
    talks.add_argument("--text", type=Path, default=None,
                       help="say the sentences of this UTF-8 text file (long ones split between words) "
                            "instead of the built-in grammar's (default: none, the grammar's)")
    parser.add_argument("--preview", type=Path, default=None,
                        help="instead of writing a corpus, write a PNG strip of frames from the first clip "
                             "of the first three speakers to this path (grid layout) (default: none, a corpus)")
    parser.add_argument("--overwrite", type=str2bool, nargs="?", const=True, default=False,
                        help="delete the set TGT_PATH holds (only the files the generators write) and start "
                             "clean; without it a rerun with other parameters (seed, size, lrw splits, ...) is "
                             "refused, and one with the same parameters skips what is written (default: false)")
    return parser


def check_layout_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The limits that depend on the layout, refused as the other options' are (exit status 2)."""
    if args.layout == "lrw" and args.talks is None:
        if args.clips_per_speaker is not None and args.clips_per_speaker > MAX_CLIPS_PER_SPEAKER:
            parser.error(f"argument --clips_per_speaker: expected at most {MAX_CLIPS_PER_SPEAKER} with layout=lrw, "
                         f"got {args.clips_per_speaker}")
        for split in DEFAULT_SPLIT_SPEAKERS:
            outside = [s for s in getattr(args, f"{split}_speakers") if s > MAX_SPEAKER]
            if outside:
                parser.error(f"argument --{split}_speakers: speakers are 0-{MAX_SPEAKER} with layout=lrw, "
                             f"got {outside}")
        if args.size is not None and (args.size[0] != args.size[1] or args.size[0] < MIN_SIZE):
            parser.error(f"argument --size: the lrw layout's mouth regions are square, at least {MIN_SIZE}x{MIN_SIZE}, "
                         f"got {args.size[0]}x{args.size[1]}")
    elif args.size is not None and (args.size[0] < MIN_GRID_SIZE[0] or args.size[1] < MIN_GRID_SIZE[1]):
        parser.error(f"argument --size: expected at least {MIN_GRID_SIZE[0]}x{MIN_GRID_SIZE[1]} to draw a mouth, "
                     f"got {args.size[0]}x{args.size[1]}")


def _generate(args: argparse.Namespace) -> GenerateReport:
    if args.layout == "lrw":
        size = args.size or (WORD_SIZE, WORD_SIZE)
        speakers = {split: getattr(args, f"{split}_speakers") for split in DEFAULT_SPLIT_SPEAKERS}
        return generate_words(args.tgt_path, args.words, speakers, args.clips_per_speaker or DEFAULT_WORD_CLIPS,
                              args.seed, size[0], n_process=args.n_process, overwrite=args.overwrite)
    return generate(args.tgt_path, args.speakers, args.clips_per_speaker or DEFAULT_CLIPS_PER_SPEAKER, args.seed,
                    args.size or DEFAULT_SIZE, n_process=args.n_process, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    check_layout_options(parser, args)
    args.tgt_path = args.tgt_path or (DEFAULT_WORDS_PATH if args.layout == "lrw" else DEFAULT_TGT_PATH)
    if args.preview is not None and args.layout == "lrw":
        print("error: --preview draws the grid layout's sentences; leave out layout=lrw", file=sys.stderr)
        return 1
    if args.preview is not None:
        try:
            save_preview(args.preview, seed=args.seed, speakers=args.speakers[:3], size=args.size or DEFAULT_SIZE)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote {args.preview}")
        return 0
    start = time.perf_counter()
    if args.talks is not None:
        return write_talks(args, start)
    try:
        report = _generate(args)
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
        report = generate_talks(tgt, args.speakers, args.talks, args.sentences_per_talk, args.seed, text,
                                overwrite=args.overwrite)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{report.written} talks written, {report.skipped} already present in {time.perf_counter() - start:.1f} s "
          f"under {os.fspath(tgt)} (speaker mapping: {os.fspath(Path(tgt) / 'speakers.txt')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
