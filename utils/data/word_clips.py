"""Word clips in LRW's layout, framework-free: where they are, which word and how long it is said.

LRW (Lip Reading in the Wild) keeps one folder per word and one sub-folder per split::

    lipread_mp4/ABOUT/train/ABOUT_00001.mp4
    lipread_mp4/ABOUT/train/ABOUT_00001.txt     "Text:  ABOUT" ... "Duration: 0.53 seconds"

Every clip is 29 frames at 25 fps with the word centred in it; the ``.txt`` gives how long the word
itself lasts. Preprocessed mouth crops (``utils/preprocess_lrw.py``) and the synthetic word set
(``utils/synthetic/words.py``) keep the same layout with a packed ``.npz`` (grey ``(29, 96, 96)``)
in place of each ``.mp4`` and the same ``.txt`` beside it: labels stay beside the data, and one
reader serves raw, preprocessed and synthetic trees. The class list is the sorted word folders.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.runtime.atomic import write_text_atomic
from utils.data.clip_store import PACKED_SUFFIX
from utils.data.sentence_clips import fit_length

WORD_SPLITS = ("train", "val", "test")
WORD_FRAMES = 29  # LRW: 1.16 s at 25 fps
WORD_FPS = 25.0
INFO_SUFFIX = ".txt"
_DURATION = re.compile(r"^\s*Duration:\s*([0-9]*\.?[0-9]+)\s*seconds?\s*$", re.MULTILINE | re.IGNORECASE)
_TEXT = re.compile(r"^\s*Text:\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class WordClip:
    """One clip: its path, the word said in it (the class) and the word's duration in seconds."""

    clip_id: str  # WORD/split/WORD_NNNNN
    path: Path
    word: str
    duration: float


def info_text(word: str, duration: float) -> str:
    """The ``.txt`` of a clip in LRW's format (the lines a reader needs: the word and its duration)."""
    return f"Text:  {word}\nConf:  3\n\nDuration: {duration:.2f} seconds\n"


def write_info(path: str | Path, word: str, duration: float) -> None:
    write_text_atomic(Path(path), info_text(word, duration))


def read_duration(path: str | Path) -> float:
    """The word's duration (seconds) from a clip's ``.txt``; ValueError naming the file and the reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (each clip needs its .txt with the word's duration)") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    match = _DURATION.search(text)
    if match is None:
        raise ValueError(f"{path}: no 'Duration: N seconds' line")
    duration = float(match.group(1))
    if not 0 < duration <= WORD_FRAMES / WORD_FPS + 1e-6:
        raise ValueError(f"{path}: duration {duration} s is outside (0, {WORD_FRAMES / WORD_FPS:.2f}] s")
    said = _TEXT.search(text)
    if said is not None and said.group(1).upper() != path.parent.parent.name.upper():
        raise ValueError(f"{path}: says {said.group(1)!r}, but lies in the folder of {path.parent.parent.name!r}")
    return duration


def list_words(root: str | Path) -> list[str]:
    """The class list: the sorted word folders under ``root`` (hidden folders are not words)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of words")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_clips(root: str | Path, split: str, suffixes: Sequence[str] = (PACKED_SUFFIX,),
               words: Sequence[str] | None = None) -> tuple[list[tuple[str, Path]], list[str]]:
    """``([(word, clip path)], problems)`` of one split, in word then file order.

    A word folder with no clip of ``suffixes`` in this split, or one that is not among ``words`` (the
    model's class list), is a problem (named), not an error: the run goes on with the other words.
    """
    if split not in WORD_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(WORD_SPLITS)}")
    root = Path(root)
    found, problems = [], []
    if words is not None:
        known = set(words)
        problems.extend(f"{root / word}: the word {word!r} is not among the model's {len(words)} words; its clips "
                        "are left out" for word in list_words(root) if word not in known)
    for word in words if words is not None else list_words(root):
        folder = root / word / split
        clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith(".")
                       and p.is_file()) if folder.is_dir() else []
        if not clips:
            problems.append(f"{folder}: no {'/'.join(suffixes)} clip of the word {word!r} in the {split} split")
        found.extend((word, clip) for clip in clips)
    return found, problems


def word_clips(root: str | Path, split: str, words: Sequence[str] | None = None
               ) -> tuple[list[WordClip], list[str]]:
    """Packed clips of ``split`` with their durations, and the problems (file and reason) of those
    left out: a missing or unreadable ``.txt``, a word folder with no clips."""
    found, problems = find_clips(root, split, words=words)
    clips = []
    for word, path in found:
        try:
            duration = read_duration(path.with_suffix(INFO_SUFFIX))
        except ValueError as err:
            problems.append(str(err))
            continue
        clips.append(WordClip(f"{word}/{split}/{path.stem}", path, word, duration))
    return clips, problems



# The network's input, for training (data_loader.WordDataset) and inference alike.
WORD_CROP = 88  # the recipe's crop of the 96x96 mouth region: random in training, centred otherwise
# Grey-level mean and std of LRW's mouth regions scaled to [0, 1], as the reference recipe normalises.
WORD_MEAN, WORD_STD = 0.421, 0.165
_NORMALISED = ((np.arange(256) / 255.0 - WORD_MEAN) / WORD_STD).astype(np.float32)


def centre_offset(size: tuple[int, int], crop: int = WORD_CROP) -> tuple[int, int]:
    """``(y, x)`` of the centred ``crop`` in frames of ``size`` (height, width)."""
    height, width = size
    if height < crop or width < crop:
        raise ValueError(f"frames of {width}x{height} are smaller than the {crop}x{crop} crop")
    return (height - crop) // 2, (width - crop) // 2


def word_input(frames: np.ndarray, offset: tuple[int, int] | None = None, flip: bool = False,
               crop: int = WORD_CROP, num_frames: int = WORD_FRAMES) -> np.ndarray:
    """Float32 ``(1, num_frames, crop, crop)`` network input from grey uint8 ``(T, H, W)`` frames:
    the ``crop`` square at ``offset`` (``(y, x)``; default centred), mirrored when ``flip``, cut or
    padded (holding the last frame) to ``num_frames``, normalised with ``WORD_MEAN``/``WORD_STD``."""
    if frames.dtype != np.uint8 or frames.ndim != 3 or not len(frames):
        raise ValueError(f"expected grey uint8 frames (T, H, W), got {frames.dtype} {frames.shape}")
    y, x = offset if offset is not None else centre_offset(frames.shape[1:], crop)
    if not (0 <= y <= frames.shape[1] - crop and 0 <= x <= frames.shape[2] - crop):
        raise ValueError(f"a {crop}x{crop} crop at {(y, x)} leaves frames of {frames.shape[2]}x{frames.shape[1]}")
    order, _ = fit_length(np.arange(len(frames)), num_frames)
    patch = frames[order, y:y + crop, x:x + crop]
    if flip:
        patch = patch[:, :, ::-1]
    return _NORMALISED[patch][None]


def centre_frames(frames: np.ndarray, num_frames: int = WORD_FRAMES) -> np.ndarray:
    """The middle ``num_frames`` of a longer clip (the word is said in the middle, as in LRW); a clip
    that is not longer comes back whole (``word_input`` pads it)."""
    start = max((len(frames) - num_frames) // 2, 0)
    return frames[start:start + num_frames]


def top_words(logits: np.ndarray, words: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable words of one clip's class scores (softmax), most probable first."""
    logits = np.asarray(logits, np.float64).reshape(-1)
    if len(logits) != len(words):
        raise ValueError(f"{len(logits)} class scores for {len(words)} words")
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")[:k]
    return [(words[i], float(probs[i])) for i in order]
