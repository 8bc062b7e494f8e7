"""Captions to training utterances: subtitle cues read, cleaned, merged, filtered and spelt out.

``read_captions`` reads an ``.srt`` (``srt``) or ``.vtt`` (``webvtt-py``) file. YouTube's automatic
captions are WebVTT "rolling" cues: each cue repeats the line before and adds a new one whose words
carry inline timings (``hello<00:00:01.000><c> world</c>``), with 10 ms cues in between; only the
timed lines are kept (tags stripped) and the 10 ms cues dropped, so every word is read once. A file
the parsers cannot read, or a WebVTT cue they would silently skip, is a ``SubtitleError`` naming the
file and its line.

``plan_utterances`` turns cues into utterances: cues closer than ``gap`` seconds are merged (while
the merged span stays within ``max_duration``), each text is normalised to the caption alphabet
(lower case a-z, space, apostrophe; numbers spelt out with ``num2words``), every cue that cannot be
a training clip is kept with its reason (``SKIP_REASONS``) for the manifest, and each clip's span
can be widened by ``margin`` seconds of the video on each side (never past half the gap to the cues
beside it).
"""
from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import srt
import webvtt
from num2words import num2words

from utils.text.alphabet import CAPTIONS
from utils.text.grid_text import ctc_min_frames
from utils.text.subtitles import Cue

CHARACTERS = CAPTIONS.characters  # what normalised text is made of: the caption alphabet's characters
SUBTITLE_SUFFIXES = (".srt", ".vtt")
DEFAULT_GAP = 0.3  # seconds: cues closer than this are one utterance
DEFAULT_MIN_DURATION = 0.5
DEFAULT_MAX_DURATION = 3.0  # GRID's clip length, what LipNet reads at once
# Seconds of video kept before and after a cue (never past half the gap to the next). 0: clips at the
# cue times. A margin makes clips begin and end in still mouth, as infer.py's utterances do when
# read without its own --margin; trained on clips with 0.5 s margins, the quick-start model stayed on
# CTC's plateau (validation CER 0.78 after 30 epochs, against 0.38 at the cue times), so the default
# keeps the cue times and infer.py trims its utterances instead (infer.py --margin).
DEFAULT_MARGIN = 0.0

SKIP_REASONS = {
    "too_short": "the cue is shorter than min_duration",
    "too_long": "the cue is longer than max_duration",
    "no_speech": "nothing in the cue is said (empty, or only sound descriptions such as [Music])",
    "unspeakable": "the cue holds characters that cannot be spelt in the caption alphabet",
    "too_fast": "the cue has more characters than its frames can hold (CTC needs a frame per character, "
                "and one between repeats)",
}

_TIMING_TAG = re.compile(r"<(?:\d+:)?\d{2}:\d{2}\.\d{3}>")
_TAG = re.compile(r"</?[^>]*>")
_VTT_TIMING = re.compile(r"^\s*(?:\d+:)?\d{2}:\d{2}\.\d{3}\s+-->\s+(?:\d+:)?\d{2}:\d{2}\.\d{3}(?:\s.*)?$")
_FLASH = 0.05  # seconds: YouTube's in-between cues last 10 ms


class SubtitleError(ValueError):
    """A subtitle file that cannot be read; ``str()`` names the file and, where known, the line."""

    def __init__(self, path: str | Path, detail: str, line: int | None = None) -> None:
        self.path, self.line, self.detail = str(path), line, detail
        super().__init__(f"{path}" + (f":{line}" if line else "") + f": {detail}")


# ---------------------------------------------------------------------------------------------
# Reading


def find_subtitles(video: Path) -> Path | None:
    """The subtitle file of ``video``: same folder and stem, ``.srt`` preferred to ``.vtt``."""
    for suffix in SUBTITLE_SUFFIXES:
        for candidate in (video.with_suffix(suffix), video.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def _seconds(timestamp: str) -> float:
    *hours_minutes, seconds = timestamp.split(":")
    value = float(seconds)
    for i, part in enumerate(reversed(hours_minutes)):
        value += int(part) * 60 ** (i + 1)
    return value


def _read_srt(path: Path, content: str) -> list[Cue]:
    cues = []
    try:
        for subtitle in srt.parse(content):
            start, end = subtitle.start.total_seconds(), subtitle.end.total_seconds()
            if end <= start:
                line = content[:content.find(srt.timedelta_to_srt_timestamp(subtitle.start))].count("\n") + 1
                raise SubtitleError(path, f"cue {subtitle.index} ends ({end:.3f} s) before it starts "
                                    f"({start:.3f} s)", line)
            cues.append(Cue(start, end, _TAG.sub("", subtitle.content)))
    except srt.SRTParseError as err:
        line = content[:err.expected_start].count("\n") + 1
        bad = err.unmatched_content.strip().splitlines()[:2]
        raise SubtitleError(path, f"not a valid SRT cue: {' / '.join(bad)!r}", line) from None
    return cues


def _check_vtt(path: Path, content: str) -> None:
    """SubtitleError at the first block webvtt-py would skip: one with ``-->`` in no valid timing line."""
    lines = content.splitlines()
    if not lines or not lines[0].lstrip("\ufeff").startswith("WEBVTT"):
        raise SubtitleError(path, "not a WebVTT file (its first line is not WEBVTT)", 1)
    block: list[tuple[int, str]] = []
    for number, line in [*enumerate(lines[1:], 2), (len(lines) + 1, "")]:
        if line:  # a line of spaces belongs to its cue (YouTube writes them); only an empty one ends it
            block.append((number, line))
            continue
        if block and not block[0][1].startswith(("NOTE", "STYLE", "REGION", "Kind:", "Language:")):
            timing = [(n, t) for n, t in block[:2] if "-->" in t]
            if not timing:
                raise SubtitleError(path, f"a cue without a timing line: {block[0][1]!r}", block[0][0])
            n, t = timing[0]
            if not _VTT_TIMING.match(t):
                raise SubtitleError(path, f"not a valid timing line: {t.strip()!r}", n)
            start, end = (_seconds(part.split()[0]) for part in t.split("-->"))
            if end < start:
                raise SubtitleError(path, f"the cue ends before it starts: {t.strip()!r}", n)
        block = []


def _read_vtt(path: Path, content: str) -> list[Cue]:
    _check_vtt(path, content)
    try:
        captions = list(webvtt.from_string(content))
    except webvtt.errors.MalformedFileError as err:
        raise SubtitleError(path, f"not a valid WebVTT file: {err}") from None
    rolling = any(_TIMING_TAG.search(c.raw_text) for c in captions)
    cues = []
    for caption in captions:
        start, end = _seconds(caption.start), _seconds(caption.end)
        lines = caption.raw_text.splitlines()
        if rolling:  # YouTube: the timed lines are the new words, the others repeat earlier cues
            if end - start < _FLASH:
                continue
            lines = [line for line in lines if _TIMING_TAG.search(line)]
        text = " ".join(html.unescape(_TAG.sub("", line)) for line in lines)
        if end > start:
            cues.append(Cue(start, end, text))
    return cues


def read_captions(path: str | Path) -> list[Cue]:
    """The cues of an ``.srt`` or ``.vtt`` file in order of time, text on one line without markup;
    SubtitleError naming the file (and line) when it cannot be read."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SubtitleError(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise SubtitleError(path, f"cannot be read ({err.strerror or err})") from None
    suffix = path.suffix.lower()
    if suffix == ".srt":
        cues = _read_srt(path, content)
    elif suffix == ".vtt":
        cues = _read_vtt(path, content)
    else:
        raise SubtitleError(path, f"unknown subtitle format {suffix!r} (expected .srt or .vtt)")
    return sorted((Cue(c.start, c.end, " ".join(c.text.split())) for c in cues), key=lambda c: (c.start, c.end))


# ---------------------------------------------------------------------------------------------
# Normalisation

_SOUND = re.compile(r"\[[^\]]*\]|\([^)]*\)|♪[^♪]*♪|♪")  # [Music], (applause), ♪ lyrics ♪: not lip speech
_SPEAKER_MARK = re.compile(r"^\s*(?:>>+|-\s)|\s>>+")  # ">> " turn marks and a leading dialogue dash
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}
_CURRENCY = {"$": ("USD", "dollar", "dollars"), "£": ("GBP", "pound", "pounds"), "€": ("EUR", "euro", "euros")}
_MONEY = re.compile(r"([$£€])\s?(\d[\d,]*(?:\.\d+)?)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_NUMBER = re.compile(r"\d+(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_DASHES = re.compile(r"[-\u2010-\u2015/_]")
_PUNCTUATION = re.compile(r"[.,!?;:\"\u201c\u201d\u00ab\u00bb\u2026*~^|\\<>{}\[\]()]")


def _number_words(match: re.Match) -> str:
    token = match.group(0)
    value = token.replace(",", "")
    if "." in value:
        return " " + num2words(float(value)) + " "
    number = int(value)
    # A four-digit number from 1100 to 2099 without thousands commas is most often said as a year.
    if "," not in token and len(token) == 4 and 1100 <= number <= 2099 and number % 1000 >= 10:
        return " " + num2words(number, to="year") + " "
    return " " + num2words(number) + " "


def _money_words(match: re.Match) -> str:
    code, one, many = _CURRENCY[match.group(1)]
    value = match.group(2).replace(",", "")
    if "." in value:  # num2words reads an int as cents: only amounts with cents go through its currency mode
        return " " + num2words(float(value), to="currency", currency=code) + " "
    return f" {num2words(int(value))} {one if int(value) == 1 else many} "


def normalise_text(text: str) -> tuple[str, str | None]:
    """``(spoken text, None)`` in the caption alphabet, or ``("", reason)`` when nothing is said or
    some of it cannot be spelt (the reason names the characters).

    Sound descriptions ([Music], (laughs), ♪) and turn marks (>>) are dropped; accents are
    stripped (café: cafe); numbers, ordinals, money, %, & are spelt out (1999: nineteen ninety nine,
    3rd: third, $5: five dollars, $5.50: five dollars fifty cents, 2.5: two point five); dashes and
    slashes separate words; punctuation goes; an apostrophe stays only inside a word (don't), not as a quote mark.
    """
    text = _SOUND.sub(" ", text)
    text = _SPEAKER_MARK.sub(" ", text)
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _MONEY.sub(_money_words, text)
    text = _ORDINAL.sub(lambda m: " " + num2words(int(m.group(1)), to="ordinal") + " ", text)
    text = _NUMBER.sub(_number_words, text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = _DASHES.sub(" ", text)
    text = _PUNCTUATION.sub(" ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quote marks, not apostrophes
    text = " ".join(text.split())
    odd = list(dict.fromkeys(c for c in text if c not in CHARACTERS))
    if odd:
        return "", f"cannot spell {''.join(odd)!r}"
    if not any(c.isalpha() for c in text):
        return "", "nothing said"
    return text, None


# ---------------------------------------------------------------------------------------------
# Utterances


@dataclass(frozen=True)
class Utterance:
    """One merged cue: its span, what the captions say, the normalised text, and why it is skipped."""

    index: int  # position among the video's merged cues
    start: float  # the clip's span in the video: the cue's, widened by the margin
    end: float
    caption: str  # the cues' text as written
    text: str  # normalised, in CHARACTERS ('' when skipped for what it says)
    skip: str | None = None  # a key of SKIP_REASONS, None for a clip to make
    message: str = ""


def merge_cues(cues: Sequence[Cue], gap: float, max_duration: float) -> list[Cue]:
    """Consecutive cues less than ``gap`` seconds apart joined into one, as long as the joined span
    stays within ``max_duration`` (a long run of touching cues, as YouTube writes them, is cut at the
    cue boundaries instead of growing without end). Overlapping cues count as touching."""
    merged: list[Cue] = []
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        if merged:
            last = merged[-1]
            if cue.start - last.end < gap and max(cue.end, last.end) - last.start <= max_duration:
                merged[-1] = Cue(last.start, max(cue.end, last.end), f"{last.text} {cue.text}".strip())
                continue
        merged.append(cue)
    return merged


def plan_utterances(cues: Sequence[Cue], gap: float = DEFAULT_GAP, min_duration: float = DEFAULT_MIN_DURATION,
                    max_duration: float = DEFAULT_MAX_DURATION, fps: float = 25.0,
                    margin: float = DEFAULT_MARGIN) -> list[Utterance]:
    """Every merged cue as an ``Utterance``, with a skip reason for those that cannot be clips. The
    duration limits apply to the cue; its clip spans ``margin`` seconds more on each side, less where
    another cue is nearer than twice that (the clips of neighbouring cues meet half-way, never overlap)
    and none before the video's start."""
    if not 0 < min_duration < max_duration:
        raise ValueError(f"need 0 < min_duration < max_duration, got {min_duration} and {max_duration}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    merged = merge_cues(cues, gap, max_duration)
    planned = []
    for index, cue in enumerate(merged):
        text, problem = normalise_text(cue.text)
        duration = cue.end - cue.start
        skip, message = None, ""
        if problem == "nothing said":
            skip, message = "no_speech", f"nothing said in {cue.text!r}"
        elif problem:
            skip, message = "unspeakable", f"{problem} in {cue.text!r}"
        elif duration < min_duration:
            skip, message = "too_short", f"{duration:.2f} s, under min_duration {min_duration:g} s"
        elif duration > max_duration:
            skip, message = "too_long", f"{duration:.2f} s, over max_duration {max_duration:g} s"
        elif ctc_min_frames(text) > int(round(duration * fps)):
            skip, message = "too_fast", (f"{len(text)} characters need {ctc_min_frames(text)} frames, the cue "
                                         f"has {int(round(duration * fps))} frames")
        start = max(cue.start - margin, 0.0)
        if index > 0:
            start = min(max(start, (merged[index - 1].end + cue.start) / 2), cue.start)
        end = cue.end + margin
        if index + 1 < len(merged):
            end = max(min(end, (cue.end + merged[index + 1].start) / 2), cue.end)
        planned.append(Utterance(index, start, end, cue.text, text, skip, message))
    return planned
