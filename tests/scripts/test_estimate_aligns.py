"""Estimated align files (utils/estimate_aligns.py, utils/video/speech_times.py): the words spread over the span
where the mouth moves, checked against the shared clip's real align file."""
from __future__ import annotations

from pathlib import Path

import pytest

from utils import estimate_aligns
from utils.text.grid_text import FPS, AlignedWord, format_align, parse_align
from utils.video.mouth_extractor import MouthExtractor
from utils.video.speech_times import spread_words


def test_format_align_is_read_back_by_parse_align(tmp_path: Path):
    path = tmp_path / "x.align"
    path.write_text(format_align([(12.25, 19.6, "set"), (19.6, 27.0, "white")], 75))
    assert path.read_text().splitlines() == ["0 12250 sil", "12250 19600 set", "19600 27000 white", "27000 75000 sil"]
    assert parse_align(path) == [AlignedWord("set", 12, 20), AlignedWord("white", 19, 27)]


def test_spread_words_share_the_span_by_characters():
    spans = spread_words(["lay", "zero", "s"], 10.0, 40.0)  # 4, 5 and 3 (a letter said alone: 2, and a space)
    assert spans == [(10.0, 20.0, "lay"), (20.0, 32.5, "zero"), (32.5, 40.0, "s")]


def test_estimated_words_of_the_shared_clip_are_near_its_align_file(grid_dir: Path):
    text = estimate_aligns.estimate_align(grid_dir / "swwp2s.mpg", MouthExtractor(step=1))
    lines = [line.split() for line in text.splitlines()]
    assert lines[0][2] == lines[-1][2] == "sil" and lines[-1][1] == "75000"
    truth = parse_align(grid_dir / "swwp2s.align")
    words = [(int(a) / 1000, int(b) / 1000, w) for a, b, w in lines[1:-1]]
    assert [w for _, _, w in words] == [w.word for w in truth]
    # Speech on frames 12.25-55.25; estimated from the mouth: 15-61 (the mouth closes after the sound).
    assert abs(words[0][0] - 12.25) / FPS < 0.2 and abs(words[-1][1] - 55.25) / FPS < 0.3
    for (start, end, _), word in zip(words, truth):
        assert abs((start + end) / 2 - (word.start + word.end) / 2) / FPS < 0.45


def test_estimate_aligns_writes_what_is_missing_and_names_what_fails(grid_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture):
    src, tgt = tmp_path / "videos", tmp_path / "aligns"
    (src / "s1").mkdir(parents=True)
    (src / "s2").mkdir()
    (src / "s1" / "bbaf2n.mpg").symlink_to(grid_dir / "bbaf2n.mpg")
    (src / "s1" / "swwp2s.mpg").symlink_to(grid_dir / "swwp2s.mpg")
    (src / "s2" / "talk.mpg").symlink_to(grid_dir / "lwbsza.mpg")  # not a GRID name ...
    (src / "s2" / "untold.mpg").symlink_to(grid_dir / "lwbsza.mpg")
    (src / "s2" / "talk.txt").write_text("i'll say it\n")  # ... but a transcript beside it
    (tgt / "s1").mkdir(parents=True)
    (tgt / "s1" / "swwp2s.align").symlink_to(grid_dir / "swwp2s.align")  # a real align file is kept

    assert estimate_aligns.main([f"src_path={src}", f"tgt_path={tgt}", "n_process=1"]) == 1
    err = capsys.readouterr().err
    assert "untold.mpg" in err and "no untold.txt beside it" in err
    assert (tgt / "s1" / "swwp2s.align").resolve() == (grid_dir / "swwp2s.align").resolve()
    assert [w.word for w in parse_align(tgt / "s1" / "bbaf2n.align")] == "bin blue at f two now".split()
    assert [w.word for w in parse_align(tgt / "s2" / "talk.align")] == ["i'll", "say", "it"]
    assert not (tgt / "s2" / "untold.align").exists()

    (tgt / "s1" / "bbaf2n.align").write_text("0 75000 sil\n")  # written before: a rerun leaves it alone
    (src / "s2" / "untold.mpg").unlink()
    assert estimate_aligns.main([f"src_path={src}", f"tgt_path={tgt}", "n_process=1"]) == 0
    assert "3 with an align file already, 0 to estimate" in capsys.readouterr().out
    assert (tgt / "s1" / "bbaf2n.align").read_text() == "0 75000 sil\n"


def test_estimate_aligns_without_videos_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert estimate_aligns.main([f"src_path={tmp_path}", f"tgt_path={tmp_path / 'out'}"]) == 2
    assert "no videos" in capsys.readouterr().err
