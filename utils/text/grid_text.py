"""The GRID corpus as text: its 28-class alphabet, align files and the sentence grammar.

The class layout (a-z = 0-25, space = 26, CTC blank = 27) is ``utils.text.alphabet.GRID``, the one of
the original Apache MXNet example's published checkpoint, so its output layer can be read without
remapping. Networks with other alphabets take theirs from their checkpoint.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from utils.text.alphabet import CAPTIONS, GRID

ALPHABET = GRID.characters
SPACE = GRID.space
BLANK = GRID.blank
NUM_CLASSES = GRID.num_classes

# The six slots of a GRID sentence, each as (file-name code -> word).
COMMANDS = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
COLOURS = {"b": "blue", "g": "green", "r": "red", "w": "white"}
PREPOSITIONS = {"a": "at", "b": "by", "i": "in", "w": "with"}
LETTERS = {c: c for c in "abcdefghijklmnopqrstuvxyz"}  # every letter but w
DIGITS = {"z": "zero", **{str(i): w for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]) if i}}
ADVERBS = {"a": "again", "n": "now", "p": "please", "s": "soon"}
GRAMMAR: tuple[dict[str, str], ...] = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)
SILENCE_WORDS = frozenset({"sil", "sp"})
FPS = 25


def encode(text: str) -> list[int]:
    """Class ids of ``text`` in GRID's alphabet; raises ValueError naming a character outside a-z and space."""
    return GRID.encode(text)


def decode(ids: Iterable[int]) -> str:
    """Text of class ids in GRID's alphabet; blanks and padding (negative ids) are dropped."""
    return GRID.decode(ids)


@dataclass(frozen=True)
class AlignedWord:
    """One spoken word of an align file, in whole video frames that cover it (end exclusive)."""

    word: str
    start: int
    end: int


def parse_align(path: str | Path) -> list[AlignedWord]:
    """Words of a GRID align file, without ``sil`` and ``sp``.

    Times in align files are in 1/1000 of a frame at 25 fps. A word's span is rounded outwards to
    whole frames (start down, end up), so the frames cover all of it: rounding the end down gave
    "with" in s*/swwp2s.align (27250-30500) 3 frames for its 4 characters.
    Raises ValueError naming the file and line for anything that is not ``start end word``.
    """
    path = Path(path)
    words = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise ValueError(f"{path}:{number}: expected 'start end word', got {line!r}")
        start, end, word = int(parts[0]), int(parts[1]), parts[2].lower()
        if end < start:
            raise ValueError(f"{path}:{number}: end {end} is before start {start}")
        if word in SILENCE_WORDS:
            continue
        CAPTIONS.encode(word)  # validates the characters (a transcript's apostrophes too)
        words.append(AlignedWord(word, start // 1000, -(-end // 1000)))
    if not words:
        raise ValueError(f"{path}: no words (only silence)")
    return words


def format_align(words: Sequence[tuple[float, float, str]], count: int) -> str:
    """An align file's text for ``(start, end, word)`` spans in frames (fractions kept, as 1/1000 frame),
    with ``sil`` over the rest of a ``count``-frame clip before and after them: what ``parse_align``
    reads."""
    lines, at = [], 0
    for start, end, word in words:
        first, last = int(round(start * 1000)), int(round(end * 1000))
        if first > at:
            lines.append(f"{at} {first} sil")
        lines.append(f"{first} {last} {word}")
        at = last
    if at < count * 1000:
        lines.append(f"{at} {count * 1000} sil")
    return "\n".join(lines) + "\n"


def ctc_min_frames(text: str) -> int:
    """The fewest frames CTC can align ``text`` to: one per character, plus a blank between each pair
    of equal neighbours ("soon" needs 5). With fewer, MXNet 1.9.1's CTCLoss returns 0, not infinity."""
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


def align_sentence(words: Sequence[AlignedWord]) -> str:
    """The sentence spoken in an align file."""
    return " ".join(w.word for w in words)


_CLIP_NAME = re.compile(r"^[a-z0-9]{6}$")


def sentence_from_clip_name(name: str) -> str:
    """The sentence a GRID clip name spells, one letter per word (``bbaf2n`` -> ``bin blue at f two now``).

    Raises ValueError when the name does not follow the GRID code.
    """
    stem = Path(name).name.split(".")[0].lower()
    if not _CLIP_NAME.match(stem):
        raise ValueError(f"{name!r} is not a GRID clip name (six letters/digits such as 'bbaf2n')")
    words = []
    for code, slot in zip(stem, GRAMMAR):
        if code not in slot:
            raise ValueError(f"{name!r} is not a GRID clip name: {code!r} is not a valid code "
                             f"for slot {len(words) + 1}")
        words.append(slot[code])
    return " ".join(words)


def is_grid_sentence(sentence: str) -> bool:
    """True when ``sentence`` is one of the 64,000 sentences of the GRID grammar."""
    words = sentence.split(" ")
    return len(words) == len(GRAMMAR) and all(w in slot.values() for w, slot in zip(words, GRAMMAR))


def check_align_matches_name(words: Sequence[AlignedWord], clip_name: str) -> None:
    """Raise ValueError when an align's sentence is not the one its clip's name spells."""
    expected = sentence_from_clip_name(clip_name)
    actual = align_sentence(words)
    if actual != expected:
        raise ValueError(f"align of {clip_name} says {actual!r} but the name spells {expected!r}")
