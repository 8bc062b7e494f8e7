"""Subtitle files: SRT through ``srt`` and WebVTT through ``webvtt-py``; the project's one place for subtitle I/O.

Both formats keep times to the millisecond, so cue times are rounded to it when written. WebVTT cue text
is HTML-like (``&``, ``<`` and ``>`` must be escaped, which webvtt-py leaves to the caller); SRT text is
written as it is. Blank lines end a cue in both formats, so blank lines inside a cue's text are dropped.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import srt
import webvtt

from utils.runtime.atomic import write_text_atomic


@dataclass(frozen=True)
class Cue:
    """One subtitle: its text shown from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end) and 0 <= self.start < self.end):
            raise ValueError(f"a cue needs 0 <= start < end, got start {self.start} and end {self.end}")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def _vtt_time(seconds: float) -> str:
    ms = _milliseconds(seconds)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _kept(cues: Sequence[Cue]) -> list[Cue]:
    """Cues with some text, in order of time (players expect it; SRT numbers them in that order)."""
    return sorted((c for c in cues if _lines(c.text)), key=lambda c: (c.start, c.end))


def render_srt(cues: Sequence[Cue]) -> str:
    subtitles = [srt.Subtitle(index, timedelta(milliseconds=_milliseconds(c.start)),
                              timedelta(milliseconds=_milliseconds(c.end)), "\n".join(_lines(c.text)))
                 for index, c in enumerate(_kept(cues), 1)]
    return srt.compose(subtitles, reindex=False)


def render_vtt(cues: Sequence[Cue]) -> str:
    vtt = webvtt.WebVTT()
    for c in _kept(cues):
        vtt.captions.append(webvtt.Caption(_vtt_time(c.start), _vtt_time(c.end),
                                           [html.escape(line, quote=False) for line in _lines(c.text)]))
    return vtt.content


def write_subtitles(directory: str | Path, stem: str, cues: Sequence[Cue]) -> tuple[Path, Path]:
    """``DIRECTORY/STEM.srt`` and ``DIRECTORY/STEM.vtt`` (folder created if needed), each written atomically.

    Cues without text (an utterance read as nothing) are left out; the others are written in order of
    time, one per cue, times rounded to the millisecond.
    """
    directory = Path(directory)
    srt_path, vtt_path = directory / f"{stem}.srt", directory / f"{stem}.vtt"
    write_text_atomic(srt_path, render_srt(cues))
    write_text_atomic(vtt_path, render_vtt(cues))
    return srt_path, vtt_path


def read_subtitles(path: str | Path) -> list[Cue]:
    """The cues of an ``.srt`` or ``.vtt`` file (chosen by its suffix); ValueError naming the file when
    it cannot be parsed."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".srt":
            return [Cue(s.start.total_seconds(), s.end.total_seconds(), s.content)
                    for s in srt.parse(path.read_text(encoding="utf-8-sig"))]
        if suffix == ".vtt":
            return [Cue(_seconds(c.start), _seconds(c.end), html.unescape(c.raw_text))
                    for c in webvtt.read(str(path))]
    except (srt.SRTParseError, webvtt.errors.MalformedFileError, ValueError) as err:
        raise ValueError(f"{path}: not a valid {suffix[1:].upper()} file: {err}") from None
    raise ValueError(f"{path}: unknown subtitle format {suffix!r} (expected .srt or .vtt)")


def _seconds(timestamp: str) -> float:
    """Seconds of a WebVTT ``[HH:]MM:SS.mmm`` timestamp."""
    *hours_minutes, seconds = timestamp.split(":")
    value = float(seconds)
    for i, part in enumerate(reversed(hours_minutes)):
        value += int(part) * 60 ** (i + 1)
    return value
