"""Word n-gram language models in the ARPA format: estimated from sentences, written, read back and queried.

ARPA is the format KenLM's ``lmplz``, SRILM and every CTC decoder with a language model read, so a model
built elsewhere (``lmplz -o 3 < text > lm.arpa``) works here and ours works there. ``estimate`` makes an
interpolated Kneser-Ney model (Chen and Goodman's, with one absolute discount per order,
D = n1 / (n1 + 2 n2) from that order's count-of-counts): the highest order counts n-grams, the lower
orders count the distinct words seen before them (continuation counts), and each order is interpolated
with the one below down to a uniform distribution over the vocabulary and ``<unk>``. In ARPA's back-off
form an n-gram's log-probability is its interpolated probability and a context's back-off weight is the
mass its discounts set aside, so that every context's probabilities sum to 1 (a test checks it).

Queries are plain Python dictionaries (``NgramModel.log_prob``): KenLM's Python module does the same in
C++, but it builds from source only (9-10 minutes of a 2-core machine's wall time for Python 3.11) and
not at all on Python 3.13, where reading with an ONNX file must work too; decoding needs a few hundred
look-ups per clip, each a dictionary hit (see ``utils/text/lm_decoder.py``).
"""
from __future__ import annotations

import gzip
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NEVER = -99.0  # ARPA's log10 probability of <s>, which is only ever a context
LN10 = math.log(10.0)
_ARPA_HEADER = re.compile(r"^ngram (\d+)=(\d+)$")
_SECTION = re.compile(r"^\\(\d+)-grams:$")


def normalise_sentence(text: str, characters: str) -> str:
    """``text`` lower-cased, every character outside ``characters`` turned into a space, spaces collapsed."""
    kept = "".join(c if c in characters else " " for c in text.lower())
    return " ".join(kept.split())


def _discount(counts: Iterable[int]) -> float:
    """Ney's absolute discount n1 / (n1 + 2 n2), from how many n-grams were seen once and twice; 0.5 when
    that is undefined or outside (0, 1) (tiny corpora)."""
    of = Counter(counts)
    n1, n2 = of[1], of[2]
    d = n1 / (n1 + 2 * n2) if n1 + 2 * n2 else 0.0
    return d if 0.0 < d < 1.0 else 0.5


def estimate(sentences: Iterable[Sequence[str]], order: int = 3) -> NgramModel:
    """An interpolated Kneser-Ney model of order ``order`` over sentences given as word lists."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[k]: counts of k-grams
    n_sentences = 0
    for words in sentences:
        if not words:
            continue
        n_sentences += 1
        padded = (BOS, *words, EOS)
        for k in range(1, order + 1):
            for i in range(len(padded) - k + 1):
                raw[k][padded[i:i + k]] += 1
    if not n_sentences:
        raise ValueError("no sentences to estimate a language model from")

    # Adjusted counts: raw at the highest order and for n-grams starting with <s> (nothing precedes it),
    # else the number of distinct words seen before the n-gram.
    adjusted: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
    adjusted[order] = dict(raw[order])
    for k in range(order - 1, 0, -1):
        left = Counter(gram[1:] for gram in raw[k + 1])
        adjusted[k] = {gram: (count if gram[0] == BOS else left[gram]) for gram, count in raw[k].items()}
        adjusted[k] = {gram: count for gram, count in adjusted[k].items() if count > 0}
    vocabulary = sorted({gram[0] for gram in raw[1]} - {BOS} | {UNK})

    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]  # interpolated, natural units
    gammas: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]  # back-off mass per context
    # Unigrams: discounted counts interpolated with a uniform distribution over the vocabulary (and <unk>).
    unigrams = {gram: count for gram, count in adjusted[1].items() if gram[0] != BOS}
    d = _discount(unigrams.values())
    total = sum(unigrams.values())
    spare = d * len(unigrams) / total
    for word in vocabulary:
        probs[1][(word,)] = max(unigrams.get((word,), 0) - d, 0) / total + spare / len(vocabulary)
    for k in range(2, order + 1):
        d = _discount(adjusted[k].values())
        by_context: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for gram, count in adjusted[k].items():
            by_context[gram[:-1]].append((gram[-1], count))
        for context, followers in by_context.items():
            context_total = sum(count for _, count in followers)
            gamma = d * len(followers) / context_total
            gammas[k - 1][context] = gamma
            for word, count in followers:
                lower = _interpolated(probs, gammas, context[1:], word)
                probs[k][(*context, word)] = (count - d) / context_total + gamma * lower
    return NgramModel.from_tables(order, probs, gammas)


def _interpolated(probs: list[dict], gammas: list[dict], context: tuple[str, ...], word: str) -> float:
    """P(word | context) from tables still being filled (orders up to len(context) + 1 complete)."""
    backoff = 1.0
    for start in range(len(context) + 1):
        ctx = context[start:]
        p = probs[len(ctx) + 1].get((*ctx, word))
        if p is not None:
            return backoff * p
        backoff *= gammas[len(ctx)].get(ctx, 1.0) if ctx else 1.0
    return backoff * probs[1][(UNK,)]


@dataclass
class NgramModel:
    """A back-off n-gram model: log10 probabilities and back-off weights per n-gram, as in an ARPA file."""

    order: int
    # ngrams[k][gram] = (log10 P, log10 back-off weight) for k-grams; the weight is 0 where there is none.
    ngrams: list[dict[tuple[str, ...], tuple[float, float]]]
    _unk: float = field(init=False, default=NEVER)

    def __post_init__(self) -> None:
        self._unk = self.ngrams[1].get((UNK,), (NEVER, 0.0))[0]

    @classmethod
    def from_tables(cls, order: int, probs: list[dict], gammas: list[dict]) -> NgramModel:
        ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = [{} for _ in range(order + 1)]
        for k in range(1, order + 1):
            for gram, p in probs[k].items():
                gamma = gammas[k].get(gram)
                ngrams[k][gram] = (math.log10(p), math.log10(gamma) if gamma else 0.0)
        if order > 1:  # <s> is a context only, with its back-off weight
            gamma = gammas[1].get((BOS,))
            ngrams[1][(BOS,)] = (NEVER, math.log10(gamma) if gamma else 0.0)
        return cls(order, ngrams)

    @property
    def vocabulary(self) -> list[str]:
        """The words the model can predict, without <s>, </s> and <unk>: a decoder's lexicon."""
        return sorted(gram[0] for gram in self.ngrams[1] if gram[0] not in (BOS, EOS, UNK))

    def log10_prob(self, context: Sequence[str], word: str) -> float:
        """log10 P(word | context) by back-off; ``context`` is the words before (``<s>`` first at a start)."""
        context = tuple(context[len(context) - self.order + 1:]) if self.order > 1 else ()
        backoff = 0.0
        for start in range(len(context) + 1):
            ctx = context[start:]
            entry = self.ngrams[len(ctx) + 1].get((*ctx, word))
            if entry is not None:
                return backoff + entry[0]
            if ctx:
                backoff += self.ngrams[len(ctx)].get(ctx, (0.0, 0.0))[1]
        return backoff + self._unk

    def log_prob(self, context: Sequence[str], word: str) -> float:
        """ln P(word | context)."""
        return self.log10_prob(context, word) * LN10

    def sentence_log10_prob(self, words: Sequence[str]) -> float:
        """log10 P(<s> words </s>)."""
        history = [BOS]
        total = 0.0
        for word in (*words, EOS):
            total += self.log10_prob(history, word)
            history.append(word)
        return total

    def to_arpa(self) -> str:
        lines = ["", "\\data\\"]
        lines += [f"ngram {k}={len(self.ngrams[k])}" for k in range(1, self.order + 1)]
        for k in range(1, self.order + 1):
            lines += ["", f"\\{k}-grams:"]
            for gram, (logp, backoff) in sorted(self.ngrams[k].items()):
                text = f"{logp:.6f}\t{' '.join(gram)}"
                lines.append(f"{text}\t{backoff:.6f}" if k < self.order and backoff else text)
        return "\n".join([*lines, "", "\\end\\", ""])


def read_arpa(path: str | Path) -> NgramModel:
    """An ARPA file (``.arpa`` or gzip-compressed ``.arpa.gz``); ValueError naming the file and line for
    anything that is not one, FileNotFoundError when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such language model file (build one with utils/build_lm.py)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise ValueError(f"{path}: not a readable ARPA language model ({err})") from None

    def bad(number: int, why: str) -> ValueError:
        return ValueError(f"{path}:{number}: not an ARPA language model: {why}")

    expected: dict[int, int] = {}
    section = None
    ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = [{}]
    ended = False
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or ended:
            continue
        if section is None:
            if line == "\\data\\":
                section = 0
            continue
        header = _ARPA_HEADER.match(line)
        if section == 0 and header:
            expected[int(header.group(1))] = int(header.group(2))
            continue
        match = _SECTION.match(line)
        if match:
            section = int(match.group(1))
            if section != len(ngrams):
                raise bad(number, f"section {line} out of order")
            ngrams.append({})
            continue
        if line == "\\end\\":
            ended = True
            continue
        if section == 0:
            raise bad(number, f"expected 'ngram N=COUNT' in \\data\\, got {line!r}")
        parts = line.split()
        try:
            logp = float(parts[0])
            gram = tuple(parts[1:1 + section])
            backoff = float(parts[1 + section]) if len(parts) == section + 2 else 0.0
        except (ValueError, IndexError):
            raise bad(number, f"expected 'log10-prob {section} words [back-off]', got {line!r}") from None
        if len(gram) != section or len(parts) > section + 2:
            raise bad(number, f"expected 'log10-prob {section} words [back-off]', got {line!r}")
        ngrams[section][gram] = (logp, backoff)
    if section is None:
        raise ValueError(f"{path}: not an ARPA language model (no \\data\\ section)")
    if not ended:
        raise ValueError(f"{path}: truncated ARPA language model (no \\end\\)")
    order = len(ngrams) - 1
    if order < 1 or sorted(expected) != list(range(1, order + 1)):
        raise ValueError(f"{path}: its \\data\\ counts {expected} do not match its {order} n-gram sections")
    for k, count in expected.items():
        if len(ngrams[k]) != count:
            raise ValueError(f"{path}: \\data\\ says {count} {k}-grams, the file has {len(ngrams[k])}")
    return NgramModel(order, ngrams)
