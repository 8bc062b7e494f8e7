import pytest

from utils.scoring.sentence_metrics import ErrorRates, GroupedErrorRates, cer, wer


def test_hand_computed_single_sentence():
    ref, hyp = "bin blue at f two now", "bin blue at s two now"
    assert cer([ref], [hyp]) == pytest.approx(1 / 21)
    assert wer([ref], [hyp]) == pytest.approx(1 / 6)


def test_insertions_and_deletions():
    # "place red" -> "place" : one word deleted; 4 characters (" red") deleted out of 9
    assert wer(["place red"], ["place"]) == pytest.approx(1 / 2)
    assert cer(["place red"], ["place"]) == pytest.approx(4 / 9)
    assert wer(["set"], ["set set set"]) == pytest.approx(2.0)


def test_corpus_rates_are_ratios_of_sums_not_means():
    refs = ["a b", "c d e f"]
    hyps = ["a x", "c d e f"]
    # one word error over six reference words (a mean of per-sentence rates would give 0.25)
    assert wer(refs, hyps) == pytest.approx(1 / 6)
    assert cer(refs, hyps) == pytest.approx(1 / 10)


def test_perfect_and_empty():
    assert cer(["set white"], ["set white"]) == 0.0
    assert ErrorRates().wer == 0.0
    with pytest.raises(ValueError):
        wer(["a"], [])


def test_grouped_rates_per_speaker():
    grouped = GroupedErrorRates()
    grouped.add("s1", "bin blue", "bin blue")
    grouped.add("s2", "lay red", "lay green")
    assert grouped.groups["s1"].wer == 0.0
    assert grouped.groups["s2"].wer == pytest.approx(0.5)
    assert grouped.overall.wer == pytest.approx(0.25)


def test_mean_of_per_clip_rates_is_reported_beside_the_corpus_rates():
    rates = ErrorRates.of(["a b", "c d e f"], ["a x", "c d e f"])
    assert rates.wer == pytest.approx(1 / 6)  # corpus: errors over words
    assert rates.mean_clip_wer == pytest.approx((1 / 2 + 0) / 2)  # LipNet-PyTorch's: mean of each clip's rate
    assert rates.mean_clip_cer == pytest.approx((1 / 3 + 0) / 2)
    merged = ErrorRates()
    merged.merge(ErrorRates.of(["a b"], ["a x"]))
    merged.merge(ErrorRates.of(["c d e f"], ["c d e f"]))
    assert merged == rates
    assert ErrorRates().mean_clip_cer == 0.0
