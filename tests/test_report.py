"""The inference report: images from arrays, marked errors, escaping, CSV, atomic writes."""
import base64
import csv
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.report import (
    CSV_COLUMNS,
    ClipResult,
    frame_strip,
    mark_errors,
    ordered_groups,
    png_data_uri,
    probability_image,
    render_csv,
    render_html,
    write_report,
)
from utils.text.grid_text import BLANK, NUM_CLASSES
from utils.text.metrics import GroupedErrorRates


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
                       ClipResult("w.mp4", error="w.mp4: no face")])
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1] == ["s1/a", "bin blue", "bin blu", f"{1 / 8:.4f}", "0.5000", ""]
    assert rows[2] == ["v.mp4", "", "lay", "", "", ""]
    assert rows[3] == ["w.mp4", "", "", "", "", "w.mp4: no face"]


def test_write_report_replaces_atomically(tmp_path: Path):
    out = tmp_path / "deep" / "out"
    csv_path, html_path = write_report(out, [ClipResult("a", "x", "x")], "first")
    assert "first" in html_path.read_text() and csv_path.read_text().startswith("clip,")
    write_report(out, [ClipResult("b", "y", "y")], "second")
    assert "second" in html_path.read_text() and "first" not in html_path.read_text()
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "report.html"]  # no temporary files left
