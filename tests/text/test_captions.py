"""Subtitle cues to utterances (utils/text/captions.py) and transcripts beside clips (utils/data/sentence_clips.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utils.data.clip_store import save_packed
from utils.data.sentence_clips import build_records, discover_clips
from utils.text.captions import (
    CHARACTERS,
    SKIP_REASONS,
    SubtitleError,
    find_subtitles,
    merge_cues,
    normalise_text,
    plan_utterances,
    read_captions,
)
from utils.text.subtitles import Cue

YOUTUBE_VTT = """WEBVTT
Kind: captions
Language: en

00:00:00.000 --> 00:00:02.350 align:start position:0%
<sp>
hello<00:00:00.480><c> world</c><00:00:00.960><c> this</c>

00:00:02.350 --> 00:00:02.360 align:start position:0%
hello world this
<sp>

00:00:02.360 --> 00:00:04.000 align:start position:0%
hello world this
is<00:00:02.800><c> a</c><00:00:03.000><c> test</c>

00:00:04.000 --> 00:00:04.010 align:start position:0%
is a test
<sp>

00:00:04.010 --> 00:00:06.000 align:start position:0%
is a test
of<00:00:04.500><c> captions</c>
""".replace("<sp>", " ")  # YouTube writes a line of one space in its cues


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_srt_and_plain_vtt_read_as_cues_without_markup(tmp_path: Path):
    srt = write(tmp_path / "a.srt", "1\n00:00:01,000 --> 00:00:02,500\n<i>Hello</i>\nthere\n\n"
                                    "2\n00:00:03,000 --> 00:00:04,000\nAgain.\n")
    assert read_captions(srt) == [Cue(1.0, 2.5, "Hello there"), Cue(3.0, 4.0, "Again.")]
    vtt = write(tmp_path / "b.vtt", "WEBVTT\n\nintro\n00:01.000 --> 00:02.000\nTom &amp; <b>Jerry</b>\n")
    assert read_captions(vtt) == [Cue(1.0, 2.0, "Tom & Jerry")]


def test_youtube_word_timed_vtt_gives_each_word_once(tmp_path: Path):
    cues = read_captions(write(tmp_path / "yt.vtt", YOUTUBE_VTT))
    assert [c.text for c in cues] == ["hello world this", "is a test", "of captions"]
    assert [(c.start, c.end) for c in cues] == [(0.0, 2.35), (2.36, 4.0), (4.01, 6.0)]
    assert " ".join(c.text for c in cues) == "hello world this is a test of captions"


@pytest.mark.parametrize("name, content, line, words", [
    ("bad.srt", "1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:03,000 -> 00:00:04,000\nbad\n\n"
                "3\n00:00:05,000 --> 00:00:06,000\nok\n", 5, "not a valid SRT cue"),
    ("bad.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello\n\n00:00:03.000 -> 00:00:04.000\nbad\n", 6,
     "a cue without a timing line"),
    ("bad2.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello\n\n1\n00:00:03.00 --> 00:00:04.000\nbad\n", 7,
     "not a valid timing line"),
    ("none.vtt", "1\n00:00:01,000 --> 00:00:02,000\nan SRT named .vtt\n", 1, "not a WebVTT file"),
])
def test_malformed_file_is_named_with_its_line(tmp_path: Path, name: str, content: str, line: int, words: str):
    path = write(tmp_path / name, content)
    with pytest.raises(SubtitleError) as caught:
        read_captions(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ") and words in str(caught.value)


def test_unreadable_and_unknown_files_are_named(tmp_path: Path):
    latin = tmp_path / "latin.srt"
    latin.write_bytes("1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(SubtitleError, match="latin.srt: not UTF-8"):
        read_captions(latin)
    with pytest.raises(SubtitleError, match="unknown subtitle format"):
        read_captions(write(tmp_path / "x.ass", "[Script Info]"))


def test_subtitles_are_found_by_stem_srt_first(tmp_path: Path):
    video = tmp_path / "talk.mp4"
    assert find_subtitles(video) is None
    write(tmp_path / "talk.vtt", "WEBVTT\n")
    assert find_subtitles(video) == tmp_path / "talk.vtt"
    write(tmp_path / "talk.srt", "")
    assert find_subtitles(video) == tmp_path / "talk.srt"


@pytest.mark.parametrize("written, said", [
    ("The 3 dogs ran home.", "the three dogs ran home"),
    ("In 1999, I paid $5 for 2,000 apples!", "in nineteen ninety nine i paid five dollars for two thousand apples"),
    ("It costs $5.50", "it costs five dollars fifty cents"),
    ("It's the 3rd time -- 50% off & more", "it's the third time fifty percent off and more"),
    ("He said 'stop' at 2.5 km/h", "he said stop at two point five km h"),
    (">> Café naïve “quoted” [Applause] rock’n’roll", "cafe naive quoted rock'n'roll"),
    ("The 21st of May, 2010", "the twenty first of may twenty ten"),
])
def test_normalisation_spells_numbers_and_keeps_the_caption_alphabet(written: str, said: str):
    text, problem = normalise_text(written)
    assert (text, problem) == (said, None)
    assert set(text) <= set(CHARACTERS)


@pytest.mark.parametrize("written, reason", [
    ("[Music]", "nothing said"), ("♪ la la la ♪", "nothing said"), ("...", "nothing said"),
    ("Привет, world", "cannot spell 'привет'"), ("I ❤ it", "cannot spell '❤'"),
])
def test_what_cannot_be_said_is_dropped_with_a_reason(written: str, reason: str):
    assert normalise_text(written) == ("", reason)


def test_close_cues_merge_until_the_maximum():
    cues = [Cue(0.0, 1.0, "one"), Cue(1.1, 2.0, "two"), Cue(2.2, 2.9, "three"), Cue(3.5, 4.0, "four"),
            Cue(4.05, 4.5, "five")]
    merged = merge_cues(cues, gap=0.3, max_duration=3.0)
    assert merged == [Cue(0.0, 2.9, "one two three"), Cue(3.5, 4.5, "four five")]
    capped = merge_cues(cues, gap=0.3, max_duration=2.0)  # a third cue would make the span 2.9 s
    assert [c.text for c in capped] == ["one two", "three", "four five"]
    assert merge_cues(cues, gap=0.0, max_duration=3.0) == cues


def test_every_skipped_cue_has_its_reason():
    cues = [Cue(0.0, 0.3, "short"), Cue(1.0, 5.0, "far too long a cue"), Cue(6.0, 7.0, "[Music]"),
            Cue(8.0, 9.0, "日本"), Cue(10.0, 10.6, "a sentence far too long for so little time"),
            Cue(12.0, 14.0, "Fine, 2 words.")]
    planned = plan_utterances(cues, gap=0.3, min_duration=0.5, max_duration=3.0)
    assert [(u.skip, u.text) for u in planned] == [
        ("too_short", "short"), ("too_long", "far too long a cue"), ("no_speech", ""), ("unspeakable", ""),
        ("too_fast", "a sentence far too long for so little time"), (None, "fine two words")]
    assert "0.30 s" in planned[0].message and "日本" in planned[3].message and "15 frames" in planned[4].message
    assert [u.index for u in planned] == list(range(6))
    assert {u.skip for u in planned} - {None} == set(SKIP_REASONS)  # every reason the manifest can give
    with pytest.raises(ValueError, match="min_duration"):
        plan_utterances(cues, min_duration=3.0, max_duration=2.0)


def test_clips_keep_a_margin_of_video_around_their_cues_but_never_reach_a_neighbour():
    cues = [Cue(0.2, 1.5, "one"), Cue(1.9, 3.0, "two"), Cue(5.0, 6.0, "three"), Cue(5.8, 7.0, "four")]
    planned = plan_utterances(cues, gap=0.1, min_duration=0.5, max_duration=1.5, margin=0.5)
    # from the video's start; half-way to a near cue; a full margin; overlapping cues keep their own span
    assert [(u.start, u.end) for u in planned] == [(0.0, 1.7), (1.7, 3.5), (4.5, 6.0), (5.8, 7.5)]
    assert [u.text for u in planned] == ["one", "two", "three", "four"]  # the limits apply to the cues
    exact = plan_utterances(cues, gap=0.1, min_duration=0.5, max_duration=1.5, margin=0.0)
    assert [(u.start, u.end) for u in exact] == [(c.start, c.end) for c in cues]
    with pytest.raises(ValueError, match="margin"):
        plan_utterances(cues, margin=-0.1)


def test_transcripts_beside_clips_label_them(tmp_path: Path):
    frames = np.zeros((20, 8, 16, 3), np.uint8)
    for name, text in (("talk_000", "the three dogs\n"), ("talk_001", "  spaced   out  "), ("talk_002", ""),
                       ("talk_003", None)):
        save_packed(tmp_path / "s1" / f"{name}.npz", frames)
        if text is not None:
            (tmp_path / "s1" / f"{name}.txt").write_text(text)
    records = build_records(discover_clips(tmp_path), align_path=tmp_path / "no_aligns")
    # talk_002 (empty transcript) and talk_003 (no transcript, not a GRID name) are left out
    assert [(r.clip_id, r.sentence) for r in records] == [("s1/talk_000", "the three dogs"),
                                                         ("s1/talk_001", "spaced out")]
