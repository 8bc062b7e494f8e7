"""Subtitle files: SRT and WebVTT written atomically and parsed back by the same libraries to the same cues."""
import math
from pathlib import Path

import pytest
import srt
import webvtt

from utils.text.subtitles import Cue, read_subtitles, render_vtt, write_subtitles

CUES = [
    Cue(0.0, 2.96, "bin blue at f two now"),
    Cue(3.04, 6.0, "lay white by s zero again"),
    Cue(3725.125, 3727.5, "set white with p two soon"),  # past an hour
]


def test_files_parse_back_to_the_same_cues(tmp_path: Path):
    srt_path, vtt_path = write_subtitles(tmp_path / "subs", "talk", CUES)
    assert (srt_path, vtt_path) == (tmp_path / "subs" / "talk.srt", tmp_path / "subs" / "talk.vtt")
    assert read_subtitles(srt_path) == CUES
    assert read_subtitles(vtt_path) == CUES
    # and the libraries themselves read them as well-formed files
    parsed = list(srt.parse(srt_path.read_text()))
    assert [s.index for s in parsed] == [1, 2, 3] and parsed[2].start.total_seconds() == 3725.125
    assert [c.text for c in webvtt.read(str(vtt_path))] == [c.text for c in CUES]
    assert vtt_path.read_text().startswith("WEBVTT")


def test_times_are_rounded_to_the_millisecond_and_cues_ordered(tmp_path: Path):
    cues = [Cue(5.0, 6.0, "later"), Cue(1.00049, 1.9996, "first")]
    for path in write_subtitles(tmp_path, "x", cues):
        assert read_subtitles(path) == [Cue(1.0, 2.0, "first"), Cue(5.0, 6.0, "later")]


def test_markup_characters_and_lines_survive(tmp_path: Path):
    cues = [Cue(1.0, 2.0, "a & b <i>not a tag</i> -->"), Cue(2.0, 3.0, "face 1: two\n\nlines")]
    srt_path, vtt_path = write_subtitles(tmp_path, "x", cues)
    expected = [cues[0], Cue(2.0, 3.0, "face 1: two\nlines")]  # a blank line would end the cue
    assert read_subtitles(srt_path) == expected
    assert read_subtitles(vtt_path) == expected
    assert "a &amp; b &lt;i&gt;not a tag&lt;/i&gt; --&gt;" in vtt_path.read_text()


def test_cues_without_text_are_left_out(tmp_path: Path):
    for path in write_subtitles(tmp_path, "x", [Cue(0.0, 1.0, ""), Cue(1.0, 2.0, "bin"), Cue(2.0, 3.0, " \n")]):
        assert read_subtitles(path) == [Cue(1.0, 2.0, "bin")]
    for path in write_subtitles(tmp_path, "empty", []):
        assert read_subtitles(path) == []
    assert render_vtt([]).strip() == "WEBVTT"


def test_rewrites_replace_whole_files_and_leave_no_temporary_ones(tmp_path: Path):
    write_subtitles(tmp_path, "x", CUES)
    srt_path, vtt_path = write_subtitles(tmp_path, "x", CUES[:1])
    assert read_subtitles(srt_path) == read_subtitles(vtt_path) == CUES[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.srt", "x.vtt"]


@pytest.mark.parametrize("start, end", [(1.0, 1.0), (2.0, 1.0), (-0.5, 1.0), (0.0, math.nan), (0.0, math.inf)])
def test_a_cue_needs_a_span(start: float, end: float):
    with pytest.raises(ValueError, match="0 <= start < end"):
        Cue(start, end, "x")


def test_unreadable_files_are_named(tmp_path: Path):
    bad_vtt, bad_srt, other = tmp_path / "a.vtt", tmp_path / "b.srt", tmp_path / "c.txt"
    bad_vtt.write_text("not a subtitle file")
    bad_srt.write_text("1\nnot a time line\n")
    other.write_text("")
    with pytest.raises(ValueError, match=r"a\.vtt: not a valid VTT file"):
        read_subtitles(bad_vtt)
    with pytest.raises(ValueError, match=r"b\.srt: not a valid SRT file"):
        read_subtitles(bad_srt)
    with pytest.raises(ValueError, match=r"c\.txt: unknown subtitle format '\.txt'"):
        read_subtitles(other)
