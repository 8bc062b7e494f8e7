"""Turn captioned videos (talks, lectures, YouTube downloads with their subtitles) into training clips.

    python utils/prepare_captions.py src_path=data/talks tgt_path=data/caption_crops [speaker=speakers.txt]

Every video under ``src_path`` with a subtitle file of the same stem (``talk.mp4`` + ``talk.srt`` or
``talk.vtt``, YouTube's word-timed VTT included) is cut at its cue times into utterance clips
(``utils.text.captions``: cues closer than ``gap`` merged, those shorter than ``min_duration`` or
longer than ``max_duration`` skipped, text normalised to lower-case a-z, space and apostrophe with
numbers spelt out, ``margin`` seconds of the video kept on each side). The mouth of the face seen
most in each cue is cropped at the network's frame rate through the streaming reader
(``UtteranceReader.read_spans``). Output, the layout training reads:

    tgt_path/SPEAKER/STEM_NNN.npz   mouth crops (utils/data/clip_store.py's packed format)
    tgt_path/SPEAKER/STEM_NNN.txt   its transcript: one line, the normalised text
    tgt_path/manifest.jsonl         one record per cue (ok, or why it was skipped or failed) and one
                                    per video (its settings, how many cues and clips)

The speaker is the video's stem, or what a ``speaker=FILE`` mapping says (lines ``STEM SPEAKER``; name
speakers ``sN`` to use main.py's ``speakers=``/``val_speakers=``). Parallel over videos, resumable (a
rerun skips the videos the manifest records as done with the same settings from the same video and
subtitle file, ``utils.data.manifest.file_stamp``: the video's size and time, the subtitles' SHA-256;
any other is read again, its old clips removed), interrupted runs leave no half-written clip. The
speaker folders are created and written to before any video is read. A subtitle file that cannot be
read is named with its line and the run goes on.
Exit status: 0 when every captioned video was read, 1 when some failed, 2 for unusable input or
output folders, 130 when interrupted.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass

from tqdm import tqdm

from utils.data.clip_store import PACKED_SUFFIX, save_packed
from utils.data.manifest import (
    append_results,
    file_stamp,
    load_manifest,
    manifest_path,
    os_reason,
    remove_stale_temporaries,
    write_manifest,
)
from utils.data.sentence_clips import TRANSCRIPT_SUFFIX
from utils.runtime.atomic import NotWritableError, ensure_writable_dir, remove_output, write_text_atomic
from utils.runtime.cli import (
    non_negative_float,
    parse_args,
    parse_size,
    positive_float,
    positive_int,
    str2bool,
)
from utils.text.captions import (
    DEFAULT_GAP,
    DEFAULT_MARGIN,
    DEFAULT_MAX_DURATION,
    DEFAULT_MIN_DURATION,
    SubtitleError,
    find_subtitles,
    plan_utterances,
    read_captions,
)
from utils.video.crop_pool import become_worker, worker_results
from utils.video.mouth_extractor import ExtractionError, MouthExtractor
from utils.video.reader import MODEL_FPS, VIDEO_SUFFIXES, is_video_file
from utils.video.utterances import UtteranceReader

VIDEO_KIND = "video"


@dataclass(frozen=True)
class Settings:
    """What a video's clips depend on: a rerun with other settings makes them again."""

    size: str
    gap: float
    min_duration: float
    max_duration: float
    margin: float = DEFAULT_MARGIN
    fps: float = MODEL_FPS
    upright: bool = True  # crops turned with the head's roll (utils.video.roll)


@dataclass(frozen=True)
class Job:
    video: str  # SPEAKER/STEM: the id of the video's manifest record, and the prefix of its clips
    source: Path
    subtitles: Path | None
    folder: Path  # tgt_path/SPEAKER

    def clip_id(self, index: int) -> str:
        return f"{self.video}_{index:03d}"

    def clip_file(self, index: int) -> str:
        """The clip's file relative to tgt_path (the manifest's ``file``: a moved data set still resumes)."""
        return f"{self.clip_id(index)}{PACKED_SUFFIX}"

    def clip_path(self, index: int) -> Path:
        return self.folder.parent / self.clip_file(index)


def read_speaker_map(path: Path) -> dict[str, str]:
    """``{stem: speaker}`` from lines ``STEM SPEAKER`` (blank lines and ``#`` comments ignored);
    ValueError naming the file and line of anything else."""
    mapping = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2 or "/" in parts[1] or parts[1].startswith("."):
            raise ValueError(f"{path}:{number}: expected 'STEM SPEAKER' (a speaker name without '/'), got {line!r}")
        mapping[parts[0]] = parts[1]
    return mapping


def find_jobs(src: Path, tgt: Path, speakers: dict[str, str] | None) -> list[Job]:
    """Every video under ``src`` with its subtitle file (None when it has none) and its speaker."""
    jobs: dict[str, Job] = {}
    for source in sorted(p for p in src.rglob("*") if is_video_file(p)):
        speaker = source.stem
        if speakers is not None:
            if source.stem not in speakers:
                print(f"warning: {source}: not in the speaker mapping; its stem names its speaker", file=sys.stderr)
            speaker = speakers.get(source.stem, source.stem)
        video = f"{speaker}/{source.stem}"
        if video in jobs:
            print(f"warning: {source} ignored: {jobs[video].source} has the same speaker and stem", file=sys.stderr)
            continue
        jobs[video] = Job(video, source, find_subtitles(source), tgt / speaker)
    return list(jobs.values())


def is_done(job: Job, records: dict[str, dict], settings: Settings, retry_failed: bool) -> bool:
    """The manifest says the video was read with these settings from the same video and subtitle file
    (``input_stamps``: no video is read), and every clip it made is still there."""
    record = records.get(job.video)
    if not record or record.get("settings") != asdict(settings) or record.get("source") != str(job.source):
        return False
    if record.get("subtitles") != (str(job.subtitles) if job.subtitles else None):
        return False
    if record.get("inputs") != input_stamps(job):  # the video replaced, subtitles added, removed or edited since
        return False
    if record["status"] != "ok":
        return not retry_failed
    return all((job.folder.parent / r["file"]).is_file() for r in clip_records(job, records) if r["status"] == "ok")


def input_stamps(job: Job) -> dict[str, dict | None]:
    """The identity of what a video's clips are made from: the video (size and modification time) and
    its subtitle file (size and SHA-256: it is read whole anyway)."""
    return {"video": file_stamp(job.source), "subtitles": file_stamp(job.subtitles, digest=True)}


def clip_records(job: Job, records: dict[str, dict]) -> list[dict]:
    return [r for r in records.values() if r.get("video") == job.video and r["clip"] != job.video]


_extractor: MouthExtractor | None = None
_reader: UtteranceReader | None = None
_settings: Settings | None = None


def _init_worker(size: tuple[int, int], settings: Settings, parent: int | None) -> None:
    global _extractor, _reader, _settings
    become_worker(parent)
    _extractor = MouthExtractor(size=size, upright=settings.upright)
    _reader = UtteranceReader(_extractor, fps=settings.fps, max_seconds=settings.max_duration,
                              min_seconds=settings.min_duration / 2)
    _settings = settings


def process_video(job: Job) -> list[dict]:
    """Cut, crop and write one video's clips; every cue gets a record, the video's own comes last."""
    assert _reader is not None and _settings is not None, "call _init_worker first"
    video = {"clip": job.video, "kind": VIDEO_KIND, "video": job.video, "source": str(job.source),
             "subtitles": str(job.subtitles) if job.subtitles else None, "inputs": input_stamps(job),
             "settings": asdict(_settings),
             "status": "ok", "message": "", "cues": 0, "clips": 0}
    if job.subtitles is None:
        video.update(status="no_subtitles", message=f"{job.source}: no .srt or .vtt file of the same stem")
        return [video]
    try:
        planned = plan_utterances(read_captions(job.subtitles), _settings.gap, _settings.min_duration,
                                  _settings.max_duration, _settings.fps, _settings.margin)
    except SubtitleError as err:
        video.update(status="bad_subtitles", message=str(err))
        return [video]
    records = {u.index: {"clip": job.clip_id(u.index), "video": job.video, "source": str(job.source),
                         "file": job.clip_file(u.index), "start": round(u.start, 3), "end": round(u.end, 3),
                         "caption": u.caption, "text": u.text, "status": u.skip or "ok", "message": u.message,
                         "frames": None} for u in planned}
    wanted = [u for u in planned if u.skip is None]
    video["cues"] = len(planned)
    try:
        for i, result in _reader.read_spans(job.source, [(u.start, u.end) for u in wanted]):
            utterance, record = wanted[i], records[wanted[i].index]
            if isinstance(result, ExtractionError):
                record.update(status=result.reason, message=str(result))
                continue
            path = job.clip_path(utterance.index)
            # The transcript first: a clip file present always has its transcript beside it.
            write_text_atomic(path.with_suffix(TRANSCRIPT_SUFFIX), utterance.text + "\n")
            save_packed(path, result.frames)
            record.update(frames=len(result.frames))
    except ExtractionError as err:
        video.update(status=err.reason, message=str(err))
    except OSError as err:
        video.update(status="write_error", message=f"{job.folder}: cannot write ({os_reason(err)})")
    except Exception as err:  # one bad video must not stop the run
        video.update(status="error", message=f"{job.source}: {type(err).__name__}: {err}")
    if video["status"] != "ok":
        for record in records.values():
            if record["status"] == "ok":
                record.update(status="not_read", message=f"the video failed: {video['message']}")
    for record in records.values():
        if record["status"] != "ok":
            remove_clip(job.folder.parent / record["file"])
    video["clips"] = sum(r["status"] == "ok" for r in records.values())
    return [*records.values(), video]


def remove_clip(path: Path) -> None:
    """A clip and its transcript: an older clip of a cue that now fails must not look current."""
    remove_output(path)
    remove_output(path.with_suffix(TRANSCRIPT_SUFFIX))


def summarise(jobs: list[Job], records: dict[str, dict], processed: int, seconds: float) -> int:
    """Print what the data set now holds; return the number of captioned videos that failed."""
    videos = [records[job.video] for job in jobs if job.video in records]
    cues = [r for job in jobs for r in clip_records(job, records)]
    statuses = Counter(r["status"] for r in cues)
    failed = [v for v in videos if v["status"] not in ("ok", "no_subtitles")]
    uncaptioned = sum(v["status"] == "no_subtitles" for v in videos)
    ok = [r for r in cues if r["status"] == "ok"]
    seconds_of_speech = sum(r["end"] - r["start"] for r in ok)
    rate = f", {processed / seconds:.2f} videos/s" if processed and seconds > 0 else ""
    print(f"processed {processed} video(s) in {seconds:.1f} s{rate}")
    print(f"{len(jobs)} video(s): {len(videos) - len(failed) - uncaptioned} read, {len(failed)} failed, "
          f"{uncaptioned} without subtitles" + (f", {len(jobs) - len(videos)} not processed yet"
                                                if len(videos) < len(jobs) else ""))
    print(f"{len(cues)} cue(s): {len(ok)} clip(s) ({seconds_of_speech / 60:.1f} min of speech)"
          + "".join(f", {n} {status}" for status, n in sorted(statuses.items()) if status != "ok"))
    for video in failed[:20]:
        print(f"  {video['status']}: {video['message']}")
    if failed:
        print("rerun with --retry_failed to try the failed videos again")
    return len(failed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Cut captioned videos into mouth-crop clips with transcripts "
                                                 "(resumable).")
    parser.add_argument("--src_path", required=True,
                        help="folder of videos, each with STEM.srt or STEM.vtt beside it (required, no default)")
    parser.add_argument("--tgt_path", required=True,
                        help="output folder: SPEAKER/STEM_NNN.npz + .txt, and manifest.jsonl (required, no default)")
    parser.add_argument("--speaker", default=None, metavar="FILE",
                        help="speaker mapping: lines 'STEM SPEAKER' (default: a video's stem names its speaker)")
    parser.add_argument("--n_process", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="worker processes, one video each at a time (default: the cores, %(default)s)")
    parser.add_argument("--size", type=parse_size, default=(100, 50),
                        help="crop WIDTHxHEIGHT (default: 100x50, as preprocess_data.py)")
    parser.add_argument("--gap", type=non_negative_float, default=DEFAULT_GAP,
                        help="merge cues less than this many seconds apart (default: %(default)s)")
    parser.add_argument("--min_duration", type=positive_float, default=DEFAULT_MIN_DURATION,
                        help="skip utterances shorter than this, seconds (default: %(default)s)")
    parser.add_argument("--max_duration", type=positive_float, default=DEFAULT_MAX_DURATION,
                        help="skip utterances longer than this, seconds; merging stops before it "
                             "(default: %(default)s, the 75 frames of a GRID clip)")
    parser.add_argument("--margin", type=non_negative_float, default=DEFAULT_MARGIN,
                        help="seconds of video kept before and after each cue, at most half the gap to the "
                             "next cue (default: %(default)s, the cue times)")
    parser.add_argument("--retry_failed", type=str2bool, nargs="?", const=True, default=False,
                        help="read again the videos the manifest records as failed from the same video, "
                             "subtitles and settings (default: false, skip them)")
    parser.add_argument("--upright", type=str2bool, default=True,
                        help="turn each mouth crop with the head's roll, so a tilted head gives an upright crop; "
                             "false: axis-aligned crops (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    src, tgt = Path(args.src_path), Path(args.tgt_path)
    if not src.is_dir():
        print(f"error: {src}: no such folder of videos", file=sys.stderr)
        return 2
    try:
        settings = Settings(f"{args.size[0]}x{args.size[1]}", args.gap, args.min_duration, args.max_duration,
                            args.margin, upright=args.upright)
        plan_utterances([], settings.gap, settings.min_duration, settings.max_duration,
                        margin=settings.margin)  # checks the values
        speakers = read_speaker_map(Path(args.speaker)) if args.speaker else None
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    jobs = find_jobs(src, tgt, speakers)
    if not jobs:
        print(f"error: {src}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})", file=sys.stderr)
        return 2
    try:  # the folders of videos without subtitles get no clips
        for folder in sorted({tgt} | {job.folder for job in jobs if job.subtitles is not None}):
            ensure_writable_dir(folder)
    except NotWritableError as err:
        print(f"error: cannot write the clips: {err}", file=sys.stderr)
        return 2
    try:
        if removed := remove_stale_temporaries({tgt} | {job.folder for job in jobs}):
            print(f"removed {removed} temporary file(s) left by an interrupted run")
        records = load_manifest(tgt)
        write_manifest(tgt, records)  # drops a torn last line before anything is appended
    except OSError as err:
        print(f"error: {tgt}: cannot write the clips and manifest here ({os_reason(err)})", file=sys.stderr)
        return 2
    todo = [job for job in jobs if not is_done(job, records, settings, args.retry_failed)]
    for job in todo:  # clips of an earlier reading with other settings would be mixed with the new ones
        for record in clip_records(job, records):
            remove_clip(tgt / record["file"])
            del records[record["clip"]]
    n_process = min(args.n_process, max(len(todo), 1))
    print(f"{len(jobs)} video(s) under {src}: {len(jobs) - len(todo)} already done or failed before, "
          f"{len(todo)} to read with {n_process} process(es)")
    start = time.perf_counter()
    processed = clips = 0

    def handle(video_records: list[dict], bar: tqdm) -> None:
        nonlocal processed, clips
        video = video_records[-1]
        processed += 1
        clips += video["clips"]
        if video["status"] not in ("ok", "no_subtitles"):
            tqdm.write(f"{video['status']}: {video['message']}")
        bar.set_postfix(clips=clips)
        bar.update()

    interrupted, write_failure = append_results(
        tgt, records, worker_results(todo, n_process, _init_worker, (args.size, settings), process_video),
        lambda: tqdm(total=len(todo), unit="video", desc="captioned videos", dynamic_ncols=True), handle)
    failed = summarise(jobs, records, processed, time.perf_counter() - start)
    if write_failure is not None:
        print(f"error: {manifest_path(tgt)}: cannot write ({os_reason(write_failure)}); the clips written so far "
              "are kept, a rerun redoes the videos it has no record of", file=sys.stderr)
        return 2
    if interrupted:
        print("interrupted: finished videos are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
