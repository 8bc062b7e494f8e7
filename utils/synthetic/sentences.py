"""The GRID-style synthetic set: clips and align files in GRID's layout, written in parallel, resumable,
recorded with the parameters that made them (``record``), and a preview strip of speakers."""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from utils.data.clip_store import PACKED_SUFFIX, save_packed
from utils.runtime.atomic import write_bytes_atomic
from utils.runtime.paths import DATA_DIR
from utils.synthetic.mouths import DEFAULT_SIZE, N_SENTENCES, render_clip, speaker_sentences
from utils.synthetic.record import GRID, claim, differences, listed
from utils.synthetic.record import SetMismatch as SetMismatch  # what generate() raises, for its callers
from utils.text.grid_text import sentence_from_clip_name

DEFAULT_TGT_PATH = DATA_DIR / "synthetic"
DEFAULT_SPEAKERS = tuple(range(1, 13))
DEFAULT_CLIPS_PER_SPEAKER = 60
MIN_GRID_SIZE = (8, 4)  # the smallest frame a mouth can be drawn in


@dataclass(frozen=True)
class _Task:
    tgt_path: Path
    seed: int
    speaker: int
    index: int
    name: str
    size: tuple[int, int]

    @property
    def clip_path(self) -> Path:
        return self.tgt_path / "datasets" / f"s{self.speaker}" / f"{self.name}{PACKED_SUFFIX}"

    @property
    def align_path(self) -> Path:
        return self.tgt_path / "align" / f"s{self.speaker}" / f"{self.name}.align"


def _run_task(task: _Task) -> str | None:
    """Draw and write one clip; the error message instead of raising, so the others go on."""
    try:
        frames, plan = render_clip(task.seed, task.speaker, task.index, task.name, task.size)
        save_packed(task.clip_path, frames)
        task.align_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(task.align_path, plan.align_text().encode())  # last: its presence marks the clip done
    except (OSError, ValueError) as err:
        return f"{task.clip_path}: could not write the clip ({err})"
    return None


_MIN_PARALLEL = 16  # fewer clips are drawn before a pool could start
T = TypeVar("T")


@dataclass
class GenerateReport:
    """What a ``generate`` call did; ``clip_ids`` are ``sN/name`` for every clip requested."""

    clip_ids: list[str] = field(default_factory=list)
    written: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def generate(
    tgt_path: str | Path = DEFAULT_TGT_PATH,
    speakers: Iterable[int] = DEFAULT_SPEAKERS,
    clips_per_speaker: int = DEFAULT_CLIPS_PER_SPEAKER,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    n_process: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> GenerateReport:
    """Write a synthetic corpus under ``tgt_path`` in the GRID layout, skipping finished clips.

    A clip counts as finished when both its ``.npz`` and its ``.align`` exist; both are written
    to temporary names and renamed, so an interrupted run resumes where it stopped.
    ``n_process`` worker processes draw clips (default: one per available core); fewer than
    ``_MIN_PARALLEL`` clips are drawn in this process, as starting workers would cost more.

    ``tgt_path`` keeps the seed, size and clips per speaker in its record (``utils.synthetic.record``):
    a request with another seed or size, or fewer clips of a speaker than it holds, raises
    ``SetMismatch`` before anything is written, unless ``overwrite`` deletes the old set first. Other
    speakers and more clips per speaker add to the set (each speaker's clips are drawn alone, the
    first N of a fixed order).
    """
    tgt_path = Path(tgt_path)
    width, height = size
    if width < MIN_GRID_SIZE[0] or height < MIN_GRID_SIZE[1]:
        raise ValueError(f"size {width}x{height} is too small to draw a mouth (minimum 8x4)")
    speakers = sorted(set(speakers))
    if speakers and speakers[0] < 0:
        raise ValueError(f"speaker numbers must be >= 0, got {speakers[0]}")
    if not 0 <= clips_per_speaker <= N_SENTENCES:
        raise ValueError(f"clips_per_speaker must be between 0 and {N_SENTENCES}, got {clips_per_speaker}")
    wanted = {"seed": seed, "size": [width, height], "clips": {str(s): clips_per_speaker for s in speakers}}
    claim(tgt_path, GRID, wanted, _merge_grid, overwrite)
    report = GenerateReport()
    todo = []
    for speaker in speakers:
        for index, name in enumerate(speaker_sentences(seed, speaker, clips_per_speaker)):
            task = _Task(tgt_path, seed, speaker, index, name, (width, height))
            report.clip_ids.append(f"s{speaker}/{name}")
            if task.clip_path.is_file() and task.align_path.is_file():
                report.skipped += 1
            else:
                todo.append(task)
    with tqdm(total=len(todo), desc="synthetic clips", unit="clip", disable=not progress) as bar:
        draw(_run_task, todo, n_process, report, bar)
    return report


def _merge_grid(recorded: dict, wanted: dict) -> tuple[dict, list[str]]:
    """A GRID-style set grows by speakers and clips; its seed and size are fixed (see ``record.claim``)."""
    problems = differences(recorded, wanted, {"seed": str, "size": lambda v: "x".join(map(str, v or ()))})
    held = recorded.get("clips", {})
    fewer: dict[tuple[int, int], list[str]] = {}
    for speaker, count in wanted["clips"].items():
        if held.get(speaker, 0) > count:
            fewer.setdefault((held[speaker], count), []).append(f"s{speaker}")
    problems += [f"{had} clips of {listed(names)}, not {count}" for (had, count), names in fewer.items()]
    return {**wanted, "clips": {**held, **wanted["clips"]}}, problems


def draw(run_task: Callable[[T], str | None], todo: Sequence[T], n_process: int | None, report: GenerateReport,
         bar: tqdm) -> None:
    """``run_task`` (which returns an error message or None) over every task of ``todo``, in ``n_process``
    spawned processes (default: one per core) when there are enough tasks to pay for starting them;
    ``report`` counts what was written and keeps the errors, ``bar`` moves on with each."""
    n_process = len(os.sched_getaffinity(0)) if n_process is None else n_process
    if n_process > 1 and len(todo) >= _MIN_PARALLEL:
        with multiprocessing.get_context("spawn").Pool(n_process) as pool:
            _collect(pool.imap_unordered(run_task, todo, chunksize=4), report, bar)
    else:
        _collect(map(run_task, todo), report, bar)


def _collect(results: Iterable[str | None], report: GenerateReport, bar: tqdm) -> None:
    for error in results:
        if error is None:
            report.written += 1
        else:
            report.errors.append(error)
            tqdm.write(error)
        bar.update()


# ---------------------------------------------------------------------------------------------
# Preview


def preview_strip(seed: int = 0, speakers: Sequence[int] = (1, 2, 3), size: tuple[int, int] = DEFAULT_SIZE,
                  n_frames: int = 8, zoom: int = 2) -> np.ndarray:
    """An RGB image: one row per speaker of ``n_frames`` frames of its first clip, each under
    the word being said, to show in the docs (docs/data.md) what the data looks like."""
    rows = []
    for speaker in speakers:
        name = speaker_sentences(seed, speaker, 1)[0]
        frames, plan = render_clip(seed, speaker, 0, name, size)
        first, last = plan.words[0][0] // 1000, plan.words[-1][1] // 1000
        picks = np.linspace(first, last - 1, n_frames).round().astype(int)
        tiles = []
        for f in picks:
            word = next(w for s, e, w in plan.segments if s // 1000 <= f < max(e // 1000, s // 1000 + 1))
            tile = cv2.resize(frames[f], (size[0] * zoom, size[1] * zoom), interpolation=cv2.INTER_NEAREST)
            label = np.full((16, tile.shape[1], 3), 255, np.uint8)
            cv2.putText(label, f"{f}: {word}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(np.pad(np.vstack([tile, label]), ((2, 2), (2, 2), (0, 0)), constant_values=255))
        header = np.full((18, len(tiles) * tiles[0].shape[1], 3), 255, np.uint8)
        cv2.putText(header, f"s{speaker}/{name}: {sentence_from_clip_name(name)}", (4, 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.vstack([header, np.hstack(tiles)]))
    return np.vstack(rows)


def save_preview(path: str | Path, **kwargs) -> None:
    """Write ``preview_strip(**kwargs)`` as a PNG (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", preview_strip(**kwargs)[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the preview")
    write_bytes_atomic(path, png.tobytes())
