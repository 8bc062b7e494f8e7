"""The live read's window (utils/video/live_window.py): no display found without touching OpenCV's GUI,
the overlay drawn where it should be, and show() reporting q, Esc and a closed window; OpenCV's
window calls are replaced, so no display is needed."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from utils.video import live_window
from utils.video.live_window import BOX_COLOUR, LiveWindow, NoDisplay, draw_overlay


def _no_gui(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test, instead of risking an abort, if OpenCV's GUI is reached."""
    def touched(*args: object) -> None:
        raise AssertionError("OpenCV's GUI was touched")

    monkeypatch.setattr(cv2, "namedWindow", touched)


def test_open_without_a_display_raises_no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_gui(monkeypatch)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(NoDisplay) as raised:
        LiveWindow.open("read")
    assert raised.value.reason == "neither DISPLAY nor WAYLAND_DISPLAY is set"


def test_open_with_no_x_server_at_display_raises_no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_gui(monkeypatch)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("DISPLAY", ":987")  # no X server there
    with pytest.raises(NoDisplay, match="no X server answers at DISPLAY=:987"):
        LiveWindow.open("read")


def test_open_reports_a_headless_opencv_as_no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    def headless(*args: object) -> None:
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(live_window, "_no_display_reason", lambda: None)
    monkeypatch.setattr(cv2, "namedWindow", headless)
    with pytest.raises(NoDisplay, match="OpenCV cannot open a window"):
        LiveWindow.open("read")


def test_draw_overlay_draws_the_box_and_the_last_lines_over_a_dark_band() -> None:
    image = np.full((288, 360, 3), (10, 120, 230), np.uint8)  # RGB
    plain = draw_overlay(image, None, [])
    assert plain.shape == image.shape and (plain == (230, 120, 10)).all()  # BGR out, nothing drawn

    picture = draw_overlay(image, (100, 60, 200, 140), ["OLDEST", "BIN BLUE", "AT F", "TWO NOW"])
    assert (image == (10, 120, 230)).all()  # the input is not drawn on
    assert (picture[60, 100:201] == BOX_COLOUR).all() and (picture[60:141, 200] == BOX_COLOUR).all()
    assert (picture[100, 150] == (230, 120, 10)).all()  # inside the box: the video
    band = picture[200:]
    rows = np.flatnonzero((band != (230, 120, 10)).any(axis=(1, 2))) + 200
    assert rows.max() == 287 and rows.min() > 150  # a band at the bottom, the top left alone
    assert (picture[rows.min(), 350] < (230, 120, 10)).all()  # darkened there
    bright = (picture[rows.min():] > 240).all(axis=2)
    assert bright.any()  # the newest line is written in white

    fewer = draw_overlay(image, None, ["AT F", "TWO NOW"])
    assert ((fewer != (230, 120, 10)).any(axis=(1, 2))).sum() < len(rows)  # two lines: a lower band
    with_old = draw_overlay(image, None, ["OLDEST", "BIN BLUE", "AT F", "TWO NOW"])
    assert (with_old == draw_overlay(image, None, ["BIN BLUE", "AT F", "TWO NOW"])).all()  # the last three


def test_draw_overlay_shrinks_wide_frames_and_their_box() -> None:
    image = np.zeros((1080, 1920, 3), np.uint8)
    picture = draw_overlay(image, (400, 200, 800, 600), [])
    assert picture.shape == (540, 960, 3)
    ys, xs = np.nonzero((picture == BOX_COLOUR).all(axis=2))
    assert abs(ys.min() - 100) <= 2 and abs(ys.max() - 300) <= 2  # the box halved with the frame
    assert abs(xs.min() - 200) <= 2 and abs(xs.max() - 400) <= 2
    with pytest.raises(ValueError, match="RGB uint8"):
        draw_overlay(np.zeros((10, 10), np.uint8), None, [])


@pytest.mark.parametrize(("key", "visible", "goes_on"),
                         [(-1, 1.0, True), (ord("q"), 1.0, False), (27, 1.0, False), (ord("x"), 1.0, True),
                          (-1, 0.0, False)])
def test_show_stops_on_q_esc_or_a_closed_window(monkeypatch: pytest.MonkeyPatch, key: int, visible: float,
                                                goes_on: bool) -> None:
    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda title, picture: shown.append((title, picture.shape)))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: -1 if len(shown) < 3 else key)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda title, prop: 1.0 if len(shown) < 2 else visible)
    window = LiveWindow("read")
    image = np.zeros((48, 64, 3), np.uint8)
    assert window.show(image, (10, 10, 20, 20), ["A"])
    assert window.show(image, None, ["A"])
    assert window.show(image, None, ["A", "B"]) is goes_on
    assert shown[0] == ("read", (48, 64, 3))
    assert len(shown) == (3 if goes_on or visible else 2)  # a closed window is not opened again
