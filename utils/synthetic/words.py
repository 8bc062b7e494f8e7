"""A synthetic word-level set in LRW's layout: single words said in 29-frame clips by synthetic speakers.

Why it exists: LRW needs a licence from the BBC, so the word-level path (preprocessed tree,
``WordDataset``, the ResNet-18 + MS-TCN classifier, ``infer.py``'s top-5) needs a set anyone can make
in seconds to run end to end, in tests and in docs/lrw.md. It reuses the GRID generator's speech
model (``utils.synthetic``: a mouth shape per character, co-articulation, speakers that differ in
looks and style) and writes what preprocessing LRW gives::

    TGT/WORD/{train,val,test}/WORD_NNNNN.npz   grey (29, 96, 96) mouth regions (utils.data.clip_store)
    TGT/WORD/{train,val,test}/WORD_NNNNN.txt   "Text:  WORD" ... "Duration: 0.44 seconds"

Like LRW, every clip is 29 frames at 25 fps with the word centred and other speech (GRID words)
running into both ends, so the network must find the word between context frames. Each speaker
belongs to one split (``train_speakers``, ``val_speakers``, ``test_speakers``), so validation and
test speakers are unseen in training. Clip ``NNNNN`` is ``speaker * 1000 + index + 1``: asking for
more clips per speaker later keeps the clips already made. A clip's random stream depends only on
``(seed, speaker, word, index)``, so a parallel run writes the same clips as a serial one.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.data.clip_store import PACKED_SUFFIX, save_packed
from utils.data.word_clips import INFO_SUFFIX, WORD_FPS, WORD_FRAMES, write_info
from utils.runtime.paths import DATA_DIR
from utils.synthetic import (
    REST,
    SHAPE_FRAMES,
    ClipPlan,
    GenerateReport,
    Speaker,
    make_speaker,
    mouth_trajectory,
    render_frames,
    word_shapes,
)
from utils.synthetic.record import WORDS, claim, differences, listed
from utils.synthetic.sentences import draw  # the GRID generator's pool, progress and report keeping
from utils.text.grid_text import GRAMMAR

DEFAULT_WORDS_PATH = DATA_DIR / "synthetic_words"
# LRW words whose shape sequences all differ (a test checks it): a handful, so a small network
# learns them in a minute on a CPU.
DEFAULT_WORDS = ("ABOUT", "BECAUSE", "FAMILY", "MONEY", "PEOPLE", "SCHOOL", "WORLD", "THINK")
DEFAULT_SPLIT_SPEAKERS = {"train": tuple(range(1, 9)), "val": (9, 10), "test": (11, 12)}
DEFAULT_WORD_CLIPS = 10  # per word and speaker
WORD_SIZE = 96  # LRW's mouth-region crop, pixels
MAX_CLIPS_PER_SPEAKER = 999
MAX_SPEAKER = 99
MIN_SIZE = 32
_CONTEXT_WORDS = tuple(sorted({w for slot in GRAMMAR for w in slot.values() if len(w) > 1}))
_WORD_STREAM = 4  # apart from utils.synthetic's speaker, sentence and clip streams


def clip_number(speaker: int, index: int) -> int:
    return speaker * 1000 + index + 1


def _word_key(word: str) -> int:
    return zlib.crc32(word.encode())


def _check_word(word: str) -> str:
    if not word.isalpha() or not word.isascii():
        raise ValueError(f"word {word!r}: only the letters a-z can be said by the synthetic speakers")
    return word.upper()


def plan_word(word: str, speaker: Speaker, rng: np.random.Generator) -> tuple[ClipPlan, float]:
    """Shape targets of ``word`` centred in a 29-frame clip with context words running in from both
    sides, and the word's duration in seconds.

    Times are frames of the clip; context targets before 0 and after 29 pull the mouth at the ends.
    """
    rate = speaker.rate * rng.uniform(0.92, 1.08)

    def timed(text: str) -> tuple[np.ndarray, np.ndarray, float]:
        shapes = np.array(word_shapes(text.lower()))
        durs = rate * rng.uniform(0.8, 1.2, len(shapes)) * SHAPE_FRAMES
        return shapes, durs, rng.uniform(0.4, 1.2)

    shapes, durs, margin = timed(word)
    length = durs.sum() + 2 * margin
    squeeze = min(1.0, (WORD_FRAMES - 4) / length)  # the word fits with two frames either side
    durs, margin, length = durs * squeeze, margin * squeeze, length * squeeze
    start = WORD_FRAMES / 2 - length / 2 + rng.uniform(-0.5, 0.5)
    times, key_shapes, sigmas = [], [], []
    segments = []

    def place(shapes: np.ndarray, durs: np.ndarray, margin: float, at: float, label: str) -> None:
        times.extend(at + margin + np.cumsum(durs) - durs / 2)
        key_shapes.extend(shapes)
        sigmas.extend(np.maximum(durs * speaker.crispness, 0.35))
        segments.append((int(round(at * 1000)), int(round((at + durs.sum() + 2 * margin) * 1000)), label))

    def pause(at: float, frames: float) -> None:
        times.append(at + frames / 2)
        key_shapes.append(REST)
        sigmas.append(max(frames / 3, 0.5))

    place(shapes, durs, margin, start, word)
    t = start  # context backwards from the word's start
    while t > -4:
        gap = rng.uniform(1.0, 4.0) if rng.uniform() < 0.25 else 0.0
        if gap:
            pause(t - gap, gap)
        c_shapes, c_durs, c_margin = timed(str(rng.choice(_CONTEXT_WORDS)))
        t -= gap + c_durs.sum() + 2 * c_margin
        place(c_shapes, c_durs, c_margin, t, "context")
    t = start + length  # and forwards from its end
    while t < WORD_FRAMES + 4:
        gap = rng.uniform(1.0, 4.0) if rng.uniform() < 0.25 else 0.0
        if gap:
            pause(t, gap)
        c_shapes, c_durs, c_margin = timed(str(rng.choice(_CONTEXT_WORDS)))
        place(c_shapes, c_durs, c_margin, t + gap, "context")
        t += gap + c_durs.sum() + 2 * c_margin
    plan = ClipPlan(word, tuple(sorted(segments)), np.array(times), np.array(key_shapes), np.array(sigmas))
    return plan, round(length / WORD_FPS, 2)


def render_word(seed: int, speaker: int, word: str, index: int,
                size: int = WORD_SIZE) -> tuple[np.ndarray, float]:
    """Grey ``(29, size, size)`` uint8 frames of clip ``index`` of ``speaker`` saying ``word``, and the
    word's duration in seconds."""
    style = make_speaker(seed, speaker)
    rng = np.random.default_rng([seed, _WORD_STREAM, speaker, _word_key(word), index])
    plan, duration = plan_word(word, style, rng)
    params = mouth_trajectory(plan, style, rng)[:WORD_FRAMES]
    rgb = render_frames(params, style, rng, (size, size))
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as OpenCV
    return np.round(grey).astype(np.uint8), duration


@dataclass(frozen=True)
class _Task:
    tgt_path: Path
    seed: int
    speaker: int
    word: str
    split: str
    index: int
    size: int

    @property
    def clip_path(self) -> Path:
        name = f"{self.word}_{clip_number(self.speaker, self.index):05d}{PACKED_SUFFIX}"
        return self.tgt_path / self.word / self.split / name

    @property
    def info_path(self) -> Path:
        return self.clip_path.with_suffix(INFO_SUFFIX)


def _run_task(task: _Task) -> str | None:
    """Draw and write one clip; the error message instead of raising, so the others go on."""
    try:
        frames, duration = render_word(task.seed, task.speaker, task.word, task.index, task.size)
        save_packed(task.clip_path, frames)
        write_info(task.info_path, task.word, duration)  # last: its presence marks the clip done
    except (OSError, ValueError) as err:
        return f"{task.clip_path}: could not write the clip ({err})"
    return None


def generate_words(
    tgt_path: str | Path = DEFAULT_WORDS_PATH,
    words: Iterable[str] = DEFAULT_WORDS,
    split_speakers: dict[str, Sequence[int]] | None = None,
    clips_per_speaker: int = DEFAULT_WORD_CLIPS,
    seed: int = 0,
    size: int = WORD_SIZE,
    n_process: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> GenerateReport:
    """Write a synthetic word set under ``tgt_path`` in LRW's layout, skipping finished clips.

    ``split_speakers`` maps each split to its speakers (default: 1-8 train, 9-10 val, 11-12 test); a
    speaker may be in one split only. ``clip_ids`` of the report are ``WORD/split/WORD_NNNNN``.

    ``tgt_path`` records the request (``utils.synthetic.record``): a later request with another seed or
    size, a speaker in another split, or fewer words, speakers or clips than the tree holds raises
    ``SetMismatch`` before anything is written, unless ``overwrite`` deletes the old tree first; more
    words, speakers and clips add to it.
    """
    tgt_path = Path(tgt_path)
    split_speakers = dict(DEFAULT_SPLIT_SPEAKERS if split_speakers is None else split_speakers)
    words = sorted({_check_word(w) for w in words})
    if not words:
        raise ValueError("no words to say")
    if not 1 <= clips_per_speaker <= MAX_CLIPS_PER_SPEAKER:
        raise ValueError(f"clips_per_speaker must be between 1 and {MAX_CLIPS_PER_SPEAKER}, got {clips_per_speaker}")
    if size < MIN_SIZE:
        raise ValueError(f"size {size} is too small for a mouth region (minimum {MIN_SIZE})")
    owner: dict[int, str] = {}
    for split, speakers in split_speakers.items():
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; expected train, val or test")
        for speaker in speakers:
            if not 0 <= speaker <= MAX_SPEAKER:
                raise ValueError(f"speaker numbers must be between 0 and {MAX_SPEAKER}, got {speaker}")
            if owner.setdefault(speaker, split) != split:
                raise ValueError(f"speaker {speaker} is in both the {owner[speaker]} and {split} splits: "
                                 "a speaker's clips go to one split only")
    wanted = {"seed": seed, "size": size, "clips_per_speaker": clips_per_speaker, "words": words,
              "splits": {split: sorted(set(split_speakers.get(split, ()))) for split in DEFAULT_SPLIT_SPEAKERS}}
    claim(tgt_path, WORDS, wanted, _merge_words, overwrite)
    report = GenerateReport()
    todo = []
    for word in words:
        for split, speakers in split_speakers.items():
            for speaker in sorted(set(speakers)):
                for index in range(clips_per_speaker):
                    task = _Task(tgt_path, seed, speaker, word, split, index, size)
                    report.clip_ids.append(f"{word}/{split}/{task.clip_path.stem}")
                    if task.clip_path.is_file() and task.info_path.is_file():
                        report.skipped += 1
                    else:
                        todo.append(task)
    with tqdm(total=len(todo), desc="synthetic words", unit="clip", disable=not progress) as bar:
        draw(_run_task, todo, n_process, report, bar)
    return report


def _merge_words(recorded: dict, wanted: dict) -> tuple[dict, list[str]]:
    """A word tree grows by words, speakers and clips; its seed, size and every speaker's split are fixed,
    and a request must cover the tree, whose folders are the data set (see ``record.claim``)."""
    problems = differences(recorded, wanted, {"seed": str, "size": lambda v: f"{v}x{v}"})
    owner = {s: split for split, speakers in recorded.get("splits", {}).items() for s in speakers}
    asked = {s: split for split, speakers in wanted["splits"].items() for s in speakers}
    moved: dict[tuple[str, str], list[int]] = {}
    for speaker, split in sorted(owner.items()):
        if asked.get(speaker, split) != split:
            moved.setdefault((split, asked[speaker]), []).append(speaker)
    problems += [f"speakers {listed(s)} in {old}/, not {new}/" for (old, new), s in moved.items()]
    left_out = sorted(set(owner) - set(asked))
    if left_out:
        problems.append(f"speakers {listed(left_out)} not asked for")
    words = sorted(set(recorded.get("words", ())) - set(wanted["words"]))
    if words:
        problems.append(f"words {listed(words)} not asked for")
    if recorded.get("clips_per_speaker", 0) > wanted["clips_per_speaker"]:
        problems.append(f"{recorded['clips_per_speaker']} clips per speaker, not {wanted['clips_per_speaker']}")
    return wanted, problems

