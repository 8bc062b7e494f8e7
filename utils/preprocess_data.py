"""Turn a folder of videos (GRID: ``sN/*.mpg``) into mouth-crop clips for training.

    python utils/preprocess_data.py --src_path=data/mp4s --tgt_path=data/datasets --n_process=2

Each clip is cropped by ``utils.video.mouth_extractor`` and written atomically, either packed
(``{tgt}/sN/{clip}.npz``, the default) or as the original example's PNG folders
(``{tgt}/sN/{clip}/mouth_000.png ...``). ``{tgt}/manifest.jsonl`` records every clip's status (``ok`` or a
failure reason), its message and frame count, a ``warning`` for an ok clip whose face is too small to read
well (its crops enlarged more than twice; also listed by the summary), the settings that shaped it (size,
format, layout, framing, and for GRID's layout ``upright``: crops turned with the head's roll, ``utils.video.roll``;
training records both in its checkpoints) and the identity of its inputs (``utils.data.manifest.file_stamp``:
the video's size and modification time); it is appended to after each clip and rewritten atomically at the
start and end, so a killed run leaves a valid manifest. A rerun skips a clip only when its record has the same
settings and inputs and its output is there alone (failed ones unless ``--retry_failed``), so an interrupted
run resumes where it stopped, and a replaced video or another size or format is redone, the new output
replacing the old. Deciding reads no video. Every output folder is created and written to before any video is
read. Exit status: 0 when every clip is ok (also on a rerun that finds everything done), 1 when some failed, 2
when the input or the output folder is unusable (no such folder, no videos, a ``tgt_path`` or speaker folder
that cannot be written), 130 when interrupted.

    python utils/preprocess_data.py layout=lrw src_path=data/lipread_mp4 tgt_path=data/lrw

reads LRW's layout (``WORD/{train,val,test}/WORD_NNNNN.mp4`` with a ``.txt`` beside each) and writes
the word-level recipe's mouth regions (``utils.video.word_crops``: grey 96x96, aligned to a mean
face) as ``{tgt}/WORD/{split}/WORD_NNNNN.npz`` with the clip's ``.txt`` (the word and its duration)
beside it: the tree ``data_loader.WordDataset`` reads. A clip whose ``.txt`` is missing or has no
duration fails with its own status; a word folder without clips is named and the run goes on
(exit status 1).

``--framing=lipnet_pytorch`` crops GRID's layout as LipNet-PyTorch did (``utils.video.framing``: each frame
aligned to its mean face, a 160x80 box around the mouth resized to 128x64), for its networks and for
training on crops framed as its published ones; the manifest records the framing of every clip.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import os
import time
from collections import Counter
from dataclasses import dataclass

from tqdm import tqdm

from utils.data.clip_store import PACKED_SUFFIX, save_packed, save_png_folder
from utils.data.manifest import (  # noqa: F401 (load_manifest: re-exported for callers)
    append_results,
    file_stamp,
    load_manifest,
    manifest_path,
    os_reason,
    remove_stale_temporaries,
    write_manifest,
)
from utils.data.word_clips import INFO_SUFFIX, WORD_FRAMES, WORD_SPLITS, read_duration, write_info
from utils.runtime.atomic import NotWritableError, ensure_writable_dir, remove_output
from utils.runtime.cli import parse_args, parse_size, positive_int, str2bool
from utils.runtime.paths import DATASET_DIR, VIDEO_DIR
from utils.video.crop_pool import become_worker, worker_results
from utils.video.framing import DEFAULT_FRAMING, FRAMING_SIZES, FRAMING_STEPS, FRAMINGS
from utils.video.mouth_extractor import ExtractionError, MouthExtractor
from utils.video.reader import VIDEO_SUFFIXES, is_video_file
from utils.video.roll import UPRIGHT
from utils.video.word_crops import WORD_CROP_SIZE, WordCropper

FORMATS = ("packed", "png")
LAYOUTS = ("grid", "lrw")
GRID_FRAMES = 75
EXPECTED_FRAMES = {"grid": GRID_FRAMES, "lrw": WORD_FRAMES}
# What a record from before a setting existed was made with: today's framing, cut axis-aligned.
SETTING_DEFAULTS = {"framing": DEFAULT_FRAMING, UPRIGHT: False}


@dataclass(frozen=True)
class Job:
    clip: str  # clip id: the source path relative to src_path, without its suffix (``s1/bbaf2n``)
    source: Path
    target: Path

    @property
    def other_format(self) -> Path:
        """Where the clip's output in the other format would be: a clip has one output, so this one goes
        when the clip is made again."""
        if self.target.suffix == PACKED_SUFFIX:
            return self.target.with_suffix("")
        return self.target.with_name(self.target.name + PACKED_SUFFIX)


def find_jobs(src: Path, tgt: Path, fmt: str) -> list[Job]:
    """Every video under ``src`` with where its crops go; hidden files (such as macOS ``._x.mpg``) are
    not videos, and of two videos with one clip id the first wins."""
    jobs: dict[str, Job] = {}
    videos = (p for p in src.rglob("*") if is_video_file(p))
    for source in sorted(videos):
        clip = source.relative_to(src).with_suffix("").as_posix()
        if clip in jobs:
            print(f"warning: {source} ignored: {jobs[clip].source.name} has the same clip id {clip}",
                  file=sys.stderr)
            continue
        target = tgt / (clip + PACKED_SUFFIX if fmt == "packed" else clip)
        jobs[clip] = Job(clip, source, target)
    return list(jobs.values())


def lrw_layout_problems(src: Path, jobs: list[Job]) -> tuple[list[Job], list[str]]:
    """The jobs that follow LRW's layout (``WORD/{train,val,test}/WORD_NNNNN``), and what does not:
    a video elsewhere, a word folder without a single clip (each named, with the reason)."""
    kept, problems = [], []
    for job in jobs:
        parts = job.clip.split("/")
        if len(parts) == 3 and parts[1] in WORD_SPLITS and parts[2].startswith(f"{parts[0]}_"):
            kept.append(job)
        else:
            problems.append(f"{job.source}: not in LRW's layout WORD/{{{','.join(WORD_SPLITS)}}}/WORD_NNNNN (skipped)")
    words = {job.clip.split("/")[0] for job in kept}
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name not in words:
            problems.append(f"{folder}: a word folder with no video clip in {', '.join(WORD_SPLITS)}")
    return kept, problems


def input_stamps(job: Job, layout: str) -> dict[str, dict | None]:
    """The identity of what a clip is made from: its video, and an LRW clip's ``.txt`` (its duration)."""
    stamps = {"video": file_stamp(job.source)}
    if layout == "lrw":
        stamps["txt"] = file_stamp(job.source.with_suffix(INFO_SUFFIX))
    return stamps


def is_done(job: Job, record: dict | None, settings: dict[str, str | bool], retry_failed: bool = False) -> bool:
    """True when the manifest says the clip was made from the same inputs (``input_stamps``: a stat,
    no video is read) with the same ``settings`` (size, format, layout, upright), and, when it was made ok,
    its output is still there and alone (no output of the other format beside it). A clip that failed
    counts as done unless ``retry_failed``."""
    if not record or any(record.get(key, SETTING_DEFAULTS.get(key)) != value for key, value in settings.items()):
        return False
    if record.get("inputs") != input_stamps(job, settings["layout"]):
        return False
    if record["status"] != "ok":
        return not retry_failed
    if settings["layout"] == "lrw":
        return job.target.is_file() and job.target.with_suffix(INFO_SUFFIX).is_file()
    if job.other_format.exists():
        return False
    if settings["format"] == "packed":
        return job.target.is_file()
    return job.target.is_dir() and len(list(job.target.glob("*.png"))) == record.get("frames")


_extractor: MouthExtractor | WordCropper | None = None
_settings: dict[str, str | bool] = {}


def _init_worker(size: tuple[int, int], fmt: str, layout: str, framing: str, upright: bool,
                 parent: int | None) -> None:
    """Give this process its extractor (dlib's models load once per process, or come with the fork):
    GRID's mouth crops in ``framing``, or the word-level recipe's aligned mouth regions for ``layout`` lrw.

    A pool worker (``parent`` is its parent's pid) leaves Ctrl-C to the parent, which keeps the
    manifest consistent, and dies with it."""
    global _extractor, _settings
    become_worker(parent)
    _extractor = (WordCropper(size=size[0]) if layout == "lrw" else
                  MouthExtractor(size=size, step=FRAMING_STEPS[framing], framing=framing, upright=upright))
    _settings = clip_settings(size, fmt, layout, framing, upright)


def clip_settings(size: tuple[int, int], fmt: str, layout: str, framing: str = DEFAULT_FRAMING,
                  upright: bool = True) -> dict[str, str | bool]:
    """The settings that shape a clip's output, as its manifest record holds them (``upright`` in GRID's
    layout only: the word-level recipe aligns its regions to a mean face anyway)."""
    settings: dict[str, str | bool] = {"size": f"{size[0]}x{size[1]}", "format": fmt, "layout": layout,
                                       "framing": framing}
    if layout != "lrw":
        settings[UPRIGHT] = upright
    return settings


def _write_word(job: Job, record: dict) -> None:
    """One LRW clip: its duration (from its ``.txt``), aligned grey mouth regions, then the ``.txt``
    beside them (written last: both present and the manifest's ``ok`` mark the clip done)."""
    assert isinstance(_extractor, WordCropper)
    info = job.source.with_suffix(INFO_SUFFIX)
    try:
        duration = read_duration(info)
    except ValueError as err:
        record.update(status="missing_txt" if not info.is_file() else "bad_txt", message=str(err))
        return
    frames, shortfall = _extractor.crop_video(job.source)
    record.update(frames=len(frames), duration=duration)
    if shortfall is not None:  # a clip cut short would be labelled with a word it may not hold
        record.update(status="truncated", message=str(shortfall))
        return
    save_packed(job.target, frames)
    write_info(job.target.with_suffix(INFO_SUFFIX), job.clip.split("/")[0], duration)


def process_clip(job: Job) -> dict:
    """Crop and write one clip; every failure becomes a manifest record instead of an exception.

    The inputs are stamped before they are read (a video replaced meanwhile is redone by the next
    run), and the clip's output in the other format is removed first: a clip never has two."""
    assert _extractor is not None, "call _init_worker first"
    record = {"clip": job.clip, "source": str(job.source), **_settings,
              "inputs": input_stamps(job, _settings["layout"]),
              "status": "ok", "message": "", "warning": "", "frames": None, "examined": None, "missed": None}
    try:
        if isinstance(_extractor, WordCropper):
            record.update(duration=None)
            _write_word(job, record)
            return _finish(job, record)
        remove_output(job.other_format)
        mouth = _extractor.extract(job.source)
        record.update(frames=len(mouth.frames), examined=len(mouth.examined), missed=mouth.missed)
        if mouth.small_face is not None:  # kept, but named: its crops are enlarged past what reads well
            record["warning"] = f"{job.source}: 0.00-{len(mouth.frames) / mouth.fps:.2f} s: {mouth.small_face}"
        if mouth.shortfall is not None:  # crops of part of a clip would be labelled with its whole sentence
            record.update(status="truncated", message=str(mouth.shortfall))
            return _finish(job, record)
        if _settings["format"] == "packed":
            save_packed(job.target, mouth.frames)
        else:
            save_png_folder(job.target, mouth.frames)
    except ExtractionError as err:
        record.update(status=err.reason, message=str(err))
    except OSError as err:
        record.update(status="write_error", message=f"{job.target}: cannot write ({err})")
    except Exception as err:  # one bad clip must not stop a 34,000-clip run
        record.update(status="error", message=f"{job.source}: {type(err).__name__}: {err}")
    return _finish(job, record)


def _finish(job: Job, record: dict) -> dict:
    """The record, after removing the outputs of a clip that failed: an older crop (and an LRW clip's
    ``.txt``) of a clip that now fails must not look current."""
    if record["status"] != "ok":
        remove_output(job.target)
        if record.get("layout") == "lrw":
            job.target.with_suffix(INFO_SUFFIX).unlink(missing_ok=True)
    return record


def summarise(jobs: list[Job], records: dict[str, dict], processed: int, seconds: float,
              expected_frames: int = GRID_FRAMES) -> int:
    """Print what the dataset now holds; return the number of clips that are not ok."""
    done = [records[job.clip] for job in jobs if job.clip in records]
    statuses = Counter(record["status"] for record in done)
    failures = [record for record in done if record["status"] != "ok"]
    odd = [record for record in done if record["status"] == "ok" and record["frames"] != expected_frames]
    rate = f", {processed / seconds:.2f} clips/s" if processed and seconds > 0 else ""
    print(f"processed {processed} clip(s) in {seconds:.1f} s{rate}")
    print(f"{len(jobs)} clip(s): {statuses.get('ok', 0)} ok, {len(failures)} failed"
          + "".join(f", {n} {status}" for status, n in sorted(statuses.items()) if status != "ok")
          + (f", {len(jobs) - len(done)} not processed yet" if len(done) < len(jobs) else ""))
    warned = [record for record in done if record["status"] == "ok" and record.get("warning")]
    for record in warned[:20]:
        print(f"  warning: {record['warning']}")
    if len(warned) > 20:
        print(f"  ... and {len(warned) - 20} more warnings in the manifest")
    if odd:
        listed = ", ".join(f"{record['clip']} ({record['frames']})" for record in odd[:10])
        print(f"{len(odd)} ok clip(s) with other than {expected_frames} frames (kept): {listed}"
              + (" ..." if len(odd) > 10 else ""))
    for record in failures[:20]:
        print(f"  {record['status']}: {record['message']}")
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more in the manifest")
    if failures:
        print("rerun with --retry_failed to try the failed clips again")
    return len(failures)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Crop the mouth from every video under src_path into tgt_path (resumable).")
    parser.add_argument("--src_path", default=str(VIDEO_DIR),
                        help="folder of videos, e.g. sN/*.mpg for GRID (default: %(default)s)")
    parser.add_argument("--tgt_path", default=str(DATASET_DIR),
                        help="output folder; also holds manifest.jsonl (default: %(default)s)")
    parser.add_argument("--n_process", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="worker processes, balanced over clips; they share dlib's models, loaded once "
                             "(default: the cores, %(default)s)")
    parser.add_argument("--layout", choices=LAYOUTS, default="grid",
                        help="grid: any folder of videos, GRID's colour mouth crops; lrw: LRW's "
                             "WORD/{train,val,test}/WORD_NNNNN.mp4 + .txt, the word-level recipe's grey mouth "
                             "regions aligned to a mean face, the .txt copied beside (default: %(default)s)")
    parser.add_argument("--framing", choices=FRAMINGS, default=DEFAULT_FRAMING,
                        help="where the crop is cut, grid layout only: lipnet_gluon, the mouth tracked over the "
                             "clip at one scale (the original MXNet example's); lipnet_pytorch, each frame aligned to "
                             "LipNet-PyTorch's mean face, a 160x80 box around the mouth resized (its networks' "
                             "crops; see docs/data.md) (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="crop WIDTHxHEIGHT (default: 100x50, the original example's; lipnet_pytorch framing: "
                             f"128x64, its networks'; lrw: {WORD_CROP_SIZE}x{WORD_CROP_SIZE}, square only)")
    parser.add_argument("--format", choices=FORMATS, default="packed",
                        help="packed: one .npz per clip; png: the original example's folder of "
                             "mouth_NNN.png per clip, grid layout only (default: %(default)s)")
    parser.add_argument("--retry_failed", type=str2bool, nargs="?", const=True, default=False,
                        help="process again the clips the manifest records as failed from the same video "
                             "and settings (default: false, skip them)")
    parser.add_argument("--upright", type=str2bool, default=True,
                        help="turn each mouth crop with the head's roll, so a tilted head gives an upright crop; "
                             "false: axis-aligned crops, as the original example cut them; grid layout only "
                             "(default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    lrw = args.layout == "lrw"
    args.size = args.size or ((WORD_CROP_SIZE, WORD_CROP_SIZE) if lrw else FRAMING_SIZES[args.framing])
    if lrw and (args.format != "packed" or args.size[0] != args.size[1] or args.framing != DEFAULT_FRAMING):
        print("error: layout=lrw writes packed clips of square mouth regions in its own framing (format=packed, "
              "size=NxN, no --framing)", file=sys.stderr)
        return 2
    src, tgt = Path(args.src_path), Path(args.tgt_path)
    if not src.is_dir():
        print(f"error: {src}: no such folder of videos", file=sys.stderr)
        return 2
    jobs = find_jobs(src, tgt, args.format)
    layout_problems: list[str] = []
    if lrw:
        jobs, layout_problems = lrw_layout_problems(src, jobs)
        for problem in layout_problems:
            print(f"warning: {problem}", file=sys.stderr)
    if not jobs:
        print(f"error: {src}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})"
              + (" in LRW's layout" if lrw else ""), file=sys.stderr)
        return 2
    try:
        for folder in sorted({tgt} | {job.target.parent for job in jobs}):
            ensure_writable_dir(folder)
    except NotWritableError as err:
        print(f"error: cannot write the crops: {err}", file=sys.stderr)
        return 2
    try:
        if removed := remove_stale_temporaries({tgt} | {job.target.parent for job in jobs}):
            print(f"removed {removed} temporary file(s) left by an interrupted run")
        records = load_manifest(tgt)
        write_manifest(tgt, records)  # drops a torn last line before anything is appended
    except OSError as err:
        print(f"error: {tgt}: cannot write the crops and manifest here ({os_reason(err)})", file=sys.stderr)
        return 2
    settings = clip_settings(args.size, args.format, args.layout, args.framing, args.upright)
    todo = [job for job in jobs if not is_done(job, records.get(job.clip), settings, args.retry_failed)]
    n_process = min(args.n_process, max(len(todo), 1))
    print(f"{len(jobs)} clip(s) under {src}: {len(jobs) - len(todo)} already done or failed before, "
          f"{len(todo)} to process with {n_process} process(es)")
    start = time.perf_counter()
    processed = failed_now = 0

    def handle(batch: list[dict], bar: tqdm) -> None:
        nonlocal processed, failed_now
        (record,) = batch
        processed += 1
        if record["status"] != "ok":
            failed_now += 1
            tqdm.write(f"{record['status']}: {record['message']}")
            bar.set_postfix(failed=failed_now)
        bar.update()

    interrupted, write_failure = append_results(
        tgt, records,
        worker_results(todo, n_process, _init_worker, (args.size, args.format, args.layout, args.framing, args.upright),
                       process_clip),
        lambda: tqdm(total=len(todo), unit="clip", desc="mouth crops", dynamic_ncols=True), handle)
    failed = summarise(jobs, records, processed, time.perf_counter() - start, EXPECTED_FRAMES[args.layout])
    if layout_problems:
        print(f"{len(layout_problems)} problem(s) with LRW's layout (see the warnings above): "
              f"{layout_problems[0]}" + (" ..." if len(layout_problems) > 1 else ""))
    if write_failure is not None:
        print(f"error: {manifest_path(tgt)}: cannot write ({os_reason(write_failure)}); the clips written so far "
              "are kept, a rerun redoes those it has no record of", file=sys.stderr)
        return 2
    if interrupted:
        print("interrupted: finished clips are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if failed or layout_problems else 0


if __name__ == "__main__":
    sys.exit(main())
