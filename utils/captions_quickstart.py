"""Training on captioned videos, end to end, with nothing to download: synthetic talks with subtitles ->
clips -> a small open-vocabulary LipNet -> a word language model -> subtitles for an unseen speaker's talk.

    python utils/captions_quickstart.py

1. ``utils/make_synthetic.py --talks`` renders talks of drawn speakers saying English sentences, each
   with its ``.srt`` (training speakers, one validation speaker, one test speaker never trained on).
2. ``utils/prepare_captions.py`` cuts them at the cues into mouth-crop clips with transcripts.
3. ``utils/build_lm.py`` builds a word language model from the training transcripts.
4. ``main.py alphabet=captions`` trains a narrow LipNet on the training speakers' clips.
5. ``infer.py video=... subtitles=...`` reads the test speaker's talk with the last checkpoint, with
   beam search and with the language model; the subtitles it writes are scored against the talk's
   own (WER and CER), and the figures go to DATA_PATH/results.json.
Talks and clips already made are kept and training resumes from its last checkpoint, so a rerun
only does what is missing. Every option can be overridden (``--key=value`` or ``key=value``).
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import json
import subprocess
import time

from utils.runtime.atomic import write_text_atomic
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
from utils.scoring.sentence_metrics import cer, wer
from utils.text.captions import normalise_text, read_captions

DECODERS = ("beam", "lm")
# Seconds infer.py keeps around each utterance's speech (--margin): the training clips, cut at the talks'
# cues, begin and end 0.12 s from speech (synthetic/talks.CUE_MARGIN), and the speech found from mouth
# motion begins and ends within a few frames of it on most sentences (tests/synthetic/test_synthetic_talks.py).
MARGIN = 0.15
# Seconds infer.py may then move each edge inward (--edge_search): this model reads by its clips' edges, so
# a few frames either way change what it reads. Over six unseen speakers' talks the search took beam
# search's WER from 0.88 to 0.47 and the language model's from 0.56 to 0.25 (docs/captions.md). With the earlier
# eight-speaker model, searching 0.8 s from margin=0.4 read about as well as 0.4 s from margin=0.15 (test
# talk: 0.64 and 0.34 against 0.65 and 0.37) with twice the readings.
EDGE_SEARCH = 0.4
LM_FILE = "words.arpa"  # in DATA_PATH


def size_text(value: str) -> str:
    """argparse type: a WIDTHxHEIGHT checked as ``parse_size`` checks it, kept as text for prepare_captions.py."""
    return "{}x{}".format(*parse_size(value))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", default=str(DATA_DIR / "captions_quickstart"),
                        help="talks/, test_talks/, clips/, lm and results go here (default: %(default)s)")
    parser.add_argument("--save_dir", default=str(CHECKPOINT_DIR / "captions_quickstart"),
                        help="checkpoints (default: %(default)s)")
    add_options(parser, test_speakers=[14])
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seeds the synthetic talks and training (default: %(default)s)")
    parser.add_argument("--progress", type=str2bool, default=True, help="show progress bars (default: true)")
    return parser


def add_options(parser: argparse.ArgumentParser, test_speakers: list[int]) -> None:
    """The options of what is made, trained and read (not where, nor with which seed): bench/captions.py
    takes them too and passes them on (``passed_on``), with ``test_speakers`` as its default test speakers."""
    # Twelve training speakers, not eight: with eight the model read its validation speaker's clips at CER 0.38
    # and the language model cut six unseen speakers' WER by 20%; with twelve, 0.09 and 48% (one seed).
    parser.add_argument("--train_speakers", type=parse_speakers, default=list(range(1, 13)),
                        help="speakers trained on (default: 1-12)")
    parser.add_argument("--val_speakers", type=parse_speakers, default=[13],
                        help="speakers validated on, to pick the best checkpoint (default: 13)")
    parser.add_argument("--test_speakers", type=parse_speakers, default=test_speakers,
                        help="speakers whose talks are read and scored, never seen in training "
                             f"(default: {_speakers(test_speakers)})")
    parser.add_argument("--sentences", type=positive_int, default=40, help="sentences per talk (default: %(default)s)")
    parser.add_argument("--test_sentences", type=positive_int, default=20,
                        help="sentences per test talk (default: %(default)s)")
    parser.add_argument("--text", default=None,
                        help="say this text file's sentences instead of the built-in grammar's (default: none, the "
                             "grammar's)")
    parser.add_argument("--size", type=size_text, default="48x24",
                        help="mouth crop WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument("--channels", type=channel_list, default="16,32,48",
                        help="LipNet conv channels (default: %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=128,
                        help="GRU units per direction (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=30, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch_size", type=positive_int, default=8,
                        help="training clips per step (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=3e-3,
                        help="peak learning rate of the cosine schedule (default: %(default)s)")
    parser.add_argument("--lm_order", type=positive_int, default=3, help="word n-gram order (default: %(default)s)")
    parser.add_argument("--n_process", type=positive_int, default=2,
                        help="worker processes for the clips (default: %(default)s)")
    parser.add_argument("--overwrite", type=str2bool, nargs="?", const=True, default=False,
                        help="delete the talks DATA_PATH holds and draw them again, and start training afresh; "
                             "without it talks made with another seed, text or number of sentences are refused "
                             "(default: false)")


def passed_on(args: argparse.Namespace) -> list[str]:
    """The ``add_options`` settings of ``args`` as this script's command-line words."""
    options = argparse.ArgumentParser(add_help=False)
    add_options(options, test_speakers=[])
    words = []
    for action in options._actions:
        value = getattr(args, action.dest)
        if value is not None:
            words.append(f"--{action.dest}={_speakers(value) if isinstance(value, list) else value}")
    return words


def run_script(script: str, *args: str) -> int:
    """Runs a script of the project in this Python; returns its exit status."""
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], check=False).returncode


def _speakers(numbers: list[int]) -> str:
    return ",".join(str(n) for n in numbers)


def score(references: list[Path], hypotheses: Path) -> dict:
    """WER and CER of the subtitles infer.py wrote in ``hypotheses`` against the talks' own ``.srt`` files
    ``references`` (each talk's cues joined into one text: utterances need not match cues), over all the
    talks and each talk's WER."""
    refs, hyps = [], []
    for reference in references:
        refs.append(" ".join(normalise_text(c.text)[0] for c in read_captions(reference)).strip())
        written = hypotheses / reference.name
        hyps.append(" ".join(c.text for c in read_captions(written)).strip() if written.is_file() else "")
    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "talks": len(refs),
            "words": sum(len(r.split()) for r in refs),
            "talk_wer": {path.stem: round(wer([r], [h]), 3) for path, r, h in zip(references, refs, hyps)}}


def read_args(data: Path, save: Path, decoder: str, video: Path, progress: bool) -> list[str]:
    """infer.py's arguments that read ``video`` (a talk or a folder of them) with the last checkpoint in ``save``
    and ``decoder``, writing subtitles to ``reading_folder(data, decoder)``.

    The last checkpoint, at the end of the cosine schedule: in a short run the validation WER stays at 1
    for many epochs, so "best" (the first lowest WER) can be an early, blank one. infer.py cuts a talk in
    the middle of its pauses (max_utterance=4.5: a sentence and up to a second of pause on each side),
    then keeps only MARGIN s around the speech, as the training clips, cut at the cues, hold, and searches
    EDGE_SEARCH s inside for the edges it reads best from."""
    lm_args = [f"lm_path={data / LM_FILE}"] if decoder == "lm" else []
    return [f"model_path={save / 'last'}", f"video={video}", f"subtitles={reading_folder(data, decoder)}",
            f"decoder={decoder}", *lm_args, "num_gpus=0", f"progress={progress}", "max_utterance=4.5",
            f"margin={MARGIN}", f"edge_search={EDGE_SEARCH}"]


def reading_folder(data: Path, decoder: str) -> Path:
    """Where the subtitles read with ``decoder`` go."""
    return data / f"read_{decoder}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    groups = [set(args.train_speakers), set(args.val_speakers), set(args.test_speakers)]
    if any(a & b for i, a in enumerate(groups) for b in groups[i + 1:]):
        print("train, validation and test speakers must be different", file=sys.stderr)
        return 2
    data, save = Path(args.data_path), Path(args.save_dir)
    talks, test_talks, clips = data / "talks", data / "test_talks", data / "clips"
    text = [f"text={args.text}"] if args.text else []
    times: dict[str, float] = {}
    common = [f"seed={args.seed}"]
    talk_args = [*text, *common, f"overwrite={args.overwrite}"]

    def stage(name: str, script: str, *stage_args: str) -> None:
        started = time.perf_counter()
        print(f"[{len(times) + 1}/7] {name}", file=sys.stderr)
        status = run_script(script, *stage_args)
        times[name] = time.perf_counter() - started
        if status not in (0, 1) or (status == 1 and script != "utils/prepare_captions.py"):
            raise SystemExit(f"{script} failed with exit status {status}")

    speakers = _speakers(args.train_speakers + args.val_speakers)
    stage("talks", "utils/make_synthetic.py", "talks=1", f"speakers={speakers}",
          f"sentences_per_talk={args.sentences}", f"tgt_path={talks}", *talk_args)
    stage("test talks", "utils/make_synthetic.py", "talks=1", f"speakers={_speakers(args.test_speakers)}",
          f"sentences_per_talk={args.test_sentences}", f"tgt_path={test_talks}", *talk_args)
    stage("clips", "utils/prepare_captions.py", f"src_path={talks}", f"tgt_path={clips}",
          f"speaker={talks / 'speakers.txt'}", f"size={args.size}", f"n_process={args.n_process}")
    lm = data / LM_FILE
    no_aligns = f"align_path={data / 'no_aligns'}"  # clips are labelled by their transcripts
    stage("language model", "utils/build_lm.py", f"image_path={clips}", no_aligns, f"out={lm}",
          f"order={args.lm_order}", f"speakers={speakers}", f"val_speakers={_speakers(args.val_speakers)}",
          f"progress={args.progress}")
    # overwrite=true: new talks make a new run (main.py removes the old one's outputs), never a resume of it.
    resume = [f"model_path={save / 'last'}"] if (save / "last" / "meta.json").is_file() and not args.overwrite \
        else [f"overwrite={args.overwrite}"]
    stage("training", "main.py", f"image_path={clips}", no_aligns, "alphabet=captions",
          f"speakers={speakers}", f"val_speakers={_speakers(args.val_speakers)}",
          f"save_dir={save}", f"channels={args.channels}", f"hidden={args.hidden}", f"epochs={args.epochs}",
          f"batch_size={args.batch_size}", f"lr={args.lr}", "frames=any", "norm=batch", "dr_rate=0.1", "flip_prob=0",
          "jitter_prob=0", "lr_schedule=cosine", "val_interval=5", "show_examples=2", "num_gpus=0",
          f"progress={args.progress}", *resume, *common)
    results = {}
    for decoder in DECODERS:
        stage(f"reading ({decoder})", "infer.py", *read_args(data, save, decoder, test_talks, args.progress))
        results[decoder] = score(sorted(test_talks.glob("*.srt")), reading_folder(data, decoder)) \
            | {"seconds": round(times[f"reading ({decoder})"], 1)}
    summary = {"results": results, "seconds": {k: round(v, 1) for k, v in times.items()}}
    write_text_atomic(data / "results.json", json.dumps(summary, indent=2) + "\n")
    for decoder, result in results.items():
        print(f"{decoder:>4}: WER {result['wer']:.3f}, CER {result['cer']:.3f} on {result['words']} words of "
              f"speaker(s) {_speakers(args.test_speakers)}, never trained on")
    if results["beam"]["wer"] > 0:
        print(f"the language model cuts the WER by {1 - results['lm']['wer'] / results['beam']['wer']:.0%}")
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f"; {sum(times.values()) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
