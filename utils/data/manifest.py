"""The manifest of a resumable run over many files: ``{tgt}/manifest.jsonl``, one JSON record per item.

Records are appended as items finish (a killed run loses at most a torn last line, which is ignored)
and the file is rewritten atomically, one record per item sorted by its id, at the start and end of
a run. ``utils/preprocess_data.py`` (one record per clip) and ``utils/prepare_captions.py`` (one per
cue and one per video) keep theirs with it.

A record says what its output was made from (``file_stamp`` of each input) and with which settings;
a rerun skips an item only when both are still the same, so a replaced video or a changed setting is
redone, and deciding it reads no video.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from utils.runtime.atomic import remove_output, write_text_atomic

MANIFEST_NAME = "manifest.jsonl"


def manifest_path(tgt: Path) -> Path:
    return tgt / MANIFEST_NAME


def load_manifest(tgt: str | Path) -> dict[str, dict]:
    """The last record of each clip in ``{tgt}/manifest.jsonl`` (a torn line from a killed run is ignored)."""
    path = manifest_path(Path(tgt))
    records: dict[str, dict] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "clip" in record and "status" in record:
                    records[record["clip"]] = record
    return records


def write_manifest(tgt: Path, records: dict[str, dict]) -> None:
    """Rewrite the manifest, one record per clip sorted by clip id, atomically."""
    path = manifest_path(tgt)
    write_text_atomic(path, "".join(json.dumps(records[clip], sort_keys=True) + "\n" for clip in sorted(records)))


def file_stamp(path: Path | None, digest: bool = False) -> dict | None:
    """What says ``path`` still holds the content an output was made from: its size and modification
    time (a stat, so a rerun over thousands of videos stays cheap), or with ``digest`` (small files that
    are read whole anyway, such as subtitles) its size and SHA-256, so touching it redoes nothing and an
    edit that keeps its size and time is still seen. None for no file or one that cannot be read."""
    if path is None:
        return None
    try:
        if digest:
            data = path.read_bytes()
            return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        stat = path.stat()
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def remove_stale_temporaries(folders: Iterable[Path]) -> int:
    """Delete the temporary files and folders (``.*.tmp``) a killed run left in ``folders``."""
    removed = 0
    for folder in set(folders):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
            remove_output(tmp)
            removed += 1
    return removed


def os_reason(err: OSError) -> str:
    """``Permission denied: 'data/datasets/x'``: the OS's words and the file, without the errno."""
    return f"{err.strerror or err}" + (f": {str(err.filename)!r}" if err.filename else "")


def append_results(tgt: Path, records: dict[str, dict], results: AbstractContextManager[Iterable[Any]],
                   progress: Callable[[], AbstractContextManager[Any]],
                   handle: Callable[[list[dict], Any], None]) -> tuple[bool, OSError | None]:
    """Append the records of ``results`` (a record or a list of records per finished item) to the manifest
    as they come, keep them in ``records``, and give each item's records and the progress bar to
    ``handle``; then rewrite the manifest. Returns (interrupted by Ctrl-C, the write failure if any):
    a full disk or a folder made read-only stops the run, and what was written stays.

    ``results`` is entered before ``progress()`` is made, so a pool forks before any progress thread runs.
    """
    interrupted, failure = False, None
    try:
        with open(manifest_path(tgt), "a", encoding="utf-8") as manifest, results as items, progress() as bar:
            for item in items:
                batch = [item] if isinstance(item, dict) else item
                for record in batch:
                    manifest.write(json.dumps(record, sort_keys=True) + "\n")
                    records[record["clip"]] = record
                manifest.flush()
                handle(batch, bar)
    except KeyboardInterrupt:
        interrupted = True
    except OSError as err:
        failure = err
    try:
        write_manifest(tgt, records)
    except OSError as err:
        failure = failure or err
    return interrupted, failure
