"""Estimate align files (when each word was said) for videos that have a sentence but no align file.

    python utils/estimate_aligns.py --src_path=data/mp4s --tgt_path=data/aligns --n_process=2

For every video under ``src_path`` (GRID: ``sN/CLIP.mpg``), its sentence comes from a transcript beside it
(``CLIP.txt``, one line) or else from its GRID name, and its words are placed on the span where its mouth
moves at a speaking pace, in proportion to their characters (``utils.video.speech_times``; landmarks on
every frame, frames at 25 fps, an align file's unit). The result is written atomically as
``tgt_path/sN/CLIP.align``, the layout ``align_path`` reads, so ``main.py aligned_ctc=true`` can train on
where words are in clips that came without align files. A video whose align file is already there is
left alone: real align files copied into ``tgt_path`` are kept, and a rerun resumes.

Estimated times are rough (see ``speech_times``); prefer a corpus's own align files where it has them.
Exit status: 0 when every video got an align file, 1 when some failed (each named with its reason on
stderr; the others are written), 2 when ``src_path`` has no videos or ``tgt_path`` cannot be written.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import os

from tqdm import tqdm

from utils.data.sentence_clips import TRANSCRIPT_SUFFIX, read_transcript
from utils.runtime.atomic import write_text_atomic
from utils.runtime.cli import parse_args, positive_int
from utils.text.grid_text import format_align, sentence_from_clip_name
from utils.video.crop_pool import become_worker, worker_results
from utils.video.mouth_extractor import MouthExtractor, read_video
from utils.video.reader import is_video_file
from utils.video.speech_times import speech_span, spread_words

_extractor: MouthExtractor | None = None


def sentence_of(video: Path) -> str:
    """What ``video`` says: its transcript beside it, else the sentence its GRID name spells (ValueError
    naming the file when neither gives one)."""
    transcript = video.with_suffix(TRANSCRIPT_SUFFIX)
    if transcript.is_file():
        return read_transcript(transcript)
    try:
        return sentence_from_clip_name(video.stem)
    except ValueError as err:
        raise ValueError(f"{video}: no {transcript.name} beside it and {err}") from None


def estimate_align(video: Path, extractor: MouthExtractor) -> str:
    """The align file text of ``video``; ValueError (or ExtractionError) naming it when its sentence or
    its speech cannot be found."""
    words = sentence_of(video).split()
    frames, _ = read_video(video)
    track = extractor.track(frames, video)
    span = speech_span({int(t): p for t, p in zip(track.good, track.points)}, len(frames))
    if span is None:
        raise ValueError(f"{video}: the mouth never moves at a speaking pace")
    return format_align(spread_words(words, *span), len(frames))


def _init_worker(parent: int | None) -> None:
    global _extractor
    become_worker(parent)
    _extractor = MouthExtractor(step=1)


def _estimate(job: tuple[Path, Path]) -> str | None:
    """None once the video's align file is written, else why not (naming the file)."""
    video, target = job
    assert _extractor is not None, "call _init_worker first"
    try:
        write_text_atomic(target, estimate_align(video, _extractor))
    except OSError as err:
        return f"{target}: cannot write ({err})"
    except Exception as err:  # one bad video must not stop the others
        return str(err)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write estimated align files for videos without one (resumable).")
    parser.add_argument("--src_path", required=True, help="folder of videos, e.g. sN/*.mpg")
    parser.add_argument("--tgt_path", required=True,
                        help="folder of align files (sN/CLIP.align); those already there are kept")
    parser.add_argument("--n_process", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="worker processes (default: the cores, %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    src, tgt = Path(args.src_path), Path(args.tgt_path)
    videos = sorted(p for p in src.rglob("*") if is_video_file(p)) if src.is_dir() else []
    if not videos:
        print(f"error: {src}: no videos", file=sys.stderr)
        return 2
    jobs = [(video, tgt / video.relative_to(src).with_suffix(".align")) for video in videos]
    todo = [job for job in jobs if not job[1].exists()]
    try:
        for folder in {target.parent for _, target in todo}:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: {tgt}: cannot write align files here ({err})", file=sys.stderr)
        return 2
    n_process = min(args.n_process, max(len(todo), 1))
    print(f"{len(jobs)} video(s) under {src}: {len(jobs) - len(todo)} with an align file already, "
          f"{len(todo)} to estimate with {n_process} process(es)")
    failed = 0
    with worker_results(todo, n_process, _init_worker, (), _estimate) as results, \
            tqdm(total=len(todo), unit="video", desc="align files", dynamic_ncols=True) as bar:
        for problem in results:
            if problem is not None:
                failed += 1
                tqdm.write(f"failed: {problem}", file=sys.stderr)
            bar.update()
    print(f"{len(todo) - failed} align file(s) written to {tgt}, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
