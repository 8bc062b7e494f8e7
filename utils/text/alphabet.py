"""The characters a network spells with: a property of each checkpoint, not of the code.

A network's output has one class per character of its alphabet plus the CTC blank, last
(``blank == len(characters)``). ``GRID`` is a-z and space, the layout of the original Apache MXNet
example's published checkpoint (a-z = 0-25, space = 26, blank = 27), so that checkpoint and every
checkpoint written before alphabets were recorded load unchanged. ``CAPTIONS`` adds the apostrophe
(class 27, blank 28) for sentences from subtitles ("don't", "it's"). Decoders, word timings,
evaluation, the ONNX metadata and reading all take the checkpoint's alphabet.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Alphabet:
    """An ordered set of characters; class ``i`` is ``characters[i]`` and the CTC blank comes last."""

    name: str
    characters: str
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.characters or len(set(self.characters)) != len(self.characters):
            raise ValueError(f"alphabet {self.name!r}: characters must be distinct and not empty, "
                             f"got {self.characters!r}")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.characters)})

    @property
    def blank(self) -> int:
        """The CTC blank's class: the last one."""
        return len(self.characters)

    @property
    def num_classes(self) -> int:
        """Output classes of a network with this alphabet: its characters and the blank."""
        return len(self.characters) + 1

    @property
    def space(self) -> int:
        """The class of the word separator; ValueError for an alphabet without one."""
        if " " not in self._index:
            raise ValueError(f"alphabet {self.name!r} has no space")
        return self._index[" "]

    def encode(self, text: str) -> list[int]:
        """Class ids of ``text``; ValueError naming the first character outside the alphabet."""
        try:
            return [self._index[c] for c in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} in {text!r} is not in the {self.name.upper()} alphabet "
                             f"({self.characters!r})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of class ids; blanks and padding (negative ids, anything past the last character) are dropped."""
        return "".join(self.characters[i] for i in ids if 0 <= i < self.blank)

    def fits(self, text: str) -> bool:
        """True when every character of ``text`` is in the alphabet."""
        return all(c in self._index for c in text)

    def to_dict(self) -> dict[str, object]:
        """How checkpoints (``meta.json``) and ONNX files record it."""
        return {"name": self.name, "characters": self.characters, "blank": self.blank}


GRID = Alphabet("grid", "abcdefghijklmnopqrstuvwxyz ")
CAPTIONS = Alphabet("captions", "abcdefghijklmnopqrstuvwxyz '")
ALPHABETS = {a.name: a for a in (GRID, CAPTIONS)}


def get_alphabet(name: str) -> Alphabet:
    """``grid`` or ``captions``; ValueError listing the names otherwise."""
    try:
        return ALPHABETS[name]
    except KeyError:
        raise ValueError(f"unknown alphabet {name!r}; choose one of {', '.join(ALPHABETS)}") from None


def alphabet_from_record(record: str | Mapping | None) -> Alphabet:
    """The alphabet a checkpoint or an ONNX file recorded (``Alphabet.to_dict``, or just a name); GRID when it
    recorded none (everything written before alphabets were recorded, and the example's parameter file).

    ValueError when the record is not an alphabet with the blank last."""
    if record is None:
        return GRID
    if isinstance(record, str):
        return get_alphabet(record)
    if not isinstance(record, Mapping) or not isinstance(record.get("characters"), str):
        raise ValueError(f"not an alphabet: {record!r}")
    characters = record["characters"]
    if record.get("blank", len(characters)) != len(characters):
        raise ValueError(f"alphabet {characters!r} puts the CTC blank at {record.get('blank')}, "
                         f"not last ({len(characters)})")
    known = ALPHABETS.get(str(record.get("name")))
    if known is not None and known.characters == characters:
        return known
    for alphabet in ALPHABETS.values():
        if alphabet.characters == characters:
            return alphabet
    return Alphabet(str(record.get("name") or "custom"), characters)


def choose_alphabet(requested: str, recorded: Alphabet | None, sentences: Iterable[str]) -> Alphabet:
    """A training run's alphabet: ``requested`` by name (``grid`` or ``captions``), or for ``auto`` the
    checkpoint's (``recorded``, when the run starts from one), else GRID's when every sentence is
    written in it, else CAPTIONS'."""
    if requested != "auto":
        return get_alphabet(requested)
    if recorded is not None:
        return recorded
    return GRID if all(GRID.fits(s) for s in sentences) else CAPTIONS
