"""Character and word error rates, summed over a corpus as the LipNet paper reports them, and the
mean of per-clip rates, which is what the LipNet-PyTorch reproduction reports (the two differ when
sentences differ in length; on GRID they are close)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein


def char_errors(reference: str, hypothesis: str) -> int:
    return Levenshtein.distance(reference, hypothesis)


def word_errors(reference: str, hypothesis: str) -> int:
    return Levenshtein.distance(reference.split(), hypothesis.split())


def cer(references: list[str], hypotheses: list[str]) -> float:
    """Edit distance over characters summed over the corpus, divided by the total reference length."""
    return ErrorRates.of(references, hypotheses).cer


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Edit distance over words summed over the corpus, divided by the total number of reference words."""
    return ErrorRates.of(references, hypotheses).wer


@dataclass
class ErrorRates:
    """Running totals of character and word errors; ``cer``/``wer`` are ratios of the totals,
    ``mean_clip_cer``/``mean_clip_wer`` the means of each clip's own rate."""

    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0
    sentences: int = 0
    clip_cer_sum: float = 0.0
    clip_wer_sum: float = 0.0

    @classmethod
    def of(cls, references: list[str], hypotheses: list[str]) -> ErrorRates:
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
        rates = cls()
        for ref, hyp in zip(references, hypotheses):
            rates.add(ref, hyp)
        return rates

    def add(self, reference: str, hypothesis: str) -> None:
        chars, words = char_errors(reference, hypothesis), word_errors(reference, hypothesis)
        self.char_errors += chars
        self.chars += len(reference)
        self.word_errors += words
        self.words += len(reference.split())
        self.sentences += 1
        self.clip_cer_sum += chars / max(len(reference), 1)
        self.clip_wer_sum += words / max(len(reference.split()), 1)

    def merge(self, other: ErrorRates) -> None:
        self.char_errors += other.char_errors
        self.chars += other.chars
        self.word_errors += other.word_errors
        self.words += other.words
        self.sentences += other.sentences
        self.clip_cer_sum += other.clip_cer_sum
        self.clip_wer_sum += other.clip_wer_sum

    @property
    def cer(self) -> float:
        return self.char_errors / self.chars if self.chars else 0.0

    @property
    def wer(self) -> float:
        return self.word_errors / self.words if self.words else 0.0

    @property
    def mean_clip_cer(self) -> float:
        return self.clip_cer_sum / self.sentences if self.sentences else 0.0

    @property
    def mean_clip_wer(self) -> float:
        return self.clip_wer_sum / self.sentences if self.sentences else 0.0


@dataclass
class GroupedErrorRates:
    """Error rates overall and per group (e.g. per speaker)."""

    overall: ErrorRates = field(default_factory=ErrorRates)
    groups: dict[str, ErrorRates] = field(default_factory=lambda: defaultdict(ErrorRates))

    def add(self, group: str, reference: str, hypothesis: str) -> None:
        self.overall.add(reference, hypothesis)
        self.groups[group].add(reference, hypothesis)
