"""Captioned videos end to end, at the size docs/captions.md gives: synthetic talks -> prepare_captions.py -> LipNet
(alphabet=captions) -> subtitles for an unseen speaker, read with beam search and with the word
language model; prints WER and CER of each and the time of each stage.

    python bench/captions.py [--work=folder] [any utils/captions_quickstart.py option]

It is ``utils/captions_quickstart.py`` (same stages, same options) run in a fresh folder (``--work``,
default a temporary one) so nothing is resumed; the last line printed is a JSON object with every
figure. The target: the language model cuts the WER by at least 30% against beam search without it.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import json
import tempfile

from utils.captions_quickstart import build_parser as quickstart_parser
from utils.captions_quickstart import main as quickstart
from utils.runtime.cli import normalise_argv, parse_args

TARGET_CUT = 0.30


def build_parser() -> argparse.ArgumentParser:
    """The quick start's options and ``--work``."""
    parser = quickstart_parser()
    parser.description = __doc__
    parser.add_argument("--work", default=None,
                        help="folder of the data and checkpoints, kept (default: a temporary one, removed)")
    return parser


def main(argv: list[str]) -> int:
    parse_args(build_parser(), argv)  # every option checked (and --help) before any work
    work_option = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    work_option.add_argument("--work", default=None)
    known, rest = work_option.parse_known_args(normalise_argv(work_option, argv))
    with tempfile.TemporaryDirectory(prefix="bench-captions-") as scratch:
        root = Path(known.work or scratch)
        status = quickstart([f"data_path={root / 'data'}", f"save_dir={root / 'checkpoint'}", "progress=false",
                             *rest])
        if status:
            return status
        summary = json.loads((root / "data" / "results.json").read_text())
    beam, lm = summary["results"]["beam"]["wer"], summary["results"]["lm"]["wer"]
    summary["lm_cut"] = round(1 - lm / beam, 3) if beam else None
    summary["target_met"] = summary["lm_cut"] is not None and summary["lm_cut"] >= TARGET_CUT
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
