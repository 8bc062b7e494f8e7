"""The inference report: images from arrays, marked errors, escaping, CSV, atomic writes."""
import base64
import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.scoring.report import (
    CSV_COLUMNS,
    ClipResult,
    UtteranceResult,
    frame_strip,
    mark_errors,
    ordered_groups,
    png_data_uri,
    probability_image,
    render_csv,
    render_html,
    timeline_strip,
    write_report,
)
from utils.scoring.sentence_metrics import GroupedErrorRates
from utils.text.grid_text import BLANK, NUM_CLASSES
from utils.text.timings import WordTiming

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _decode_uri(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    png = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(png, cv2.IMREAD_COLOR)[..., ::-1]


def _log_probs(t: int = 30, hot: int = BLANK) -> np.ndarray:
    logits = np.zeros((t, NUM_CLASSES))
    logits[:, hot] = 10.0
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def test_png_data_uri_round_trips_rgb_exactly():
    image = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode_uri(png_data_uri(image)), image)


def test_frame_strip_picks_first_and_last_frames_in_order():
    frames = np.zeros((75, 4, 6, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(75)[:, None, None]  # red channel = frame index
    strip = frame_strip(frames, max_frames=5)
    assert strip.shape == (4, 5 * 6 + 4 * 2, 3)
    assert [int(strip[0, i * 8, 0]) for i in range(5)] == [0, 18, 37, 56, 74]
    assert frame_strip(frames[:3], max_frames=5).shape[1] == 3 * 6 + 2 * 2
    with pytest.raises(ValueError, match="shape"):
        frame_strip(np.zeros((4, 6, 3), np.uint8))


def test_probability_image_is_bright_where_the_class_is_probable():
    image = probability_image(_log_probs(30, hot=BLANK))
    assert image.dtype == np.uint8 and image.ndim == 3
    cell_h = (image.shape[0] - 14) // NUM_CLASSES
    x = image.shape[1] - 3  # inside the last frame's column, right of the labels
    blank_row, a_row = image[BLANK * cell_h + cell_h // 2, x], image[cell_h // 2, x]
    assert int(blank_row.sum()) > int(a_row.sum()) + 200  # viridis: yellow at 1, dark purple at 0
    wider = probability_image(_log_probs(60))
    assert wider.shape[1] > image.shape[1] and wider.shape[0] == image.shape[0]
    with pytest.raises(ValueError, match="log-probabilities"):
        probability_image(np.zeros((5, 27)))


def test_mark_errors_marks_wrong_and_missed_words():
    target_html, pred_html = mark_errors("bin blue at f two now", "bin red at two now again")
    assert target_html == ('bin <span class="missed">blue</span> at <span class="missed">f</span> two now')
    assert pred_html == ('bin <span class="wrong">red</span> at two now <span class="wrong">again</span>')
    assert mark_errors("set white", "set white") == ("set white", "set white")


def test_text_is_escaped_everywhere():
    evil = '<script>alert("x")</script>&'
    results = [ClipResult(evil, prediction=evil, target=evil + " b"), ClipResult("v<1>.mp4", error=f"{evil}: no face")]
    page = render_html(results, title=evil, details={evil: evil})
    assert "<script>" not in page and 'alert("x")' not in page
    assert page.count("&lt;script&gt;") >= 6
    assert "v&lt;1&gt;.mp4" in page and "&amp;: no face" in page


def test_report_shows_images_scores_and_rates():
    frames = np.full((20, 8, 16, 3), 99, np.uint8)
    rates = GroupedErrorRates()
    for speaker, target, pred in [("s10", "a b", "a b"), ("s2", "a b", "a c"), ("s2", "c", "c")]:
        rates.add(speaker, target, pred)
    results = [ClipResult("s2/x", prediction="a c", target="a b", frames=frames, log_probs=_log_probs(20)),
               ClipResult("s10/y", prediction="a b", target="a b")]
    page = render_html(results, "t", rates=rates)
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', page)
    assert len(uris) == 2
    assert _decode_uri(uris[0]).shape == frame_strip(frames).shape
    assert "CER 33.33%" in page and "WER 50.00%" in page  # s2/x: 1 of 3 characters, 1 of 2 words
    assert page.index("<td>s2</td>") < page.index("<td>s10</td>")  # natural speaker order
    assert [name for name, _ in ordered_groups(rates)] == ["s2", "s10"]


def test_limit_keeps_failures_and_notes_the_rest():
    results = [ClipResult(f"c{i}", "x", "x") for i in range(5)] + [ClipResult("bad.mp4", error="bad.mp4: broken")]
    page = render_html(results, "t", limit=2)
    assert page.count('<section class="clip"') == 2
    assert page.count('<section class="clip failed"') == 1
    assert "3 more clip(s)" in page


def test_csv_has_the_columns_and_empty_scores_without_target():
    text = render_csv([ClipResult("s1/a", prediction="bin blu", target="bin blue"), ClipResult("v.mp4", "lay"),
                       ClipResult("w.mp4", error="w.mp4: no face"),
                       ClipResult("x.mp4", "lay", warnings=["x.mp4: read in part", "subtitles not written"])])
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1] == ["s1/a", "bin blue", "bin blu", f"{1 / 8:.4f}", "0.5000", "", ""]
    assert rows[2] == ["v.mp4", "", "lay", "", "", "", ""]
    assert rows[3] == ["w.mp4", "", "", "", "", "w.mp4: no face", ""]
    assert rows[4] == ["x.mp4", "", "lay", "", "", "", "x.mp4: read in part; subtitles not written"]


def test_warnings_show_above_a_clips_reading_escaped():
    page = render_html([ClipResult("a.mp4", "lay", warnings=["a.mp4: read in part, <cut>"]), ClipResult("b.mp4", "x")],
                       "t")
    assert page.count('class="warning"') == 1
    assert '<p class="warning">warning: a.mp4: read in part, &lt;cut&gt;</p>' in page
    assert page.index("warning: a.mp4") < page.index("<th>Prediction</th><td>lay")


def test_write_report_replaces_atomically(tmp_path: Path):
    out = tmp_path / "deep" / "out"
    csv_path, html_path = write_report(out, [ClipResult("a", "x", "x")], "first")
    assert "first" in html_path.read_text() and csv_path.read_text().startswith("clip,")
    write_report(out, [ClipResult("b", "y", "y")], "second")
    assert "second" in html_path.read_text() and "first" not in html_path.read_text()
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "report.html"]  # no temporary files left


def test_timeline_strip_shows_the_middle_frame_of_equal_time_slices():
    frames = np.zeros((75, 4, 6, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(75)[:, None, None]
    strip = timeline_strip(frames, 15)
    assert strip.shape == (4, 15 * 6 + 14 * 2, 3)
    assert [int(strip[0, i * 8, 0]) for i in range(15)] == list(range(2, 75, 5))
    assert timeline_strip(frames[:4], 15).shape[1] == 4 * 6 + 3 * 2  # never more slots than frames
    with pytest.raises(ValueError, match="shape"):
        timeline_strip(np.zeros((0, 4, 6, 3), np.uint8), 3)


def _utterance(start: float, words: list[tuple[str, float, float]], face: int = 0, frames: int = 50) -> UtteranceResult:
    timings = [WordTiming(w, s, e, 0.9) for w, s, e in words]
    return UtteranceResult(start, start + frames / 25, " ".join(w for w, _, _ in words), timings,
                           np.full((frames, 8, 16, 3), 99, np.uint8), _log_probs(frames), face)


def _word_boxes(page: str) -> list[tuple[str, float, float]]:
    return [(word, float(left), float(width)) for left, width, word in
            re.findall(r'class="word[^"]*"[^>]*style="left:([\d.]+)%;width:([\d.]+)%[^"]*">([^<]*)</span>', page)]


def test_utterances_show_their_span_text_and_words_placed_on_the_strip():
    utterances = [_utterance(4.0, [("bin", 4.2, 4.6), ("blue", 4.8, 5.4)]),
                  _utterance(7.0, [("a<b>", 7.5, 8.0)], frames=25)]
    clip = ClipResult("talk.mp4", "bin blue a<b>", frames=np.zeros((100, 8, 16, 3), np.uint8),
                      log_probs=_log_probs(100), utterances=utterances)
    page = render_html([clip], "t")
    assert "4.00&ndash;6.00 s" in page and "7.00&ndash;8.00 s" in page
    assert '<span class="said">bin blue</span>' in page and "a&lt;b&gt;" in page and "a<b>" not in page
    # word boxes: left and width as shares of the utterance's span
    assert _word_boxes(page) == [("bin", 10.0, 20.0), ("blue", 40.0, 30.0), ("a&lt;b&gt;", 50.0, 50.0)]
    assert 'title="blue: 4.80-5.40 s, confidence 0.90"' in page
    # per utterance a time-true strip and a heat map, none for the whole clip
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', page)
    assert len(uris) == 4
    assert _decode_uri(uris[0]).shape == timeline_strip(utterances[0].frames, 10).shape  # 2 s: 10 slots
    assert _decode_uri(uris[2]).shape == timeline_strip(utterances[1].frames, 5).shape
    assert "face 0" not in page  # one face: not labelled
    two_faces = render_html([ClipResult("v.mp4", "x", utterances=[utterances[0], _utterance(4.0, [], face=1)])], "t")
    assert "face 0 &middot;" in two_faces and "face 1 &middot;" in two_faces and "(nothing read)" in two_faces


def test_clips_without_utterances_keep_their_strip_and_heat_map():
    page = render_html([ClipResult("s1/x", "a", frames=np.zeros((20, 8, 16, 3), np.uint8), log_probs=_log_probs(20))],
                       "t")
    assert len(re.findall(r'src="data:image/png', page)) == 2 and 'class="utterance"' not in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_word_boxes_sit_under_their_frames_in_a_browser(tmp_path: Path):
    """Rendered for real: each word box starts and ends where its time falls on the strip above it."""
    utterance = _utterance(4.0, [("bin", 4.2, 4.6), ("blue", 4.8, 5.4), ("at", 5.5, 5.9)])
    page = render_html([ClipResult("talk.mp4", utterance.text, utterances=[utterance])], "t")
    probe = ("<script>window.addEventListener('load',()=>{const s=document.querySelector('img.strip')"
             ".getBoundingClientRect();document.title=[...document.querySelectorAll('.word')].map(w=>{"
             "const r=w.getBoundingClientRect();return w.textContent+':'+((r.left-s.left)/s.width).toFixed(3)+"
             "':'+((r.right-s.left)/s.width).toFixed(3)}).join(' ')+' strip '+s.width.toFixed(0)});</script></body>")
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", probe))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1280,800", "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", result.stdout)
    assert title, f"no DOM from chromium: {result.stderr[-2000:]}"
    *boxes, _, width = title.group(1).split(" ")
    assert int(width) == 10 * 16 + 9 * 2  # the strip at its own size
    placed = {word: (float(left), float(right)) for word, left, right in (b.split(":") for b in boxes)}
    for word in utterance.words:
        left, right = placed[word.word]
        assert left == pytest.approx((word.start - 4.0) / 2.0, abs=0.01)
        assert right == pytest.approx((word.end - 4.0) / 2.0, abs=0.01)
