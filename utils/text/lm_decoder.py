"""CTC prefix beam search with a word n-gram language model and a lexicon (``decoder=lm``).

The search is ``utils.text.decoders.prefix_beam_search`` with words: every prefix is a sequence of
lexicon words and a partial word that is the beginning of at least one of them (a trie walk), so the
output never holds a non-word. Each prefix is ranked by

    log P_ctc(prefix | x) + lm_weight * ln P_lm(words) + word_bonus * len(words) + lookahead,

where a word's language-model term is added when the space after it (or the end of the clip) completes
it, ``word_bonus`` offsets the language model's preference for fewer words, and the lookahead gives a
partial word the unigram log-probability of its best completion (times ``lm_weight``), so that a prefix
that has just paid for a word is not ranked below one that has not yet. The defaults, ``lm_weight``
0.5 and ``word_bonus`` 1.0, are pyctcdecode's (alpha and beta; its scores are natural logarithms too).

Per frame, every beam entry times every character is scored as one (W, C) array, as in the plain beam
search: the lexicon is a (nodes, C) table of child nodes (-1 where a character cannot follow), the space
leading back to the root from word ends only, so the constraint is one lookup. Language-model queries
are cached per (context, word); the Python work per frame is the W prefixes kept.

Why not a library: pyctcdecode (the usual choice, with KenLM) pins ``numpy<2`` and needs ``hypothesis``
at run time, so it cannot install beside the reader of requirements-infer.txt (NumPy 2); KenLM's Python
module has no wheels and does not build on Python 3.13; flashlight-text has no Python 3.13 wheel. The
model file is ARPA, which all of them read (``utils/text/language_model.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.text.alphabet import GRID, Alphabet
from utils.text.decoders import DEFAULT_BEAM_WIDTH, CTCBeam, best_of, check_log_probs
from utils.text.language_model import BOS, EOS, NgramModel, read_arpa

DEFAULT_LM_WEIGHT = 0.5
DEFAULT_WORD_BONUS = 1.0
_NEG_INF = -np.inf


class Lexicon:
    """The words as a trie over class ids: ``child[node, c]`` is the node after character ``c`` (-1 when no
    word continues so); the space leads from a word's last node back to the root (node 0)."""

    def __init__(self, words: Sequence[str], alphabet: Alphabet, lookahead: dict[str, float]) -> None:
        n_chars = alphabet.blank
        children: list[dict[int, int]] = [{}]
        self.word_of: list[str | None] = [None]
        best = [_NEG_INF]
        for word in words:
            node = 0
            for c in alphabet.encode(word):
                nxt = children[node].get(c)
                if nxt is None:
                    nxt = len(children)
                    children[node][c] = nxt
                    children.append({})
                    self.word_of.append(None)
                    best.append(_NEG_INF)
                node = nxt
                best[node] = max(best[node], lookahead[word])
            self.word_of[node] = word
        self.child = np.full((len(children), n_chars), -1, np.int64)
        for node, followers in enumerate(children):
            for c, nxt in followers.items():
                self.child[node, c] = nxt
            if self.word_of[node] is not None:
                self.child[node, alphabet.space] = 0
        self.best = np.array(best)
        self.best[0] = 0.0


class LMDecoder:
    """Decodes (T, C) log-probabilities into lexicon words with a word n-gram model (see the module doc)."""

    def __init__(self, lm: NgramModel, alphabet: Alphabet = GRID, beam_width: int = DEFAULT_BEAM_WIDTH,
                 lm_weight: float = DEFAULT_LM_WEIGHT, word_bonus: float = DEFAULT_WORD_BONUS,
                 source: str = "<in memory>") -> None:
        if beam_width < 1:
            raise ValueError(f"beam width must be at least 1, got {beam_width}")
        self.lm, self.alphabet, self.beam_width = lm, alphabet, beam_width
        self.lm_weight, self.word_bonus, self.source = lm_weight, word_bonus, source
        words = [w for w in lm.vocabulary if alphabet.fits(w) and " " not in w]
        self.skipped = len(lm.vocabulary) - len(words)  # words the alphabet cannot spell
        if not words:
            raise ValueError(f"{source}: no word of the language model can be spelled in the {alphabet.name} "
                             f"alphabet ({alphabet.characters!r})")
        self.lexicon = Lexicon(words, alphabet, {w: lm_weight * lm.log_prob((), w) for w in words})
        self._cache: dict[tuple[tuple[str, ...], str], float] = {}

    def describe(self) -> str:
        return (f"lm ({self.source}, order {self.lm.order}, {len(self.lm.vocabulary) - self.skipped} words; "
                f"lm_weight {self.lm_weight}, word_bonus {self.word_bonus}, beam width {self.beam_width})")

    def _word_score(self, words: tuple[str, ...], word: str) -> float:
        """lm_weight * ln P(word | the words before) + word_bonus (</s> gets no bonus)."""
        context = (BOS, *words)[-(self.lm.order - 1):] if self.lm.order > 1 else ()
        key = (context, word)
        score = self._cache.get(key)
        if score is None:
            score = self.lm_weight * self.lm.log_prob(context, word) + (self.word_bonus if word != EOS else 0.0)
            self._cache[key] = score
        return score

    def beams(self, log_probs: np.ndarray) -> list[tuple[str, float]]:
        """The final beam as (text, score), best first; prefixes ending inside a non-word come last, at -inf."""
        lp = check_log_probs(log_probs, self.alphabet)
        n_chars, space = self.alphabet.blank, self.alphabet.space
        child, best, word_of = self.lexicon.child, self.lexicon.best, self.lexicon.word_of
        chars = np.concatenate([lp[:, :n_chars], np.full((len(lp), 1), _NEG_INF)], axis=1)
        blank = lp[:, self.alphabet.blank]
        is_space = np.arange(n_chars) == space

        beam = CTCBeam(n_chars)
        words: list[tuple[str, ...]] = [()]
        node = np.array([0])
        lm, look = np.array([0.0]), np.array([0.0])
        for t in range(len(lp)):
            nxt = child[node]  # (W, C): the lexicon node each extension leads to, -1 where none
            stay_blank, stay_char, ext = beam.scores(chars[t], blank[t], allowed=nxt >= 0)
            ends = np.array([self._word_score(words[i], word_of[n]) if word_of[n] is not None else _NEG_INF
                             for i, n in enumerate(node.tolist())])
            gain = np.where(is_space[None, :], ends[:, None], best[np.maximum(nxt, 0)])  # lm / lookahead after
            stay_scores = np.logaddexp(stay_blank, stay_char) + lm + look
            ext_scores = ext + lm[:, None] + gain
            keep = best_of(np.concatenate([stay_scores, ext_scores.ravel()]), self.beam_width)
            parent, ch, is_ext = beam.advance(keep, stay_blank, stay_char, ext)
            grown = is_ext & (ch == space)
            words = [words[s] + (word_of[node[s]],) if g else words[s] for s, g in zip(parent.tolist(), grown.tolist())]
            new_node = np.where(is_ext, nxt[parent, ch], node[parent])
            lm = np.where(grown, lm[parent] + ends[parent], lm[parent])
            look = np.where(is_ext, np.where(ch == space, 0.0, best[np.maximum(new_node, 0)]), look[parent])
            node = new_node

        prefixes, p_blank, p_char = beam.prefixes, beam.p_blank, beam.p_char
        finals = []
        for i, prefix in enumerate(prefixes):
            score = float(np.logaddexp(p_blank[i], p_char[i]) + lm[i])
            done = words[i]
            if node[i] != 0:
                word = word_of[node[i]]
                if word is None:
                    finals.append((self.alphabet.decode(prefix), _NEG_INF))
                    continue
                score += self._word_score(done, word)
                done = (*done, word)
            finals.append((" ".join(done), score + self._word_score(done, EOS)))
        finals.sort(key=lambda item: -item[1])
        return finals

    def decode(self, log_probs: np.ndarray) -> str:
        """The best complete sentence of lexicon words; the best prefix as it stands when none is complete."""
        return self.beams(log_probs)[0][0]


def load_lm_decoder(path: str | Path, alphabet: Alphabet = GRID, beam_width: int = DEFAULT_BEAM_WIDTH,
                    lm_weight: float = DEFAULT_LM_WEIGHT, word_bonus: float = DEFAULT_WORD_BONUS) -> LMDecoder:
    """The decoder over the ARPA file ``path``; FileNotFoundError or ValueError naming the file."""
    return LMDecoder(read_arpa(path), alphabet, beam_width, lm_weight, word_bonus, str(path))


def lm_decoder_for(method: str, lm_path: str | Path | None, alphabet: Alphabet, beam_width: int = DEFAULT_BEAM_WIDTH,
                   lm_weight: float | None = None, word_bonus: float | None = None) -> LMDecoder | None:
    """The language-model decoder when ``method`` is ``lm`` (None otherwise); ValueError when no ``lm_path``
    is given, and the errors of ``load_lm_decoder`` for a missing or unreadable file."""
    if method != "lm":
        return None
    if not lm_path:
        raise ValueError("decoder lm needs a language model: give lm_path=FILE.arpa (utils/build_lm.py makes one)")
    return load_lm_decoder(lm_path, alphabet, beam_width,
                           DEFAULT_LM_WEIGHT if lm_weight is None else lm_weight,
                           DEFAULT_WORD_BONUS if word_bonus is None else word_bonus)
