"""Build a word n-gram language model (ARPA) for ``decoder=lm``, from training transcripts or any text.

    python utils/build_lm.py image_path=data/datasets out=data/lm.arpa          # the unseen split's training side
    python utils/build_lm.py text=sentences.txt out=data/lm.arpa order=4        # one sentence a line

From a data folder, the sentences are the labels of the training side of the same selection main.py makes
(align files, transcripts, GRID names; ``side=all`` takes every clip), so validation sentences never reach
the model a validation is decoded with. From a text file, each line is a sentence, lower-cased, with
every character the alphabet cannot spell turned into a space. The model is interpolated Kneser-Ney
(``utils/text/language_model.py``), written atomically; any ARPA file (KenLM's ``lmplz``, SRILM) works as
``lm_path`` too. Exit status: 0 written, 2 nothing usable to build from.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
from collections.abc import Sequence

from tqdm import tqdm

from utils.data.splits import MISSING_CLIPS, SPLITS
from utils.runtime.atomic import write_text_atomic
from utils.runtime.cli import parse_args, parse_speakers, positive_int, str2bool
from utils.runtime.paths import ALIGN_DIR, DATA_DIR
from utils.text.alphabet import ALPHABETS, get_alphabet
from utils.text.language_model import estimate, normalise_sentence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("source (one of)")
    source.add_argument("--text", default=None, help="a text file, one sentence a line (default: none)")
    source.add_argument("--image_path", default=None,
                        help="a data folder of clips (sN/{clip}.npz or PNG folders): their sentences (default: none)")
    data = parser.add_argument_group("data folder (as main.py selects clips)")
    data.add_argument("--align_path", default=str(ALIGN_DIR), help="align files (default: %(default)s)")
    data.add_argument("--side", default="train", choices=("train", "all"),
                      help="the training side of the selection, or every clip (default: %(default)s)")
    data.add_argument("--split", default="unseen", choices=SPLITS,
                      help="main.py's standard protocol the training side is taken from (default: %(default)s)")
    data.add_argument("--train_list", default=None,
                      help="file of SPEAKER/CLIP lines to train on, with --val_list (default: none)")
    data.add_argument("--val_list", default=None, help="file of SPEAKER/CLIP lines to validate on (default: none)")
    data.add_argument("--missing_clips", default="warn", choices=MISSING_CLIPS,
                      help="clips a list names that are absent: warn and go on, or error (default: %(default)s)")
    data.add_argument("--speakers", type=parse_speakers, default=None,
                      help="only these speakers, e.g. 1-34 (default: every speaker)")
    data.add_argument("--val_speakers", type=parse_speakers, default=None,
                      help="validation side = these speakers, overrides --split (default: none)")
    model = parser.add_argument_group("model")
    model.add_argument("--out", default=str(DATA_DIR / "lm.arpa"), help="ARPA file to write (default: %(default)s)")
    model.add_argument("--order", type=positive_int, default=3, help="n-gram order (default: %(default)s)")
    model.add_argument("--alphabet", default="captions", choices=tuple(ALPHABETS),
                       help="characters kept in words; others become spaces (default: %(default)s)")
    model.add_argument("--progress", type=str2bool, default=True, help="progress bar (default: true)")
    return parser


def text_sentences(path: Path, characters: str, progress: bool) -> list[list[str]]:
    """The normalised lines of a text file, as word lists (empty ones left out)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file")
    sentences = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in tqdm(f, desc=path.name, unit=" lines", disable=not progress, file=sys.stderr):
            words = normalise_sentence(line, characters).split()
            if words:
                sentences.append(words)
    return sentences


def data_sentences(args: argparse.Namespace, characters: str) -> list[list[str]]:
    """The sentences of the selected side of a data folder's clips."""
    from utils.data import sentence_clips as clip_data

    clips = clip_data.discover_clips(args.image_path)
    if args.side == "all":
        ids = list(clips)
    else:
        ids, _ = clip_data.select_clips(clips, args.split, args.train_list, args.val_list, args.speakers,
                                        args.val_speakers, args.missing_clips)
    records = clip_data.build_records({c: clips[c] for c in ids}, args.align_path)
    return [words for words in (normalise_sentence(r.sentence, characters).split() for r in records) if words]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if (args.text is None) == (args.image_path is None):
        parser.error("give one of text=FILE or image_path=DIR")
    characters = get_alphabet(args.alphabet).characters
    try:
        sentences = (text_sentences(Path(args.text), characters, args.progress) if args.text is not None
                     else data_sentences(args, characters))
        model = estimate(sentences, args.order)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, model.to_arpa())
    counts = ", ".join(f"{len(model.ngrams[k])} {k}-grams" for k in range(1, model.order + 1))
    print(f"wrote {out}: {len(sentences)} sentences, {len(model.vocabulary)} words; {counts}; interpolated "
          "Kneser-Ney", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
