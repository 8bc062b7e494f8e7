from pathlib import Path

import pytest

from utils.text import grid_text as gt


def test_alphabet_layout_matches_example_checkpoint():
    assert gt.NUM_CLASSES == 28
    assert gt.BLANK == 27
    assert gt.SPACE == 26
    assert gt.encode("az ") == [0, 25, 26]


def test_encode_decode_round_trip_and_blank_dropped():
    ids = gt.encode("bin blue at f two now")
    assert gt.decode(ids) == "bin blue at f two now"
    assert gt.decode([1, gt.BLANK, 8, -1, -1]) == "bi"


def test_encode_rejects_unknown_character():
    with pytest.raises(ValueError, match="'!'"):
        gt.encode("hi!")


def test_parse_real_align(grid_dir: Path):
    words = gt.parse_align(grid_dir / "swwp2s.align")
    assert gt.align_sentence(words) == "set white with p two soon"
    assert words[0] == gt.AlignedWord("set", 12, 20)  # 12250 rounded down, 19250 up: frames covering the word
    assert words[2] == gt.AlignedWord("with", 27, 31)  # 27250-30500: rounding the end down left 3 frames for 4 letters
    assert words[-1] == gt.AlignedWord("soon", 43, 56)
    assert all(w.end - w.start >= gt.ctc_min_frames(w.word) for w in words)
    gt.check_align_matches_name(words, "swwp2s")


def test_ctc_needs_a_frame_per_character_and_a_blank_between_repeats():
    assert gt.ctc_min_frames("with") == 4
    assert gt.ctc_min_frames("soon") == 5
    assert gt.ctc_min_frames("three") == 6
    assert gt.ctc_min_frames("bin blue at f two now") == 21


def test_parse_align_drops_silence_and_short_pause(tmp_path: Path):
    path = tmp_path / "x.align"
    path.write_text("0 5000 sil\n5000 9000 bin\n9000 9500 sp\n9500 12000 blue\n12000 20000 sil\n")
    assert [w.word for w in gt.parse_align(path)] == ["bin", "blue"]


@pytest.mark.parametrize("text,reason", [("0 10 \n", "expected"), ("a b bin\n", "expected"),
                                         ("10 5 bin\n", "before start"), ("0 10 sil\n", "no words")])
def test_parse_align_errors_name_the_file(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "bad.align"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason) as err:
        gt.parse_align(path)
    assert "bad.align" in str(err.value)


@pytest.mark.parametrize("name,sentence", [
    ("bbaf2n", "bin blue at f two now"),
    ("lwbsza", "lay white by s zero again"),
    ("swwp2s", "set white with p two soon"),
    ("prix9p.mpg", "place red in x nine please"),
    ("s14/lgby7n", "lay green by y seven now"),
])
def test_sentence_from_clip_name(name: str, sentence: str):
    assert gt.sentence_from_clip_name(name) == sentence
    assert gt.is_grid_sentence(sentence)


@pytest.mark.parametrize("name", ["bbaw2n", "xbaf2n", "bbaf2", "bbaf2nn", "bbaf0n"])
def test_invalid_clip_names_are_rejected(name: str):
    with pytest.raises(ValueError, match="not a GRID clip name"):
        gt.sentence_from_clip_name(name)


def test_align_that_disagrees_with_name_is_reported(grid_dir: Path):
    words = gt.parse_align(grid_dir / "swwp2s.align")
    with pytest.raises(ValueError, match="bbaf2n"):
        gt.check_align_matches_name(words, "bbaf2n")


def test_grammar_size_and_validity():
    sizes = [len(slot) for slot in gt.GRAMMAR]
    assert sizes == [4, 4, 4, 25, 10, 4]
    assert sizes[0] * sizes[1] * sizes[2] * sizes[3] * sizes[4] * sizes[5] == 64000
    assert not gt.is_grid_sentence("bin blue at w two now")
    assert not gt.is_grid_sentence("bin blue at f two")
