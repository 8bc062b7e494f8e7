"""CTC decoders: greedy, prefix beam search and exact GRID-grammar decoding (the word language model's
beam search is ``utils.text.lm_decoder``).

Every decoder takes log-probabilities of shape (T, C) (the model output after log_softmax) and the
network's ``utils.text.alphabet.Alphabet`` (GRID's by default: C = 28, classes 0-26 a-z and space),
the CTC blank being the last class. All arithmetic is in log space in
float64, so long clips and distributions with exact zeros (log 0 = -inf) neither underflow nor give NaN.

The grammar decoder is exact: it returns the argmax over every sentence of the grammar of P(sentence | x),
the CTC sum over all alignments, rather than spell-fixing the greedy string. It reaches the 64,000 GRID
sentences in milliseconds by meeting in the middle at the space between two slots: CTC forward variables
over the prefix tree of the first slots, backward variables over the suffix tree of the last ones (a
forward pass over reversed time and reversed words), and one matrix product joining them. Because the
joining space differs from every letter, no repeated-character case crosses the join.
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from utils.text.alphabet import GRID, Alphabet
from utils.text.grid_text import GRAMMAR


class WordSearch(Protocol):
    """What the ``lm`` method needs of its decoder: ``utils.text.lm_decoder.LMDecoder``, which is built on
    this module's beam search and so is named here only by what it does (no import cycle)."""

    alphabet: Alphabet

    def beams(self, log_probs: np.ndarray) -> list[tuple[str, float]]: ...


DECODERS = ("greedy", "beam", "grammar", "lm")
DEFAULT_BEAM_WIDTH = 25

# The GRID grammar as words per slot: command, colour, preposition, letter, digit, adverb.
GRID_GRAMMAR: tuple[tuple[str, ...], ...] = tuple(tuple(slot.values()) for slot in GRAMMAR)

# One slot is either a collection of words or a code -> word mapping such as utils.text.grid_text.GRAMMAR's.
GrammarSpec = Sequence[Iterable[str] | Mapping[str, str]]

_NEG_INF = -np.inf
_FLOOR = np.finfo(np.float64).min  # a finite stand-in for -inf as the shift of a log-sum-exp
# Scaled join sums below this are recomputed in plain log space by sentence_log_probs: under it, terms
# lost to underflow (< 1e-308 each) could matter relative to the sum.
_JOIN_EXACT_BELOW = 1e-280
# When every sentence has probability 0 (the output puts exact zeros on every valid sentence), the
# grammar decoder ranks sentences again with log-probabilities floored here, so it still names one.
_ZERO_FLOOR = -1000.0


class UndecodableClip(ValueError):
    """A clip's output no decoder can read: too few frames for any sentence of the grammar, or values no
    log_softmax gives (NaN, +inf). It concerns that clip alone, so a reader of many goes on with the rest
    (a wrong shape, by contrast, is a plain ValueError: the network and alphabet do not fit)."""


def check_log_probs(log_probs: np.ndarray, alphabet: Alphabet = GRID) -> np.ndarray:
    """The matrix as float64 (T, C); ValueError on a wrong shape, UndecodableClip on NaN or +inf, which no
    log_softmax gives."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] != alphabet.num_classes or lp.shape[0] < 1:
        raise ValueError(f"expected log-probabilities of shape (T, {alphabet.num_classes}) with T >= 1 "
                         f"({alphabet.name} alphabet), "
                         f"got shape {lp.shape}")
    if np.isnan(lp).any() or (lp == np.inf).any():
        raise UndecodableClip("log-probabilities contain NaN or +inf")
    return lp


def _lse2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = np.maximum(np.maximum(a, b), _FLOOR)
    return m + np.log(np.exp(a - m) + np.exp(b - m))


def _lse3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    m = np.maximum(np.maximum(np.maximum(a, b), c), _FLOOR)
    return m + np.log(np.exp(a - m) + np.exp(b - m) + np.exp(c - m))


# ----------------------------------------------------------------------------------------------- greedy

def _collapse(best: np.ndarray, alphabet: Alphabet) -> str:
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return alphabet.decode(best[keep & (best != alphabet.blank)])


def greedy_decode(log_probs: np.ndarray, alphabet: Alphabet = GRID) -> str:
    """Best path: the most probable class per frame, repeats collapsed, blanks dropped."""
    return _collapse(np.argmax(check_log_probs(log_probs, alphabet), axis=1), alphabet)


# ------------------------------------------------------------------------------------------ beam search

class CTCBeam:
    """The beam of CTC prefix beam search: prefixes (tuples of class indices) and, per prefix, the
    log-probabilities of its alignments ending in a blank and in its last character, and that
    character (``n_chars``, never emitted, for the empty prefix). A repeated character is only a new
    character after a blank. Shared by ``prefix_beam_search`` and the word language model's search."""

    def __init__(self, n_chars: int) -> None:
        self.n_chars = n_chars
        self.prefixes: list[tuple[int, ...]] = [()]
        self.p_blank = np.array([0.0])
        self.p_char = np.array([_NEG_INF])
        self.last = np.array([n_chars])

    def scores(self, chars: np.ndarray, blank: float,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame: the (W,) log-probabilities of each prefix staying as it is, ending in a blank and in
        its last character, and the (W, n_chars) ones of each prefix extended by each character.
        ``chars``: the frame's character log-probabilities with an extra -inf column at ``n_chars``;
        ``allowed`` (W, n_chars): extensions permitted (the rest get -inf). An extension that is itself
        in the beam is merged into that entry's ``stay_char``."""
        n_chars, last, p_blank, p_char = self.n_chars, self.last, self.p_blank, self.p_char
        total = np.logaddexp(p_blank, p_char)
        stay_blank = total + blank
        stay_char = p_char + chars[last]
        ext = total[:, None] + chars[None, :n_chars]
        rows = np.flatnonzero(last < n_chars)
        ext[rows, last[rows]] = p_blank[rows] + chars[last[rows]]  # a repeat extends only from a blank
        if allowed is not None:
            ext[~allowed] = _NEG_INF
        index = {p: i for i, p in enumerate(self.prefixes)}
        parents = np.array([index.get(p[:-1], -1) if p else -1 for p in self.prefixes])
        child = np.flatnonzero(parents >= 0)
        if len(child):
            src, ch = parents[child], last[child]
            stay_char[child] = np.logaddexp(stay_char[child], ext[src, ch])
            ext[src, ch] = _NEG_INF
        return stay_blank, stay_char, ext

    def advance(self, keep: np.ndarray, stay_blank: np.ndarray, stay_char: np.ndarray,
                ext: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep the entries ``keep`` (indices into the stay scores followed by the flattened extensions);
        returns, per new entry, its parent's index, the character added and whether it is an extension."""
        n_stay = len(self.prefixes)
        is_ext = keep >= n_stay
        src, ch = np.divmod(np.where(is_ext, keep - n_stay, 0), self.n_chars)
        parent = np.where(is_ext, src, keep)
        stay = np.where(is_ext, 0, keep)
        self.prefixes = [self.prefixes[s] + (c,) if e else self.prefixes[s]
                         for s, c, e in zip(parent.tolist(), ch.tolist(), is_ext.tolist())]
        self.p_blank = np.where(is_ext, _NEG_INF, stay_blank[stay])
        self.p_char = np.where(is_ext, ext.ravel()[np.where(is_ext, keep - n_stay, 0)], stay_char[stay])
        self.last = np.where(is_ext, ch, self.last[stay])
        return parent, ch, is_ext


def best_of(scores: np.ndarray, width: int) -> np.ndarray:
    """Indices of the ``width`` best finite scores, best first (ties by index); the best one if none is finite."""
    keep = np.argpartition(-scores, width - 1)[:width] if len(scores) > width else np.arange(len(scores))
    keep = keep[np.lexsort((keep, -scores[keep]))]
    finite = keep[np.isfinite(scores[keep])]
    return finite if len(finite) else keep[:1]


def prefix_beam_search(log_probs: np.ndarray, beam_width: int = DEFAULT_BEAM_WIDTH,
                       alphabet: Alphabet = GRID) -> list[tuple[str, float]]:
    """The final beam of CTC prefix beam search as (text, log P(text | x)), most probable first.

    Each prefix keeps two log-probabilities (``CTCBeam``). Per frame, every beam entry times
    every character is scored as one (W, 27) array; the only Python work is the W prefixes kept.
    With a beam at least as wide as the number of distinct prefixes the search is exact.
    """
    if beam_width < 1:
        raise ValueError(f"beam width must be at least 1, got {beam_width}")
    lp = check_log_probs(log_probs, alphabet)
    n_chars = alphabet.blank
    # Character log-probs with an extra -inf column: the "last character" of the empty prefix.
    chars = np.concatenate([lp[:, :n_chars], np.full((len(lp), 1), _NEG_INF)], axis=1)
    blank = lp[:, alphabet.blank]

    beam = CTCBeam(n_chars)
    for t in range(len(lp)):
        stay_blank, stay_char, ext = beam.scores(chars[t], blank[t])
        keep = best_of(np.concatenate([np.logaddexp(stay_blank, stay_char), ext.ravel()]), beam_width)
        beam.advance(keep, stay_blank, stay_char, ext)
    prefixes, p_blank, p_char = beam.prefixes, beam.p_blank, beam.p_char
    totals = np.logaddexp(p_blank, p_char)
    order = np.lexsort((np.arange(len(totals)), -totals))
    return [(alphabet.decode(prefixes[i]), float(totals[i])) for i in order]


def beam_decode(log_probs: np.ndarray, beam_width: int = DEFAULT_BEAM_WIDTH, alphabet: Alphabet = GRID) -> str:
    """The most probable prefix (blank and non-blank endings summed) left by prefix beam search."""
    return prefix_beam_search(log_probs, beam_width, alphabet)[0][0]


# ---------------------------------------------------------------------------------------------- grammar

class _Trie:
    """Words as a tree of characters; node 0 is the root, whose character is a never-emitted class: ``never``,
    the index of an all -inf column appended to the log-probabilities."""

    def __init__(self, never: int) -> None:
        self.parent = [0]
        self.char = [never]
        self._children: list[dict[int, int]] = [{}]

    def add(self, ids: Iterable[int]) -> int:
        node = 0
        for c in ids:
            nxt = self._children[node].get(c)
            if nxt is None:
                nxt = len(self.parent)
                self.parent.append(node)
                self.char.append(c)
                self._children.append({})
                self._children[node][c] = nxt
            node = nxt
        return node


@dataclass(frozen=True)
class _CompiledGrammar:
    """Both trees of one grammar as flat arrays, so one vectorised CTC pass runs them together.

    Nodes [0, n_prefix) are the prefix tree (sentences' first ``split`` slots, each followed by the
    joining space); the rest is the suffix tree (last slots, words and sentence reversed), stored after it.
    """

    slots: tuple[tuple[str, ...], ...]
    blank: int
    split: int
    parent: np.ndarray
    char: np.ndarray
    repeat_mask: np.ndarray  # -inf where a node repeats its parent's character (needs a blank between)
    n_prefix: int
    prefix_leaves: np.ndarray
    suffix_leaves: np.ndarray
    min_frames: int


def _normalise_grammar(grammar: GrammarSpec, alphabet: Alphabet) -> tuple[tuple[str, ...], ...]:
    slots = []
    for number, slot in enumerate(grammar, 1):
        words = tuple(dict.fromkeys(slot.values() if isinstance(slot, Mapping) else slot))
        if not words:
            raise ValueError(f"grammar slot {number} has no words")
        for word in words:
            if not isinstance(word, str) or not word or alphabet.space in alphabet.encode(word):
                raise ValueError(f"grammar slot {number}: {word!r} is not a non-empty word of the "
                                 f"{alphabet.name} alphabet")
        slots.append(words)
    if not slots:
        raise ValueError("the grammar has no slots")
    return tuple(slots)


def _min_frames(word: str) -> int:
    """Shortest alignment of a word: one frame per character plus a blank between repeated characters."""
    return len(word) + sum(a == b for a, b in itertools.pairwise(word))


@functools.lru_cache(maxsize=8)
def _compile(slots: tuple[tuple[str, ...], ...], alphabet: Alphabet) -> _CompiledGrammar:
    sizes = [len(s) for s in slots]
    # Split where the two trees have the fewest leaves; a one-slot grammar has no join (empty suffix).
    split = len(slots) if len(slots) == 1 else min(
        range(1, len(slots)), key=lambda k: np.prod(sizes[:k]) + np.prod(sizes[k:]))
    prefix, suffix = _Trie(alphabet.num_classes), _Trie(alphabet.num_classes)
    join = [alphabet.space] if split < len(slots) else []
    prefix_leaves = [prefix.add(alphabet.encode(" ".join(words)) + join)
                     for words in itertools.product(*slots[:split])]
    suffix_leaves = [suffix.add(alphabet.encode(" ".join(words))[::-1])
                     for words in itertools.product(*slots[split:])]
    offset = len(prefix.parent)
    parent = np.array(prefix.parent + [p + offset for p in suffix.parent])
    char = np.array(prefix.char + suffix.char)
    return _CompiledGrammar(
        slots=slots, blank=alphabet.blank, split=split, parent=parent, char=char,
        repeat_mask=np.where(char == char[parent], _NEG_INF, 0.0), n_prefix=offset,
        prefix_leaves=np.array(prefix_leaves), suffix_leaves=np.array(suffix_leaves) + offset,
        min_frames=sum(min(_min_frames(w) for w in s) for s in slots) + len(slots) - 1)


def _trie_forward(lp: np.ndarray, g: _CompiledGrammar) -> tuple[np.ndarray, np.ndarray]:
    """CTC forward variables of every tree node at every frame: (ending in its character, in a blank).

    The prefix tree reads frames forward, the suffix tree reads them backward, in the same pass.
    """
    n_frames = len(lp)
    ext = np.concatenate([lp, np.full((n_frames, 1), _NEG_INF)], axis=1)
    pre, suf = slice(0, g.n_prefix), slice(g.n_prefix, None)
    emit = np.concatenate([ext[:, g.char[pre]], ext[::-1, g.char[suf]]], axis=1)
    emit_blank = np.concatenate([np.repeat(lp[:, g.blank, None], g.n_prefix, axis=1),
                                 np.repeat(lp[::-1, g.blank, None], len(g.char) - g.n_prefix, axis=1)], axis=1)
    x = np.full(len(g.char), _NEG_INF)
    b = np.full(len(g.char), _NEG_INF)
    b[[0, g.n_prefix]] = 0.0  # before the first frame, both roots have emitted nothing with probability 1
    x_hist = np.empty((n_frames, len(g.char)))
    b_hist = np.empty((n_frames, len(g.char)))
    for t in range(n_frames):
        new_x = _lse3(x, b[g.parent], x[g.parent] + g.repeat_mask) + emit[t]
        b = _lse2(b, x) + emit_blank[t]
        x = new_x
        x_hist[t] = x
        b_hist[t] = b
    return x_hist, b_hist


def _join(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """log sum_t exp(a[i, t] + b[j, t]) for all i, j, as (scaled sums, log scale).

    Frames are shifted by their own maxima before the matrix product, so the largest entry is at least
    1 and exact; only entries vanishingly small next to it (see _JOIN_EXACT_BELOW) may lose precision.
    """
    m_a = a.max(axis=0)
    m_b = b.max(axis=0)
    both = m_a + m_b
    scale = both.max() if len(both) else _NEG_INF
    if not np.isfinite(scale):
        return np.zeros((len(a), len(b))), _NEG_INF
    weight = np.exp(both - scale)
    scaled_a = np.exp(a - np.maximum(m_a, _FLOOR))
    scaled_b = np.exp(b - np.maximum(m_b, _FLOOR)) * weight
    return scaled_a @ scaled_b.T, float(scale)


def _join_terms(lp: np.ndarray, g: _CompiledGrammar) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame log terms whose log-sum-exp over frames is each sentence's log P.

    a[i, t]: prefix i followed by the joining space, that space emitted at frame t (and not yet left).
    b[j, t]: suffix j emitted by frames t+1 .. T-1, starting with its first character or a blank.
    A one-slot grammar has a single term per word: the word ends (character or blank) at the last frame.
    """
    x_hist, b_hist = _trie_forward(lp, g)
    if g.split == len(g.slots):
        leaves = g.prefix_leaves
        return _lse2(x_hist[-1, leaves], b_hist[-1, leaves])[:, None], np.zeros((1, 1))
    a = x_hist[:-1, g.prefix_leaves].T
    # The suffix tree ran on reversed frames: its value at reversed frame T-2-t covers frames t+1 ...
    leaves = g.suffix_leaves
    b = _lse2(x_hist[:-1, leaves], b_hist[:-1, leaves])[::-1].T
    return a, b


def _check_length(lp: np.ndarray, g: _CompiledGrammar) -> None:
    if len(lp) < g.min_frames:
        raise UndecodableClip(f"{len(lp)} frames cannot hold any sentence of the grammar "
                              f"(it needs at least {g.min_frames})")


def sentence_log_probs(log_probs: np.ndarray, grammar: GrammarSpec = GRID_GRAMMAR,
                       alphabet: Alphabet = GRID) -> np.ndarray:
    """log P(sentence | x) of every sentence, exact, indexed by word position in each slot.

    The result has one axis per slot (shape (4, 4, 4, 25, 10, 4) for GRID), words in grammar order.
    Sentences the fast scaled join cannot resolve (probability below 1e-280 times the best's) are
    recomputed in plain log space, so every entry is exact, including -inf for impossible sentences.
    """
    lp = check_log_probs(log_probs, alphabet)
    g = _compile(_normalise_grammar(grammar, alphabet), alphabet)
    _check_length(lp, g)
    with np.errstate(divide="ignore", under="ignore"):
        a, b = _join_terms(lp, g)
        sums, scale = _join(a, b)
        scores = np.log(sums) + scale
        rows, cols = np.nonzero(sums < _JOIN_EXACT_BELOW)
        for start in range(0, len(rows), 4096):
            r, c = rows[start:start + 4096], cols[start:start + 4096]
            terms = a[r] + b[c]
            m = np.maximum(terms.max(axis=1), _FLOOR)
            scores[r, c] = m + np.log(np.exp(terms - m[:, None]).sum(axis=1))
    return scores.reshape([len(s) for s in g.slots])


def grammar_decode(log_probs: np.ndarray, grammar: GrammarSpec = GRID_GRAMMAR,
                   alphabet: Alphabet = GRID) -> tuple[str, float]:
    """The most probable sentence of the grammar under the CTC output, and its log P(sentence | x).

    Exact argmax of the full CTC probability over all sentences. If the output gives every sentence
    probability 0 (exact zeros), the sentence is chosen with log-probabilities floored at -1000, so one
    is still returned, with log-probability -inf. UndecodableClip when the clip is too short for any sentence.
    """
    lp = check_log_probs(log_probs, alphabet)
    g = _compile(_normalise_grammar(grammar, alphabet), alphabet)
    _check_length(lp, g)
    with np.errstate(divide="ignore", under="ignore"):
        sums, scale = _join(*_join_terms(lp, g))
        # A finite scale means some sentence has positive probability, and then the best sum is >= 1.
        if np.isfinite(scale):
            best_log_prob = float(np.log(sums.max()) + scale)
        else:
            sums, _ = _join(*_join_terms(np.maximum(lp, _ZERO_FLOOR), g))
            best_log_prob = _NEG_INF
    sizes = [len(s) for s in g.slots]
    words = np.unravel_index(np.argmax(sums), sizes)
    return " ".join(slot[w] for slot, w in zip(g.slots, words)), best_log_prob


# ------------------------------------------------------------------------------------------ entry points

def decode(log_probs: np.ndarray, method: str = "greedy", beam_width: int = DEFAULT_BEAM_WIDTH,
           grammar: GrammarSpec = GRID_GRAMMAR, alphabet: Alphabet = GRID, lm: WordSearch | None = None) -> str:
    """Text of one clip's (T, C) log-probabilities with the decoder named by ``method`` (see DECODERS);
    ``lm`` is the word language-model decoder that ``lm`` needs (``utils.text.lm_decoder``)."""
    return decode_scored(log_probs, method, beam_width, grammar, alphabet, lm)[0]


def decode_scored(log_probs: np.ndarray, method: str = "greedy", beam_width: int = DEFAULT_BEAM_WIDTH,
                  grammar: GrammarSpec = GRID_GRAMMAR, alphabet: Alphabet = GRID,
                  lm: WordSearch | None = None) -> tuple[str, float]:
    """``decode``'s text and the score its decoder ranked it by: the best path's log-probability
    (greedy), log P(text | x) (beam, grammar), or that plus the language model's terms (lm)."""
    if method == "greedy":
        lp = check_log_probs(log_probs, alphabet)
        return greedy_decode(lp, alphabet), float(lp.max(axis=1).sum())
    if method == "beam":
        return prefix_beam_search(log_probs, beam_width, alphabet)[0]
    if method == "grammar":
        return grammar_decode(log_probs, grammar, alphabet)
    if method == "lm":
        if lm is None:
            raise ValueError("decoder lm needs a language model: give lm_path=FILE.arpa (utils/build_lm.py makes one)")
        if lm.alphabet != alphabet:
            raise ValueError(f"the language-model decoder spells with the {lm.alphabet.name} alphabet, the network "
                             f"with the {alphabet.name} alphabet")
        return lm.beams(log_probs)[0]
    raise ValueError(f"unknown decoder {method!r}; choose one of {', '.join(DECODERS)}")


def check_batch(log_probs: np.ndarray, lengths: Sequence[int] | np.ndarray | None,
                alphabet: Alphabet = GRID) -> tuple[np.ndarray, list[int]]:
    """A padded batch (N, T, C) and each clip's valid frames (default: all T); ValueError when they do not fit."""
    batch = np.asarray(log_probs)
    if batch.ndim != 3 or batch.shape[2] != alphabet.num_classes:
        raise ValueError(f"expected a batch of shape (N, T, {alphabet.num_classes}) ({alphabet.name} alphabet), "
                         f"got shape {batch.shape}")
    n_clips, n_frames = batch.shape[:2]
    lengths = np.full(n_clips, n_frames) if lengths is None else np.asarray(lengths)
    if lengths.shape != (n_clips,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"expected {n_clips} integer lengths, got {lengths.tolist()}")
    if n_clips and (lengths.min() < 1 or lengths.max() > n_frames):
        raise ValueError(f"lengths must lie in 1..{n_frames}, got {lengths.tolist()}")
    return batch, lengths.tolist()


def decode_batch(log_probs: np.ndarray, lengths: Sequence[int] | np.ndarray | None = None,
                 method: str = "greedy", beam_width: int = DEFAULT_BEAM_WIDTH,
                 grammar: GrammarSpec = GRID_GRAMMAR, alphabet: Alphabet = GRID,
                 lm: WordSearch | None = None) -> list[str]:
    """Texts of a padded batch (N, T, C); ``lengths`` gives each clip's valid frames (default: all T)."""
    if method not in DECODERS:
        raise ValueError(f"unknown decoder {method!r}; choose one of {', '.join(DECODERS)}")
    batch, lengths = check_batch(log_probs, lengths, alphabet)
    return [decode(clip[:n], method, beam_width, grammar, alphabet, lm) for clip, n in zip(batch, lengths)]
