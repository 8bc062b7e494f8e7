"""The CTC decoders against brute force over alignments and a textbook CTC forward pass."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.decoders import (
    DecoderTiming,
    grid_lm,
    random_alignment,
    random_sentence,
    synthetic_log_probs,
    time_decoders,
)
from bench.decoders import (
    main as bench_main,
)
from utils.text.decoders import (
    DECODERS,
    GRID_GRAMMAR,
    UndecodableClip,
    beam_decode,
    check_log_probs,
    decode,
    decode_batch,
    decode_scored,
    grammar_decode,
    greedy_decode,
    prefix_beam_search,
    sentence_log_probs,
)
from utils.text.grid_text import ALPHABET, BLANK, GRAMMAR, NUM_CLASSES, encode, is_grid_sentence

A, B, SP = encode("a")[0], encode("b")[0], encode(" ")[0]
LM = grid_lm(8)  # the word language-model decoder (tests/text/test_lm.py tests it on its own)


# ---------------------------------------------------------------------------------------- oracles

def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def sparse_log_probs(rng: np.random.Generator, n_frames: int, active: list[int],
                     zeros: float = 0.0) -> np.ndarray:
    """Random distributions over the ``active`` classes only (log 0 = -inf elsewhere).

    With ``zeros`` > 0, that fraction of the active entries is zeroed too (at least one kept per frame).
    """
    lp = np.full((n_frames, NUM_CLASSES), -np.inf)
    logits = 2.0 * rng.standard_normal((n_frames, len(active)))
    drop = rng.random(logits.shape) < zeros
    drop[np.arange(n_frames), np.argmax(logits, axis=1)] = False
    logits[drop] = -np.inf
    lp[:, active] = log_softmax(logits)
    return lp


def collapse(path: tuple[int, ...]) -> str:
    return "".join(ALPHABET[c] for i, c in enumerate(path) if c != BLANK and (i == 0 or path[i - 1] != c))


def brute_force(lp: np.ndarray, active: list[int]) -> dict[str, float]:
    """log P(label) of every label, summing the probability of every path over the active classes."""
    totals: dict[str, float] = {}
    for path in itertools.product(active, repeat=len(lp)):
        score = lp[np.arange(len(lp)), path].sum()
        if np.isfinite(score):
            label = collapse(path)
            totals[label] = np.logaddexp(totals.get(label, -np.inf), score)
    return totals


def reference_log_prob(lp: np.ndarray, text: str) -> float:
    """Textbook CTC forward over the blank-interleaved label (Graves et al. 2006), in log space."""
    ext = np.full(2 * len(text) + 1, BLANK)
    ext[1::2] = encode(text)
    can_skip = np.zeros(len(ext), dtype=bool)
    can_skip[3::2] = ext[3::2] != ext[1:-2:2]
    alpha = np.full(len(ext), -np.inf)
    alpha[:2] = lp[0, ext[:2]]
    with np.errstate(divide="ignore"):
        for t in range(1, len(lp)):
            one = np.concatenate([[-np.inf], alpha[:-1]])
            two = np.where(can_skip, np.concatenate([[-np.inf, -np.inf], alpha[:-2]]), -np.inf)
            alpha = np.logaddexp(np.logaddexp(alpha, one), two) + lp[t, ext]
    return float(np.logaddexp.reduce(alpha[-2:]))


def grammar_sentences(grammar) -> list[str]:
    return [" ".join(words) for words in itertools.product(*grammar)]


def noise(rng: np.random.Generator, n_frames: int = 75, scale: float = 2.0) -> np.ndarray:
    return log_softmax(scale * rng.standard_normal((n_frames, NUM_CLASSES)))


# ------------------------------------------------------------------------------------ greedy and beam

@pytest.mark.parametrize("seed", range(6))
def test_greedy_is_the_collapsed_best_path(seed):
    rng = np.random.default_rng(seed)
    active = [A, B, SP, BLANK]
    lp = sparse_log_probs(rng, 4 + seed % 3, active)
    best_path = max(itertools.product(active, repeat=len(lp)), key=lambda p: lp[np.arange(len(lp)), p].sum())
    assert greedy_decode(lp) == collapse(best_path)


def test_greedy_collapses_repeats_but_keeps_repeats_split_by_blank():
    path = [A, A, BLANK, A, B, B, BLANK, BLANK, SP, B]
    lp = np.log(np.full((len(path), NUM_CLASSES), 0.01))
    lp[np.arange(len(path)), path] = 0.0
    assert greedy_decode(lp) == "aab b"


@pytest.mark.parametrize("seed", range(8))
def test_wide_beam_is_exact(seed):
    rng = np.random.default_rng(100 + seed)
    active = [A, B, BLANK] if seed % 2 else [A, B, SP, BLANK]
    lp = sparse_log_probs(rng, 4 + seed % 3, active, zeros=0.2 * (seed % 3))
    truth = brute_force(lp, active)
    beam = prefix_beam_search(lp, beam_width=2000)
    # Every label with nonzero probability survives, each with its exact probability.
    assert {text for text, _ in beam} == set(truth)
    for text, score in beam:
        assert score == pytest.approx(truth[text], abs=1e-10)
    assert beam[0][0] == max(truth, key=truth.get)
    assert beam_decode(lp, 2000) == beam[0][0]


def test_beam_beats_greedy_when_paths_share_a_label():
    # Per frame: blank 0.6, "a" 0.4. Greedy reads "" (0.36); "a" has 0.4*0.6 + 0.6*0.4 + 0.4*0.4 = 0.64.
    lp = np.full((2, NUM_CLASSES), -np.inf)
    lp[:, BLANK], lp[:, A] = np.log(0.6), np.log(0.4)
    assert greedy_decode(lp) == ""
    (text, score), (other, other_score) = prefix_beam_search(lp, beam_width=5)
    assert (text, other) == ("a", "")
    assert score == pytest.approx(np.log(0.64))
    assert other_score == pytest.approx(np.log(0.36))


def test_narrow_beam_on_real_sized_noise_keeps_its_scores_honest():
    lp = noise(np.random.default_rng(7))
    beam = prefix_beam_search(lp, beam_width=5)
    assert 1 <= len(beam) <= 5
    scores = [s for _, s in beam]
    assert scores == sorted(scores, reverse=True)
    # A pruned beam only ever under-counts a prefix's alignments.
    for text, score in beam:
        assert score <= reference_log_prob(lp, text) + 1e-9


def test_beam_rejects_zero_width():
    with pytest.raises(ValueError, match="beam width"):
        prefix_beam_search(noise(np.random.default_rng(0), 5), beam_width=0)


# ------------------------------------------------------------------------------------------- grammar

TINY_GRAMMARS = {
    "one slot": (("ab", "b", "aab", "bb"),),
    "two slots": (("ab", "b"), ("a", "ba", "aab")),
    "three slots": (("ab", "b"), ("a", "ba", "aab"), ("b", "ab")),
    "four slots": (("a", "bb"), ("b",), ("ab", "ba"), ("a", "b", "aa")),
}


@pytest.mark.parametrize("name", TINY_GRAMMARS)
@pytest.mark.parametrize("seed", range(3))
def test_grammar_scores_equal_reference_forward_for_every_sentence(name, seed):
    grammar = TINY_GRAMMARS[name]
    rng = np.random.default_rng(200 + seed)
    lp = sparse_log_probs(rng, 12 + 3 * seed, [A, B, SP, BLANK], zeros=0.15 * seed)
    scores = sentence_log_probs(lp, grammar)
    assert scores.shape == tuple(len(slot) for slot in grammar)
    sentences = grammar_sentences(grammar)
    reference = np.array([reference_log_prob(lp, s) for s in sentences])
    np.testing.assert_allclose(scores.ravel(), reference, rtol=1e-10, atol=1e-10)
    best, best_score = grammar_decode(lp, grammar)
    assert best == sentences[int(np.argmax(reference))]
    assert best_score == pytest.approx(reference.max(), abs=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_grammar_scores_equal_brute_force_over_alignments(seed):
    grammar = (("b", "ab"), ("a", "ba"))
    active = [A, B, SP, BLANK]
    lp = sparse_log_probs(np.random.default_rng(300 + seed), 6 + seed % 2, active)
    truth = brute_force(lp, active)
    scores = sentence_log_probs(lp, grammar).ravel()
    for sentence, score in zip(grammar_sentences(grammar), scores):
        assert score == pytest.approx(truth.get(sentence, -np.inf), abs=1e-10)


def test_grammar_accepts_code_mappings_and_the_grid_grammar_is_its_default():
    assert sentence_log_probs(noise(np.random.default_rng(1)), GRAMMAR).shape == (4, 4, 4, 25, 10, 4)
    assert len(grammar_sentences(GRID_GRAMMAR)) == 64_000


@pytest.mark.parametrize("seed", range(3))
def test_grid_scores_match_reference_on_a_sample_and_the_argmax(seed):
    rng = np.random.default_rng(400 + seed)
    lp = noise(rng, scale=1.0 + seed)
    scores = sentence_log_probs(lp)
    best, best_score = grammar_decode(lp)
    sizes = scores.shape
    for flat in rng.choice(scores.size, 25, replace=False):
        index = np.unravel_index(flat, sizes)
        sentence = " ".join(slot[i] for slot, i in zip(GRID_GRAMMAR, index))
        assert scores[index] == pytest.approx(reference_log_prob(lp, sentence), rel=1e-10)
    # The decoder's sentence is its table's argmax and has the reference probability it reports...
    top = np.unravel_index(np.argmax(scores), sizes)
    assert best == " ".join(slot[i] for slot, i in zip(GRID_GRAMMAR, top))
    assert best_score == pytest.approx(reference_log_prob(lp, best), rel=1e-10)
    # ... and no sentence one word away beats it under the reference.
    words = best.split()
    for slot_number, slot in enumerate(GRID_GRAMMAR):
        for word in slot:
            neighbour = " ".join(words[:slot_number] + [word] + words[slot_number + 1:])
            assert reference_log_prob(lp, neighbour) <= best_score + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_grammar_decoder_returns_a_valid_sentence_on_noise(seed):
    rng = np.random.default_rng(500 + seed)
    sentence, score = grammar_decode(noise(rng, n_frames=40 + 20 * seed, scale=0.5 + seed))
    assert is_grid_sentence(sentence)
    assert np.isfinite(score)


def test_grammar_decoder_on_a_flat_output():
    sentence, score = grammar_decode(np.full((75, NUM_CLASSES), -np.log(NUM_CLASSES)))
    assert is_grid_sentence(sentence)
    assert score == pytest.approx(reference_log_prob(np.full((75, NUM_CLASSES), -np.log(NUM_CLASSES)),
                                                     sentence))


@pytest.mark.parametrize("seed", range(5))
def test_grammar_decoder_finds_the_spoken_sentence_under_clear_evidence(seed):
    rng = np.random.default_rng(600 + seed)
    target = random_sentence(rng)
    lp = synthetic_log_probs(target, 75, rng, peak=6.0, noise=1.0)
    assert grammar_decode(lp)[0] == target
    assert decode(lp, "grammar") == target


def test_grammar_decoder_fixes_a_word_outside_the_grammar():
    rng = np.random.default_rng(8)
    lp = synthetic_log_probs("bin blue at f two nox", 75, rng, peak=8.0, noise=0.5)
    assert greedy_decode(lp) == "bin blue at f two nox"
    assert grammar_decode(lp)[0] == "bin blue at f two now"


# -------------------------------------------------------------------------------- numerical stability

def one_hot_log_probs(path: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.eye(NUM_CLASSES)[path])


@pytest.mark.parametrize("seed", range(3))
def test_exact_zeros_give_certainty_not_nan(seed):
    rng = np.random.default_rng(700 + seed)
    target = random_sentence(rng)
    lp = one_hot_log_probs(random_alignment(target, 75, rng))
    assert greedy_decode(lp) == target
    (text, score), = prefix_beam_search(lp)
    assert (text, score) == (target, pytest.approx(0.0, abs=1e-12))
    sentence, score = grammar_decode(lp)
    assert (sentence, score) == (target, pytest.approx(0.0, abs=1e-12))
    scores = sentence_log_probs(lp)
    assert not np.isnan(scores).any()
    assert (np.isfinite(scores)).sum() == 1


def test_long_and_very_peaked_output_stays_exact():
    rng = np.random.default_rng(9)
    target = random_sentence(rng)
    lp = synthetic_log_probs(target, 2000, rng, peak=60.0, noise=1.0).astype(np.float32)
    assert greedy_decode(lp) == target
    assert beam_decode(lp, 10) == target
    sentence, score = grammar_decode(lp)
    assert sentence == target
    assert score == pytest.approx(reference_log_prob(lp.astype(np.float64), target), rel=1e-9, abs=1e-9)


def test_sentences_far_below_the_best_are_still_scored_exactly():
    rng = np.random.default_rng(10)
    target = "bin blue at a one again"
    lp = synthetic_log_probs(target, 75, rng, peak=60.0, noise=1.0)
    scores = sentence_log_probs(lp)
    far = "set white with z nine soon"
    index = tuple(slot.index(w) for slot, w in zip(GRID_GRAMMAR, far.split()))
    # exp(-1000) relative to the best underflows the scaled join; the log-space fix-up recovers it.
    assert scores[index] < scores.max() - 1000
    assert scores[index] == pytest.approx(reference_log_prob(lp, far), rel=1e-10)
    assert np.unravel_index(np.argmax(scores), scores.shape) == tuple(
        slot.index(w) for slot, w in zip(GRID_GRAMMAR, target.split()))


def test_impossible_output_still_names_the_closest_sentence():
    # Certain of a word outside the grammar: every sentence has probability exactly 0.
    lp = one_hot_log_probs(random_alignment("bin blue at f two nox", 75, np.random.default_rng(3)))
    assert grammar_decode(lp) == ("bin blue at f two now", -np.inf)
    assert np.isneginf(sentence_log_probs(lp)).all()


def test_too_short_a_clip_is_an_error():
    with pytest.raises(UndecodableClip, match=r"19 frames cannot hold any sentence .*needs at least 20\)"):
        grammar_decode(noise(np.random.default_rng(0), n_frames=19))
    grammar_decode(noise(np.random.default_rng(0), n_frames=20))  # "bin red at a six now" + 5 spaces


# ------------------------------------------------------------------------------- input and entry points

@pytest.mark.parametrize("bad, reason", [
    (np.zeros((75, 27)), "shape"),
    (np.zeros((0, NUM_CLASSES)), "shape"),
    (np.zeros((2, 75, NUM_CLASSES)), "shape"),
    (np.full((3, NUM_CLASSES), np.nan), "NaN"),
    (np.full((3, NUM_CLASSES), np.inf), r"\+inf"),
])
def test_bad_matrices_are_rejected(bad, reason):
    # Values no network should give concern that clip alone (UndecodableClip); a wrong shape does not.
    with pytest.raises(UndecodableClip if reason in ("NaN", r"\+inf") else ValueError, match=reason) as caught:
        check_log_probs(bad)
    assert isinstance(caught.value, UndecodableClip) == (reason != "shape")
    for method in DECODERS:
        with pytest.raises(ValueError, match=reason):
            decode(bad, method, lm=LM)


@pytest.mark.parametrize("grammar, reason", [
    ((), "no slots"),
    ((("bin",), ()), "slot 2 has no words"),
    ((("bin", "two words"),), "slot 1"),
    ((("",),), "slot 1"),
    ((("Bin",),), "not in the GRID alphabet"),
])
def test_bad_grammars_are_rejected(grammar, reason):
    with pytest.raises(ValueError, match=reason):
        grammar_decode(noise(np.random.default_rng(0), 30), grammar)


def test_decode_dispatches_and_rejects_unknown_methods():
    lp = synthetic_log_probs("lay red by e five soon", 75, np.random.default_rng(4), peak=8.0)
    assert {m: decode(lp, m, lm=LM) for m in DECODERS} == dict.fromkeys(DECODERS, "lay red by e five soon")
    assert decode(lp, "grammar", grammar=(("lay", "red"),) * 2) in {"lay lay", "lay red", "red lay", "red red"}
    with pytest.raises(ValueError, match="greedy, beam, grammar"):
        decode(lp, "viterbi")


@pytest.mark.parametrize("method", DECODERS)
def test_decode_scored_gives_the_text_and_the_score_its_decoder_ranked_it_by(method):
    rng = np.random.default_rng(5)
    lp = synthetic_log_probs("bin blue at f two now", 75, rng, peak=3.0) + rng.normal(0, 0.5, (75, NUM_CLASSES))
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    text, score = decode_scored(lp, method, beam_width=8, lm=LM)
    assert text == decode(lp, method, beam_width=8, lm=LM)
    expected = {"greedy": lp.max(axis=1).sum(), "beam": prefix_beam_search(lp, 8)[0][1],
                "grammar": grammar_decode(lp)[1], "lm": LM.beams(lp)[0][1]}[method]
    assert score == pytest.approx(expected) and np.isfinite(score)
    # a worse reading of the same text scores lower
    blurred = np.log(0.5 * np.exp(lp) + 0.5 / NUM_CLASSES)
    assert decode_scored(blurred, method, beam_width=8, lm=LM)[1] < score


@pytest.mark.parametrize("method", DECODERS)
def test_batch_decoding_respects_lengths(method):
    rng = np.random.default_rng(11)
    targets = [random_sentence(rng) for _ in range(3)]
    lengths = [75, 60, 50]
    batch = np.stack([noise(rng, 75) for _ in targets])
    for i, (target, n) in enumerate(zip(targets, lengths)):
        batch[i, :n] = synthetic_log_probs(target, n, rng, peak=8.0)
    assert decode_batch(batch, lengths, method=method, beam_width=8, lm=LM) == targets
    assert decode_batch(batch.astype(np.float32), np.array(lengths), method, lm=LM) == \
        [decode(clip[:n], method, lm=LM) for clip, n in zip(batch, lengths)]
    assert decode_batch(batch[:1], method=method, lm=LM) == [decode(batch[0], method, lm=LM)]


@pytest.mark.parametrize("lengths, reason", [
    ([75, 75], "3 integer lengths, got \\[75, 75\\]"),
    ([75.0, 75.0, 75.0], "integer lengths"),
    ([75, 0, 10], "1..75"),
    ([75, 76, 10], "1..75"),
])
def test_batch_rejects_bad_lengths(lengths, reason):
    with pytest.raises(ValueError, match=reason):
        decode_batch(np.zeros((3, 75, NUM_CLASSES)), lengths)


def test_batch_rejects_bad_shapes_and_methods():
    with pytest.raises(ValueError, match="batch of shape"):
        decode_batch(np.zeros((75, NUM_CLASSES)))
    with pytest.raises(ValueError, match="unknown decoder"):
        decode_batch(np.zeros((1, 75, NUM_CLASSES)), method="best")


# ---------------------------------------------------------------------------------------------- bench

def test_random_alignment_spells_the_sentence_in_the_asked_frames():
    rng = np.random.default_rng(12)
    for n_frames in (28, 75):
        path = random_alignment("bin green at e three soon", n_frames, rng)
        assert len(path) == n_frames and collapse(tuple(path)) == "bin green at e three soon"
    with pytest.raises(ValueError, match="needs 28 frames"):
        random_alignment("bin green at e three soon", 27, rng)


def test_time_decoders_reports_every_method():
    rng = np.random.default_rng(13)
    clips = [synthetic_log_probs(random_sentence(rng), 75, rng) for _ in range(2)]
    timings = time_decoders(clips, methods=("greedy", "grammar"), repeats=2)
    assert list(timings) == ["greedy", "grammar"]
    for timing in timings.values():
        assert isinstance(timing, DecoderTiming) and len(timing.texts) == 2
        assert 0 < timing.median_ms <= timing.max_ms and timing.mean_ms <= timing.max_ms
    with pytest.raises(ValueError, match="no clips"):
        time_decoders([])
    with pytest.raises(ValueError, match="repeats"):
        time_decoders(clips, repeats=0)


def test_bench_command_line(capsys):
    report = bench_main(["--clips", "2", "--frames", "40", "--beam-width", "4", "--repeats", "1",
                         "--kinds", "peaked,random", "decoders=greedy,grammar", "--seed", "5"])
    out = capsys.readouterr().out
    assert list(report) == ["peaked", "random"]
    assert all(list(r) == ["greedy", "grammar"] for r in report.values())
    assert "T=40, beam width 4" in out and "peaked   grammar" in out and "random   greedy" in out
    for bad in (["--kinds", "sharp"], ["--decoders", "viterbi"], ["--clips", "0"], ["--frames", "10"]):
        with pytest.raises(SystemExit):
            bench_main(bad)
