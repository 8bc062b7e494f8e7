"""Inference results as a CSV table and a self-contained HTML report (no MXNet here: arrays in, files out).

The HTML file carries its images as base64 PNG data URIs, so it can be mailed or archived as one file
and opened offline. For every clip it shows a strip of mouth frames, the target and the prediction
with wrong words marked, and the per-frame character probabilities as a heat map (time across,
the 28 classes down), which shows at a glance whether a bad sentence came from a flat, unsure
output or from a confident wrong one. A video read as utterances shows each one instead: its time
span and text, and a time-true strip of its frames with a box per word placed at the word's start and
end (shaded by its confidence), so a word timed on the wrong mouth movement is seen at once.
A clip read with warnings (a video read only in part, an utterance not read, an output not written)
shows them above its reading, and the CSV lists them; an utterance not read shows why in its place.
Every piece of text goes through ``html.escape``.
"""
from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein

from utils.runtime.atomic import write_text_atomic
from utils.scoring.sentence_metrics import ErrorRates, GroupedErrorRates
from utils.text.alphabet import ALPHABETS, Alphabet
from utils.text.timings import WordTiming

CSV_NAME = "predictions.csv"
HTML_NAME = "report.html"
CSV_COLUMNS = ("clip", "target", "prediction", "cer", "wer", "error", "warnings")
STRIP_FRAMES = 15
SECONDS_PER_SLOT = 0.2  # an utterance's strip shows one frame per this much time (15 for a GRID clip)
MAX_SLOTS = 40
# The known alphabets by their number of classes (each has its own), for heat maps of any of them.
_BY_CLASSES = {a.num_classes: a for a in ALPHABETS.values()}
_CELL_W, _CELL_H = 6, 10  # heat-map pixels per frame and per class
_LABEL_W, _AXIS_H = 14, 14
_GAP = 2  # pixels between frames of a strip

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em}section.clip h2{font-size:1.05em;margin:0 0 .3em;font-family:monospace}
table{border-collapse:collapse}td,th{padding:.15em .6em;text-align:left}
table.rates td,table.rates th{border-bottom:1px solid #ddd}
section.clip{border-top:1px solid #ccc;padding:.8em 0}
section.failed h2,.error{color:#a00}.warning{color:#a50}
.text td{font-family:monospace;font-size:1.1em}
.wrong{background:#fbb;text-decoration:line-through}
.missed{background:#fde7a0;text-decoration:underline}
img{display:block;margin:.3em 0;max-width:100%;image-rendering:pixelated}
.scores,.note,.details{color:#555}
.utterance{margin:.8em 0 .8em 1em}.utterance h3{font-size:1em;margin:0 0 .2em;font-weight:normal}
.utterance .span{color:#555;font-family:monospace}.utterance .said{font-family:monospace;font-size:1.1em}
.timeline{display:inline-block;max-width:100%}.timeline img{width:100%;margin:0}
.words{position:relative;height:3.4em;border-top:1px solid #999}
.word{position:absolute;box-sizing:border-box;border:1px solid #2a6;border-top:none;border-radius:0 0 3px 3px;
 font-family:monospace;font-size:.9em;line-height:1.5em;text-align:center;white-space:nowrap;overflow:visible;
 height:1.6em;min-width:2px}
.word.low{top:1.7em}
.ticks{position:relative;height:1.1em;font-size:.75em;color:#555}
.ticks span{position:absolute;transform:translateX(-50%);white-space:nowrap}
"""


@dataclass
class UtteranceResult:
    """One utterance of a video: its span in the video's seconds, its text and word timings, and its inputs;
    or, when it could not be read (``error``: why), no text, words or log-probabilities."""

    start: float
    end: float
    text: str
    words: list[WordTiming]
    frames: np.ndarray  # (T, H, W, 3) RGB uint8 mouth crops at the model's frame rate
    log_probs: np.ndarray  # (T, 28)
    face: int = 0  # which face track of the video said it
    error: str | None = None
    small_face: str | None = None  # the face is too small to read well (``Utterance.small_face``)


@dataclass
class ClipResult:
    """One clip's outcome: a prediction (and its inputs, for the report) or the reason it failed."""

    name: str  # clip id (s1/bbaf2n) or a video's file name
    prediction: str = ""
    target: str | None = None  # None for raw videos, which carry no label
    frames: np.ndarray | None = None  # (T, H, W, 3) RGB uint8 mouth crops
    log_probs: np.ndarray | None = None  # (T, 28)
    error: str | None = None
    # A video read as utterances: the report shows these instead of the clip's frames and heat map.
    utterances: list[UtteranceResult] | None = None
    warnings: list[str] = field(default_factory=list)  # read only in part (truncated), an output not written

    def rates(self) -> ErrorRates | None:
        if self.target is None or self.error is not None:
            return None
        return ErrorRates.of([self.target], [self.prediction])


def ordered_groups(rates: GroupedErrorRates) -> list[tuple[str, ErrorRates]]:
    """Groups in natural order, so that speaker s2 comes before s10."""
    def key(name: str) -> tuple[str, int, str]:
        digits = name.lstrip("abcdefghijklmnopqrstuvwxyz")
        return (name[: len(name) - len(digits)], int(digits), "") if digits.isdigit() else (name, -1, name)

    return [(name, rates.groups[name]) for name in sorted(rates.groups, key=key)]


# ------------------------------------------------------------------------------------------------ images

def frame_strip(frames: np.ndarray, max_frames: int = STRIP_FRAMES) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced frames side by side (RGB), first and last included."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int))
    h, w = frames.shape[1:3]
    strip = np.full((h, len(picks) * (w + _GAP) - _GAP, 3), 255, np.uint8)
    for i, t in enumerate(picks):
        strip[:, i * (w + _GAP): i * (w + _GAP) + w] = frames[t]
    return strip


def timeline_strip(frames: np.ndarray, slots: int) -> np.ndarray:
    """``slots`` frames side by side in which x is proportional to time: slot i stands for the i-th of
    ``slots`` equal slices of the clip and shows the frame in the middle of it (RGB)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    slots = max(1, min(slots, len(frames)))
    picks = ((np.arange(slots) + 0.5) * len(frames) / slots).astype(int)
    return frame_strip(frames[picks], max_frames=slots)


def class_labels(alphabet: Alphabet) -> list[str]:
    """Row labels of the heat map: Hershey fonts have no visible space, so space is "_" and the blank "-"."""
    return ["_" if c == " " else c for c in alphabet.characters] + ["-"]


def probability_image(log_probs: np.ndarray) -> np.ndarray:
    """Heat map (RGB) of exp(log_probs): one column per frame, one row per class (the characters of the
    known alphabet with that many classes, then the blank)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] not in _BY_CLASSES or not len(lp):
        raise ValueError(f"expected log-probabilities of shape (T, C) with C one of {sorted(_BY_CLASSES)}, "
                         f"got {lp.shape}")
    num_classes = lp.shape[1]
    probs = np.clip(np.nan_to_num(np.exp(lp.T)), 0.0, 1.0)  # (classes, T)
    levels = np.round(probs * 255).astype(np.uint8)
    cells = np.repeat(np.repeat(levels, _CELL_H, axis=0), _CELL_W, axis=1)
    heat = cv2.applyColorMap(cells, cv2.COLORMAP_VIRIDIS)  # BGR
    t = lp.shape[0]
    image = np.full((num_classes * _CELL_H + _AXIS_H, _LABEL_W + t * _CELL_W, 3), 255, np.uint8)
    image[: num_classes * _CELL_H, _LABEL_W:] = heat
    font = cv2.FONT_HERSHEY_PLAIN
    for row, label in enumerate(class_labels(_BY_CLASSES[num_classes])):
        cv2.putText(image, label, (3, row * _CELL_H + _CELL_H - 2), font, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    for frame in range(0, t, 25):  # one tick a second at GRID's 25 fps
        x = _LABEL_W + frame * _CELL_W
        cv2.line(image, (x, num_classes * _CELL_H), (x, num_classes * _CELL_H + 3), (0, 0, 0), 1)
        cv2.putText(image, str(frame), (x + 2, image.shape[0] - 2), font, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    return np.ascontiguousarray(image[..., ::-1])


def png_data_uri(image: np.ndarray) -> str:
    """An RGB uint8 image as a ``data:image/png;base64,...`` URI."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(np.asarray(image, np.uint8)[..., ::-1]))
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {np.shape(image)} as PNG")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


# -------------------------------------------------------------------------------------------------- text

def mark_errors(target: str, prediction: str) -> tuple[str, str]:
    """Escaped HTML of both sentences: predicted words not in the target's alignment marked ``wrong``,
    target words the prediction dropped or replaced marked ``missed``."""
    ref, hyp = target.split(), prediction.split()
    ref_html, hyp_html = [html.escape(w) for w in ref], [html.escape(w) for w in hyp]
    for op in Levenshtein.opcodes(ref, hyp):
        if op.tag == "equal":
            continue
        for i in range(op.src_start, op.src_end):
            ref_html[i] = f'<span class="missed">{ref_html[i]}</span>'
        for i in range(op.dest_start, op.dest_end):
            hyp_html[i] = f'<span class="wrong">{hyp_html[i]}</span>'
    return " ".join(ref_html), " ".join(hyp_html)


def _rates_row(name: str, rates: ErrorRates) -> str:
    return (f"<tr><td>{html.escape(name)}</td><td>{rates.sentences}</td>"
            f"<td>{rates.cer:.2%}</td><td>{rates.wer:.2%}</td></tr>")


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def _words_row(words: Sequence[WordTiming], start: float, end: float) -> str:
    """Word boxes over a timeline strip, each from its start to its end as a share of [start, end];
    every other word one row lower, so that short neighbouring words do not cover each other."""
    span = max(end - start, 1e-9)
    boxes = []
    for i, word in enumerate(words):
        left = min(max((word.start - start) / span, 0.0), 1.0) * 100
        width = min(max((word.end - word.start) / span, 0.0), 1.0 - left / 100) * 100
        alpha = 0.15 + 0.6 * min(max(word.confidence, 0.0), 1.0)
        tip = (f"{word.word}: {_seconds(word.start)}-{_seconds(word.end)} s, "
               f"confidence {word.confidence:.2f}")
        boxes.append(f'<span class="word{" low" if i % 2 else ""}" title="{html.escape(tip)}" '
                     f'style="left:{left:.2f}%;width:{width:.2f}%;background:rgba(40,170,100,{alpha:.2f})">'
                     f"{html.escape(word.word)}</span>")
    return f'<div class="words">{"".join(boxes)}</div>'


def _ticks_row(start: float, end: float) -> str:
    """Time labels under a strip: whole seconds (or half seconds for a short utterance) of the video."""
    span = max(end - start, 1e-9)
    step = 0.5 if span <= 4 else 1.0 if span <= 12 else 5.0
    first = np.ceil(start / step) * step
    marks = np.arange(first, end + 1e-9, step)
    labels = "".join(f'<span style="left:{(t - start) / span * 100:.2f}%">{t:g} s</span>' for t in marks)
    return f'<div class="ticks">{labels}</div>'


def _utterance_block(name: str, result: UtteranceResult, show_face: bool) -> str:
    face = f"face {result.face} &middot; " if show_face else ""
    parts = [f'<div class="utterance"><h3><span class="span">{face}{_seconds(result.start)}&ndash;'
             f'{_seconds(result.end)} s</span> <span class="said">{html.escape(result.text) or "(nothing read)"}'
             "</span></h3>"]
    if result.error is not None:
        parts.append(f'<p class="error">not read: {html.escape(result.error)}</p>')
    duration = result.end - result.start
    if result.frames is not None and len(result.frames):
        slots = min(MAX_SLOTS, max(1, round(duration / SECONDS_PER_SLOT)))
        uri = png_data_uri(timeline_strip(result.frames, slots))
        parts.append(f'<div class="timeline"><img class="strip" alt="mouth frames of {name} from '
                     f'{_seconds(result.start)} s" src="{uri}">'
                     f"{_words_row(result.words, result.start, result.end)}"
                     f"{_ticks_row(result.start, result.end)}</div>")
    if len(result.log_probs):
        uri = png_data_uri(probability_image(result.log_probs))
        parts.append(f'<details><summary>character probabilities</summary><img class="probs" '
                     f'alt="per-frame character probabilities of {name} from {_seconds(result.start)} s" '
                     f'src="{uri}"></details>')
    parts.append("</div>")
    return "".join(parts)


def _clip_section(index: int, result: ClipResult) -> str:
    name = html.escape(result.name)
    if result.error is not None:
        return (f'<section class="clip failed" id="clip-{index}"><h2>{name}</h2>'
                f'<p class="error">{html.escape(result.error)}</p></section>')
    parts = [f'<section class="clip" id="clip-{index}"><h2>{name}</h2>']
    parts.extend(f'<p class="warning">warning: {html.escape(w)}</p>' for w in result.warnings)
    rates = result.rates()
    if rates is not None:
        parts.append(f'<p class="scores">CER {rates.cer:.2%} &middot; WER {rates.wer:.2%}</p>')
    if result.frames is not None and result.utterances is None:
        uri = png_data_uri(frame_strip(result.frames))
        parts.append(f'<img class="strip" alt="mouth frames of {name}" src="{uri}">')
    if result.target is not None:
        target_html, pred_html = mark_errors(result.target, result.prediction)
        parts.append(f'<table class="text"><tr><th>Target</th><td>{target_html}</td></tr>'
                     f"<tr><th>Prediction</th><td>{pred_html}</td></tr></table>")
    else:
        parts.append(f'<table class="text"><tr><th>Prediction</th><td>{html.escape(result.prediction)}</td></tr>'
                     "</table>")
    if result.utterances is not None:
        show_face = len({u.face for u in result.utterances}) > 1 or any(u.face for u in result.utterances)
        parts.extend(_utterance_block(name, u, show_face) for u in result.utterances)
    elif result.log_probs is not None:
        uri = png_data_uri(probability_image(result.log_probs))
        parts.append(f'<img class="probs" alt="per-frame character probabilities of {name}" src="{uri}">')
    parts.append("</section>")
    return "".join(parts)


def render_html(results: Sequence[ClipResult], title: str, details: Mapping[str, str] | None = None,
                rates: GroupedErrorRates | None = None, limit: int | None = None) -> str:
    """The report page. ``limit`` caps the clips shown in full (failures are always listed)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if details:
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in details.items())
        body.append(f'<table class="details">{rows}</table>')
    if rates is not None and rates.overall.sentences:
        rows = _rates_row("all", rates.overall) + "".join(_rates_row(n, r) for n, r in ordered_groups(rates))
        body.append('<h2>Error rates</h2><table class="rates"><tr><th>speaker</th><th>clips</th><th>CER</th>'
                    f"<th>WER</th></tr>{rows}</table>")
    body.append('<p class="note">Marked: <span class="wrong">wrong</span> predicted words, '
                '<span class="missed">missed</span> target words. Heat maps: time across, '
                'classes (characters, space as _) and CTC blank (-) down; brighter is more probable. Under an '
                "utterance's frames, each word spans the time it was said; the darker, the more confident "
                '(hover for its times and confidence).</p>')
    shown = 0
    for index, result in enumerate(results):
        if result.error is None:
            if limit is not None and shown >= limit:
                continue
            shown += 1
        body.append(_clip_section(index, result))
    hidden = sum(r.error is None for r in results) - shown
    if hidden:
        body.append(f'<p class="note">{hidden} more clip(s) are listed in {CSV_NAME} only.</p>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def render_csv(results: Sequence[ClipResult]) -> str:
    """One row per clip; CER and WER are empty where there is no target, warnings joined by "; "."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        rates = result.rates()
        writer.writerow([result.name, result.target or "", result.prediction,
                         f"{rates.cer:.4f}" if rates else "", f"{rates.wer:.4f}" if rates else "",
                         result.error or "", "; ".join(result.warnings)])
    return buffer.getvalue()



def write_report(out_dir: str | Path, results: Sequence[ClipResult], title: str,
                 details: Mapping[str, str] | None = None, rates: GroupedErrorRates | None = None,
                 limit: int | None = None) -> tuple[Path, Path]:
    """``predictions.csv`` and ``report.html`` in ``out_dir`` (created if needed), each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / CSV_NAME, out / HTML_NAME
    write_text_atomic(csv_path, render_csv(results))
    write_text_atomic(html_path, render_html(results, title, details, rates, limit))
    return csv_path, html_path
