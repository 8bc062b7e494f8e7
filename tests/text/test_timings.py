"""Word timings from a forced CTC alignment: exact on constructed outputs, optimal against brute force."""
import itertools
from pathlib import Path

import numpy as np
import pytest

from utils.text.decoders import decode
from utils.text.grid_text import ALPHABET, BLANK, FPS, NUM_CLASSES, align_sentence, encode, parse_align
from utils.text.timings import WordTiming, forced_alignment, word_timings


def _peaky(path: list[str], confident: float = 0.99, alphabet: str = ALPHABET) -> np.ndarray:
    """Log-probabilities putting ``confident`` on one class per frame ('-' = blank) and the rest spread evenly."""
    classes = len(alphabet) + 1
    lp = np.full((len(path), classes), np.log((1 - confident) / (classes - 1)))
    for t, c in enumerate(path):
        lp[t, len(alphabet) if c == "-" else alphabet.index(c)] = np.log(confident)
    return lp


def test_words_span_the_frames_of_their_characters():
    lp = _peaky(list("--ab-_-cc--d--"), alphabet="abcd_")
    words = word_timings(lp, "ab_c", fps=25, alphabet="abcd_")  # '_' is not a space: one word
    assert words == [WordTiming("ab_c", 2 / 25, 9 / 25, pytest.approx(0.99))]
    lp = _peaky(list("--ab- -cc--")) # GRID alphabet
    words = word_timings(lp, "ab c", fps=25, offset=10.0)
    assert [w.word for w in words] == ["ab", "c"]
    assert words[0].start == pytest.approx(10 + 2 / 25) and words[0].end == pytest.approx(10 + 4 / 25)
    assert words[1].start == pytest.approx(10 + 7 / 25) and words[1].end == pytest.approx(10 + 9 / 25)
    assert all(w.confidence == pytest.approx(0.99) for w in words)


def test_spaces_anywhere_are_aligned_and_only_words_are_timed():
    # A greedy read can drop a word and keep both its spaces ("bin blue at  two now").
    lp = _peaky(list("- ab- -  -c -"))
    words = word_timings(lp, " ab  c ", fps=25)
    assert [(w.word, round(w.start * 25), round(w.end * 25)) for w in words] == [("ab", 2, 4), ("c", 10, 11)]


def test_frame_rate_scales_the_times():
    lp = _peaky(list("-ab--cd-"))
    at25, at50 = word_timings(lp, "abcd", 25.0), word_timings(lp, "abcd", 50.0)
    assert at25[0].start == pytest.approx(2 * at50[0].start) and at25[0].end == pytest.approx(2 * at50[0].end)


def test_confidence_drops_when_a_character_is_unlikely():
    lp = _peaky(list("-ab- -cd-"))
    sure = word_timings(lp, "ab cd", 25)
    lp[7] = np.log(np.full(NUM_CLASSES, 1 / NUM_CLASSES))  # 'd' is no more likely than anything else
    unsure = word_timings(lp, "ab cd", 25)
    assert unsure[0].confidence == pytest.approx(sure[0].confidence)
    assert unsure[1].confidence < 0.5 * sure[1].confidence
    assert all(0.0 <= w.confidence <= 1.0 for w in sure + unsure)


def test_the_given_text_is_aligned_even_where_the_greedy_path_says_otherwise():
    # The output prefers "bat" but the (say, grammar) decoder chose "bit": the 'i' still gets a frame.
    lp = _peaky(list("-b-a-t-"), confident=0.6)
    words = word_timings(lp, "bit", 25)
    assert words[0].start == pytest.approx(1 / 25) and words[0].end == pytest.approx(6 / 25)
    assert words[0].confidence < word_timings(lp, "bat", 25)[0].confidence


def _path_score(lp: np.ndarray, states: np.ndarray, labels: np.ndarray, blank: int) -> float:
    path = np.where(states >= 0, labels[np.maximum(states, 0)], blank)
    return float(lp[np.arange(len(lp)), path].sum())


def test_viterbi_finds_the_best_alignment_of_all():
    rng = np.random.default_rng(0)
    alphabet, blank = "ab ", 3
    for text, frames in [("ab", 5), ("aa", 4), ("a b", 6), ("ba a", 7)]:
        labels = np.array(["ab ".index(c) for c in text])
        lp = np.log(rng.dirichlet(np.ones(4), frames))
        best = -np.inf
        for path in itertools.product(range(4), repeat=frames):  # every frame labelling, collapsed CTC-wise
            collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or path[i - 1] != c)]
            if collapsed == labels.tolist():
                best = max(best, float(lp[np.arange(frames), path].sum()))
        states = forced_alignment(lp, labels, blank)
        assert _path_score(lp, states, labels, blank) == pytest.approx(best)
        # the path spells the text: each character's frames are contiguous and in order
        emitted = states[states >= 0]
        assert np.all(np.diff(emitted) >= 0) and set(emitted.tolist()) == set(range(len(text)))
        words = word_timings(lp, text, 10.0, alphabet=alphabet)
        assert [w.word for w in words] == text.split()
        assert all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_repeated_letters_need_a_blank_between():
    lp = _peaky(list("o-o"))
    assert forced_alignment(lp, np.array(encode("oo")), BLANK).tolist() == [0, -1, 1]
    with pytest.raises(ValueError, match="cannot be aligned to 2 frames: CTC needs at least 3"):
        word_timings(lp[:2], "oo", 25)


def test_text_longer_than_the_frames_allow_is_a_clear_error():
    with pytest.raises(ValueError, match="25 characters .* cannot be aligned to 10 frames"):
        word_timings(_peaky(["-"] * 10), "set white with p two soon", 25)


def test_empty_text_has_no_words():
    lp = _peaky(["-"] * 5)
    assert word_timings(lp, "", 25) == [] and word_timings(lp, "   ", 25) == []
    assert word_timings(np.zeros((0, NUM_CLASSES)), "", 25) == []


def test_exact_zeros_still_align():
    lp = np.full((6, NUM_CLASSES), -np.inf)
    lp[:, BLANK] = 0.0  # the output is certain of silence, yet the decoder's text is "a"
    words = word_timings(lp, "a", 25)
    assert len(words) == 1 and words[0].end - words[0].start == pytest.approx(1 / 25)
    assert words[0].confidence == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"log_probs": np.zeros((5, 27))}, "shape"),
    ({"log_probs": np.full((5, NUM_CLASSES), np.nan)}, "NaN"),
    ({"text": "ab1"}, "'1' in 'ab1' is not in the alphabet"),
    ({"fps": 0.0}, "fps must be positive"),
])
def test_bad_input_is_a_clear_error(kwargs: dict, message: str):
    args = {"log_probs": _peaky(["-"] * 5), "text": "ab", "fps": 25.0} | kwargs
    with pytest.raises(ValueError, match=message):
        word_timings(**args)


def real_log_probs(model: Path, clip: Path) -> np.ndarray:
    """The trained network's (T, 28) output on one clip of mouth crops, normalised as in training."""
    import mxnet as mx

    from data_loader import Batchify
    from model.checkpoint import load_lipnet
    from utils.data.clip_store import load_clip

    loaded = load_lipnet(model, mx.cpu())
    frames = load_clip(clip)
    data = np.empty((1, 3) + frames.shape[:3], np.float32)
    Batchify(loaded.mean, loaded.std).normalise_into(frames, data[0])
    return loaded.net(mx.nd.array(data)).asnumpy()[0]


@pytest.mark.parametrize("decoder", ["greedy", "grammar"])
def test_words_are_timed_where_the_align_file_says_they_were_said(real_model: dict[str, Path], grid_dir: Path,
                                                                   decoder: str):
    """The acceptance check of word timings on a real clip: each word overlaps its interval in the align
    file and their centres are within 0.25 s."""
    truth = parse_align(grid_dir / "swwp2s.align")
    log_probs = real_log_probs(real_model["model"], real_model["crops"] / "s1" / "swwp2s.npz")
    text = decode(log_probs, decoder)
    assert text == align_sentence(truth)
    words = word_timings(log_probs, text, fps=FPS, offset=0.0)
    assert [w.word for w in words] == text.split()
    for word, said in zip(words, truth):
        start, end = said.start / FPS, said.end / FPS  # align files count frames at 25 fps
        assert word.start < end and start < word.end, f"{word} does not overlap {said.word} at {start}-{end} s"
        assert abs((word.start + word.end) / 2 - (start + end) / 2) <= 0.25, f"{word} vs {start}-{end} s"
        assert 0.0 < word.confidence <= 1.0
