"""Word classification scores, framework-free: top-1 and top-5 accuracy, per word, confused pairs.

One confusion matrix (rows: the word said, columns: the word read) holds everything but top-5,
so a validation split over workers sums to the whole set's by adding matrices
(``to_vector``/``from_vector``).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from utils.runtime.atomic import write_text_atomic


@dataclass
class WordScores:
    """Counts of one pass over labelled word clips."""

    words: list[str]
    confusion: np.ndarray = field(default=None)  # (K, K) int64, [said, read]
    top5: int = 0  # clips whose word is among the five highest scores
    loss_sum: float = 0.0
    loss_count: int = 0

    def __post_init__(self) -> None:
        self.words = list(self.words)
        if self.confusion is None:
            self.confusion = np.zeros((len(self.words), len(self.words)), np.int64)

    def add(self, labels: Sequence[int], scores: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        """Count a batch of class ``scores`` (N, K) against ``labels``; returns the top-1 predictions."""
        labels = np.asarray(labels, np.int64).reshape(-1)
        scores = np.asarray(scores)
        predicted = scores.argmax(1)
        np.add.at(self.confusion, (labels, predicted), 1)
        k = min(5, scores.shape[1])
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        self.top5 += int((best == labels[:, None]).any(1).sum())
        if losses is not None:
            finite = np.isfinite(losses)
            self.loss_sum += float(losses[finite].sum())
            self.loss_count += int(finite.sum())
        return predicted

    @property
    def clips(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.clips) if self.clips else float("nan")

    @property
    def top5_accuracy(self) -> float:
        return self.top5 / self.clips if self.clips else float("nan")

    @property
    def loss(self) -> float:
        return self.loss_sum / self.loss_count if self.loss_count else float("nan")

    def per_word(self) -> list[tuple[str, int, int, float]]:
        """``(word, clips, correct, accuracy)`` for every word with clips, in class order."""
        said = self.confusion.sum(1)
        correct = np.diag(self.confusion)
        return [(w, int(n), int(c), float(c / n)) for w, n, c in zip(self.words, said, correct) if n]

    def confused_pairs(self, count: int = 10) -> list[tuple[str, str, int]]:
        """The ``count`` most frequent (said, read instead, clips) mistakes, most frequent first."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(-off, axis=None, kind="stable")[:count]
        pairs = []
        for flat in order:
            i, j = divmod(int(flat), off.shape[1])
            if off[i, j] == 0:
                break
            pairs.append((self.words[i], self.words[j], int(off[i, j])))
        return pairs

    def to_vector(self) -> np.ndarray:
        return np.concatenate([[self.top5, self.loss_sum, self.loss_count], self.confusion.reshape(-1)]).astype(
            np.float64)

    @classmethod
    def from_vector(cls, words: Sequence[str], vector: np.ndarray) -> WordScores:
        k = len(words)
        confusion = np.rint(vector[3:]).astype(np.int64).reshape(k, k)
        return cls(list(words), confusion, int(round(vector[0])), float(vector[1]), int(round(vector[2])))

    def summary(self, pairs: int = 5) -> str:
        """One line: accuracy, the weakest words and the most confused pairs."""
        weakest = sorted(self.per_word(), key=lambda row: (row[3], row[0]))[:pairs]
        text = f"top-1 {self.accuracy:.4f}, top-5 {self.top5_accuracy:.4f} over {self.clips} clips"
        if weakest:
            text += "; weakest: " + ", ".join(f"{w} {a:.2f}" for w, _, _, a in weakest)
        confused = self.confused_pairs(pairs)
        if confused:
            text += "; most confused: " + ", ".join(f"{a}->{b} x{n}" for a, b, n in confused)
        return text

    def write_csv(self, path: str, pairs_per_word: int = 1) -> None:
        """``word,clips,correct,accuracy,read_instead,times``: per word, its most frequent mistake."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["word", "clips", "correct", "accuracy", "read_instead", "times"])
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        index = {w: i for i, w in enumerate(self.words)}
        for word, clips, correct, accuracy in self.per_word():
            row = off[index[word]]
            j = int(row.argmax())
            writer.writerow([word, clips, correct, f"{accuracy:.4f}", self.words[j] if row[j] else "",
                             int(row[j])])
        write_text_atomic(path, buffer.getvalue())
