"""The parameters a synthetic set was made with, kept in its folder: one folder holds one set.

Why: the generators resume by skipping files that exist, so without a record a rerun with another
seed or frame size added its clips beside the old ones (a quick start at 64x32 kept training on its
48x24 clips, one at seed 1 trained on both seeds' clips), and a word set rerun with other splits left
speakers in both ``train/`` and ``val/``. Now each generator writes ``RECORD_NAME`` in its target
folder before its first clip and refuses a request the record contradicts, in one line saying what
differs; ``overwrite`` deletes the old set first.

A request that only adds to a set is allowed where the clips already made stay exactly as a fresh
run would draw them: every clip's random stream depends on its own ``(seed, speaker, index, ...)``
only, so more speakers, more clips per speaker (a prefix of a fixed order), more words or more talks
keep the existing files valid (tests compare grown sets with sets drawn at once, byte for byte). A
request for less than the folder holds is refused too, as training would read the extra clips.

A folder holding a generator's files but no record (made before records were kept) is refused
unless ``overwrite``. ``overwrite`` deletes only files a generator writes, by their names, and
refuses to run where other files share their folders (``--tgt_path`` pointing at real GRID data
must not lose it).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from utils.runtime.atomic import write_text_atomic

RECORD_NAME = ".synthetic.json"
OVERWRITE_HINT = "rerun with --overwrite to delete it and start clean"


class SetMismatch(ValueError):
    """A request that would mix a new synthetic set into a folder holding another one."""


@dataclass(frozen=True)
class Layout:
    """Where a generator's files lie in its target folder and how they are named.

    ``places`` are the folders (relative to the target) the set's files are in, searched to
    ``depth`` levels; ``owned`` matches a file's path relative to the target when a generator
    wrote it (temporary leftovers of interrupted writes, ``.NAME...tmp...``, count as written).
    """

    name: str
    places: tuple[str, ...]
    depth: int
    owned: re.Pattern[str]


GRID = Layout("grid", ("datasets", "align"), 2,
              re.compile(r"(datasets/s\d+/[a-z0-9]{6}\.npz|align/s\d+/[a-z0-9]{6}\.align)"))
WORDS = Layout("lrw", (".",), 3, re.compile(r"([A-Z]+)/(train|val|test)/\1_\d{5}\.(npz|txt)"))
TALKS = Layout("talks", (".",), 1, re.compile(r"s\d+_talk\d+\.(mp4|srt)|speakers\.txt"))
LAYOUTS = {layout.name: layout for layout in (GRID, WORDS, TALKS)}


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and ".tmp" in path.name


def _files(folder: Path, layout: Layout) -> Iterator[tuple[Path, bool]]:
    """Every file in the layout's places, and whether a generator writes it (the record itself excluded)."""
    for place in layout.places:
        root = folder / place
        if not root.is_dir():
            continue
        pending = [(root, 0)]
        while pending:
            directory, level = pending.pop()
            for entry in sorted(directory.iterdir()):
                if entry.is_dir() and not entry.is_symlink():
                    if level + 1 < layout.depth:
                        pending.append((entry, level + 1))
                    else:
                        yield entry, False  # deeper than the generator writes: not its own
                    continue
                relative = entry.relative_to(folder).as_posix()
                if relative == RECORD_NAME:
                    continue
                yield entry, bool(layout.owned.fullmatch(relative)) or _is_temporary(entry)


def holds_set(folder: Path, layout: Layout) -> bool:
    """Whether ``folder`` holds any file the generator of ``layout`` writes (stops at the first)."""
    return any(owned and not _is_temporary(path) for path, owned in _files(folder, layout))


def clear(folder: Path, layout: Layout) -> None:
    """Delete the set in ``folder`` (its files, the folders they leave empty, its record); nothing
    at all where another file lies among them, which is named."""
    files = list(_files(folder, layout))
    foreign = next((path for path, owned in files if not owned), None)
    if foreign is not None:
        raise SetMismatch(f"--overwrite deletes only what the synthetic generators write, and {foreign} is not "
                          f"one of their files: move it aside, or choose another folder")
    parents = set()
    for path, _ in files:
        path.unlink()
        parents.update(p for p in path.parents if p != folder and folder in p.parents)
    for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    (folder / RECORD_NAME).unlink(missing_ok=True)


def read_record(folder: Path) -> dict | None:
    """The record of ``folder``, or None where there is none; SetMismatch where it cannot be read."""
    path = folder / RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):  # no record, or no folder (writing one then says why)
        return None
    except (OSError, ValueError) as err:
        raise SetMismatch(f"{path} cannot be read ({err}); {OVERWRITE_HINT}") from err
    if not isinstance(record, dict):
        raise SetMismatch(f"{path} is not a record of a synthetic set; {OVERWRITE_HINT}")
    return record


Merge = Callable[[dict, dict], tuple[dict, list[str]]]


def claim(folder: Path, layout: Layout, wanted: dict, merge: Merge, overwrite: bool = False) -> None:
    """Make ``folder`` the home of the set ``wanted`` describes, before any clip is written.

    ``merge(recorded, wanted)`` returns the record of the folder once this request is done and what
    in ``recorded`` contradicts ``wanted`` (each a few words, such as ``seed 0, not 1``); any
    contradiction raises SetMismatch with all of them on one line. ``overwrite`` first deletes the
    set the folder holds (see ``clear``). The record is rewritten only when it changes, so a rerun
    with the same parameters reads one small file.
    """
    wanted = {"layout": layout.name, **wanted}
    if overwrite:
        try:
            old = read_record(folder)
        except SetMismatch:  # unreadable: its set is cleared as this layout's
            old = None
        clear(folder, LAYOUTS.get(old.get("layout"), layout) if old else layout)
        record = None
    else:
        record = read_record(folder)
    if record is None and not overwrite and any(holds_set(folder, other) for other in LAYOUTS.values()):
        raise SetMismatch(f"{folder} holds synthetic files but no record of the parameters they were made with "
                          f"({RECORD_NAME}: made before records were kept); {OVERWRITE_HINT}")
    if record is None:
        merged, problems = wanted, []
    elif record.get("layout") != layout.name:
        merged, problems = wanted, [f"the {record.get('layout')} layout, not {layout.name}"]
    else:
        merged, problems = merge(record, wanted)
    merged = json.loads(json.dumps(merged))  # as read back: lists, string keys
    if problems:
        raise SetMismatch(f"{folder} holds a synthetic set made with other parameters ({'; '.join(problems)}); "
                          f"{OVERWRITE_HINT}")
    if merged != record:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / RECORD_NAME, json.dumps(merged, sort_keys=True) + "\n")


def differences(recorded: dict, wanted: dict, shown: dict[str, Callable[[object], str]]) -> list[str]:
    """``key old, not new`` for each key of ``shown`` (with how to show its value) whose values differ."""
    return [f"{key.replace('_', ' ')} {show(recorded.get(key))}, not {show(wanted.get(key))}"
            for key, show in shown.items() if recorded.get(key) != wanted.get(key)]


def listed(values: object) -> str:
    """``1, 2, 3``: numbers or words, as a message lists them."""
    return ", ".join(str(v) for v in values)  # type: ignore[attr-defined]
