"""The two standard GRID evaluation protocols of LipNet, built from the clips that are present.

Clip ids are ``SPEAKER/CLIP`` strings such as ``s14/bbaq7n``, the form published split lists use.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from pathlib import Path

from utils.data.lipnet_pytorch import list_clip_id

UNSEEN_VALIDATION_SPEAKERS = frozenset({"s1", "s2", "s20", "s22"})
OVERLAP_HELD_OUT_PER_SPEAKER = 255
OVERLAP_SEED = 1611  # the LipNet arXiv number; any fixed value keeps the split reproducible
SPLITS = ("unseen", "overlapped")
MISSING_CLIPS = ("warn", "error")  # what a clip list naming absent clips gets
_SHOWN = 5  # absent clips named in the message
log = logging.getLogger(__name__)
_CLIP_ID = re.compile(r"^s\d+/[^/\s]+$")


def speaker_of(clip_id: str) -> str:
    """``s14`` for ``s14/bbaq7n``."""
    return clip_id.split("/", 1)[0]


def check_clip_id(clip_id: str) -> str:
    if not _CLIP_ID.match(clip_id):
        raise ValueError(f"{clip_id!r} is not a clip id of the form SPEAKER/CLIP such as s14/bbaq7n")
    return clip_id


def unseen_split(clip_ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """Train on every speaker but s1, s2, s20 and s22; validate on all clips of those four."""
    train, val = [], []
    for clip_id in sorted(set(clip_ids)):
        (val if speaker_of(check_clip_id(clip_id)) in UNSEEN_VALIDATION_SPEAKERS else train).append(clip_id)
    return train, val


def clip_key(clip_id: str, seed: int = OVERLAP_SEED) -> int:
    """A stable pseudo-random rank of one clip: the first 8 bytes of SHA-256 of ``seed/clip_id``.

    It depends on the clip alone, never on which other clips exist (and, unlike ``hash()``, not on
    the interpreter's per-process salt).
    """
    return int.from_bytes(hashlib.sha256(f"{seed}/{clip_id}".encode()).digest()[:8], "big")


def overlapped_split(
    clip_ids: Iterable[str],
    held_out_per_speaker: int = OVERLAP_HELD_OUT_PER_SPEAKER,
    seed: int = OVERLAP_SEED,
) -> tuple[list[str], list[str]]:
    """Pool all speakers; hold out the ``held_out_per_speaker`` clips of each with the lowest ``clip_key``.

    Each clip's place is decided by its own key and the speaker's boundary key, so adding or losing
    a clip moves at most one other clip across the boundary (the one whose key is next in line),
    where a seeded sample of the clips present would redraw most of them. A speaker with fewer clips
    than twice that number keeps the lower half of them for validation, so that it is seen in both halves.
    """
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for clip_id in sorted(set(clip_ids)):
        by_speaker[speaker_of(check_clip_id(clip_id))].append(clip_id)
    train, val = [], []
    for speaker in sorted(by_speaker, key=lambda s: int(s[1:])):
        clips = by_speaker[speaker]
        n_val = min(held_out_per_speaker, len(clips) // 2)
        held = set(sorted(clips, key=lambda c: (clip_key(c, seed), c))[:n_val])
        for clip_id in clips:
            (val if clip_id in held else train).append(clip_id)
    return train, val


def digest(clip_ids: Iterable[str]) -> str:
    """SHA-256 (hex) of a set of clip ids, whatever their order."""
    return hashlib.sha256("".join(f"{c}\n" for c in sorted(set(clip_ids))).encode()).hexdigest()


def check_disjoint(train: Iterable[str], val: Iterable[str], what: str) -> None:
    """ValueError naming how many clips and the first few when ``train`` and ``val`` share clips: a
    validation clip that was trained on makes the validation figures those of training clips."""
    shared = sorted(set(train) & set(val))
    if shared:
        shown = ", ".join(shared[:_SHOWN]) + (" ..." if len(shared) > _SHOWN else "")
        raise ValueError(f"{what} share {len(shared)} clips ({shown}): a validation clip must never be trained on")


def describe_selection(definition: dict, train: Iterable[str], val: Iterable[str]) -> dict:
    """What a checkpoint records of its split: how it was chosen, the validation clip ids, and digests."""
    train, val = sorted(set(train)), sorted(set(val))
    return {"definition": definition, "val_clips": val, "val_digest": digest(val),
            "train_count": len(train), "train_digest": digest(train)}


def apply_recorded_selection(
    recorded: dict, train: Iterable[str], val: Iterable[str]
) -> tuple[list[str], list[str], list[str]]:
    """``(train, val, warnings)``: the validation side a checkpoint recorded, among the clips ``train``/``val``
    now present under its definition; training keeps the rest, so no recorded validation clip is
    ever scored as training data or the other way round. ``warnings`` says how the clips differ.
    """
    recorded_val = set(recorded.get("val_clips", ()))
    present = set(train) | set(val)
    kept_val = sorted(recorded_val & present)
    notes = []
    missing = len(recorded_val - present)
    if missing:
        notes.append(f"{missing} of the checkpoint's {len(recorded_val)} validation clips are absent here")
    new_val = sorted(set(val) - recorded_val)
    if new_val:
        notes.append(f"{len(new_val)} clips present here fall on the validation side of the split but were not there "
                     f"at training (e.g. {', '.join(new_val[:3])}); they are scored on neither side")
    kept_train = sorted(set(train) - recorded_val)
    if recorded.get("train_digest") not in (None, digest(kept_train)):
        notes.append(f"the training side differs from the checkpoint's: {len(kept_train)} clips here, "
                     f"{recorded.get('train_count')} at training")
    return kept_train, kept_val, notes


def make_split(name: str, clip_ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(train, validation)`` clip ids of the protocol ``name`` (``unseen`` or ``overlapped``)."""
    if name == "unseen":
        return unseen_split(clip_ids)
    if name == "overlapped":
        return overlapped_split(clip_ids)
    raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")


def read_clip_list(path: str | Path) -> list[str]:
    """Clip ids from a list file, one ``SPEAKER/CLIP`` (or LipNet-PyTorch's ``SPEAKER/video/mpg_6000/CLIP``) a
    line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            ids.append(check_clip_id(list_clip_id(line)))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
    return ids


def listed_clips(path: str | Path, available: Collection[str], missing: str = "warn") -> list[str]:
    """The clip ids of list file ``path`` that are in ``available``, in the file's order.

    Clips it names that are absent are counted and the first few named, as a warning (``missing``
    'warn') or a ValueError ('error'); a list none of whose clips is present is always an error. A
    list naming 4 clips of which 3 were absent once trained on 1 clip without a word.
    """
    if missing not in MISSING_CLIPS:
        raise ValueError(f"missing_clips must be one of {', '.join(MISSING_CLIPS)}, got {missing!r}")
    listed = read_clip_list(path)
    if not listed:
        raise ValueError(f"clip list {path}: names no clips")
    absent = [clip for clip in listed if clip not in available]
    if absent:
        shown = ", ".join(absent[:_SHOWN]) + (" ..." if len(absent) > _SHOWN else "")
        message = f"clip list {path}: {len(absent)} of the {len(listed)} clips it names are absent ({shown})"
        if missing == "error" or len(absent) == len(listed):
            raise ValueError(message)
        log.warning("%s; going on without them (missing_clips=error stops instead)", message)
    return [clip for clip in listed if clip in available]


def write_clip_list(path: str | Path, clip_ids: Iterable[str]) -> None:
    Path(path).write_text("".join(f"{c}\n" for c in clip_ids))
