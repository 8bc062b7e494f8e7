"""A window for a live read: the video as it is read, the tracked mouth box and the last few
utterances' text, through OpenCV's HighGUI.

OpenCV's Qt (or GTK) backend aborts the whole process when it finds no display, so ``LiveWindow.open``
checks for one before touching the GUI: on Linux, DISPLAY (whose X server must answer) or
WAYLAND_DISPLAY; a build without a GUI (opencv-python-headless) raises cv2.error, which is caught too.
Either way the caller gets ``NoDisplay`` and can read on without the window.
"""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

MAX_WIDTH = 960  # wider frames are shown shrunk, which also keeps drawing cheap: 2.3 ms for a 1280x720 frame
MAX_LINES = 3  # the utterances shown, newest at the bottom
BOX_COLOUR = (0, 255, 0)  # BGR
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_QUIT_KEYS = {ord("q"), ord("Q"), 27}  # 27: Esc


class NoDisplay(Exception):
    """No window can be opened here; ``reason`` says why (for a message such as "--show: no display
    (REASON); reading on without the window")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _x_server_answers(display: str) -> bool:
    """Whether an X server accepts a connection at ``display`` (``[host]:N[.S]``): Qt's xcb plugin
    aborts the process when it cannot connect, so this is asked first."""
    host, _, number = display.rpartition(":")
    try:
        n = int(number.split(".")[0])
    except ValueError:
        return False
    if host in ("", "unix"):
        addresses = [(socket.AF_UNIX, f"\0/tmp/.X11-unix/X{n}"), (socket.AF_UNIX, f"/tmp/.X11-unix/X{n}")]
    else:
        addresses = [(socket.AF_INET, (host, 6000 + n))]
    for family, address in addresses:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(address)
            return True
        except OSError:
            continue
    return False


def _qt_without_wayland() -> bool:
    """Whether OpenCV's GUI is Qt with only X11's platform plugin (as in the opencv-python wheels)."""
    if not cv2.currentUIFramework().upper().startswith("QT"):
        return False
    platforms = Path(cv2.__file__).parent / "qt" / "plugins" / "platforms"
    return platforms.is_dir() and not any("wayland" in p.name for p in platforms.iterdir())


def _no_display_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    display, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if not display and not wayland:
        return "neither DISPLAY nor WAYLAND_DISPLAY is set"
    if display and not _x_server_answers(display):
        return f"no X server answers at DISPLAY={display}"
    if not display and _qt_without_wayland():
        return "only WAYLAND_DISPLAY is set, and OpenCV's Qt window needs X11 (DISPLAY)"
    return None


def _fit(text: str, width: int, scale: float, thickness: int) -> str:
    """``text``, or its end after "..." when it is wider than ``width`` px: the newest words matter most."""
    words, fitted = text.split(), text
    while len(words) > 1 and cv2.getTextSize(fitted, _FONT, scale, thickness)[0][0] > width:
        words = words[1:]
        fitted = "... " + " ".join(words)
    return fitted


def draw_overlay(image: np.ndarray, box: tuple[float, float, float, float] | None, lines: Sequence[str],
                 max_width: int = MAX_WIDTH) -> np.ndarray:
    """A BGR picture to show: ``image`` (RGB uint8, not changed) shrunk to at most ``max_width`` px wide,
    ``box`` (x0, y0, x1, y1 in ``image`` pixels) drawn as a green rectangle, and the last
    ``MAX_LINES`` non-blank ``lines`` written at the bottom over a darkened band, so that they read
    on any video. OpenCV's font is ASCII only: other characters show as "?"."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    scale = min(1.0, max_width / width)
    if scale < 1:  # bilinear: 0.9 ms from 1280x720 to 960x540, where INTER_AREA took 4 ms
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR)
    picture = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    height, width = picture.shape[:2]
    thickness = max(1, round(width / 480))
    shown = [" ".join(line.split()) for line in lines if line.strip()][-MAX_LINES:]
    if shown:
        font_scale = max(0.4, width / 1200)  # 0.8 at 960 px: three lines take a fifth of the height
        (_, text_height), baseline = cv2.getTextSize("Ag", _FONT, font_scale, thickness)
        pad = max(4, text_height // 2)
        line_height = text_height + baseline + pad
        top = max(0, height - len(shown) * line_height - pad)
        picture[top:] //= 3  # the dark band
        for i, line in enumerate(shown):
            newest = i == len(shown) - 1
            text = _fit(line.encode("ascii", "replace").decode(), width - 2 * pad, font_scale, thickness)
            cv2.putText(picture, text, (pad, top + pad + text_height + i * line_height), _FONT, font_scale,
                        (255, 255, 255) if newest else (190, 190, 190), thickness, cv2.LINE_AA)
    if box is not None:  # over the band: a mouth low in the picture stays visible
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        cv2.rectangle(picture, (x0, y0), (x1, y1), BOX_COLOUR, thickness)
    return picture


class LiveWindow:
    """One OpenCV window (``open`` makes it): ``show`` each frame, ``close`` at the end."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._shown = False

    @classmethod
    def open(cls, title: str) -> LiveWindow:
        """The window, or NoDisplay(reason) when none can be opened here (checked before OpenCV's GUI
        is touched, since its backend may abort the process without a display)."""
        reason = _no_display_reason()
        if reason is not None:
            raise NoDisplay(reason)
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as err:
            raise NoDisplay(f"OpenCV cannot open a window: {err.err or err}") from None
        return cls(title)

    def show(self, image: np.ndarray, box: tuple[float, float, float, float] | None,
             lines: Sequence[str]) -> bool:
        """Draw and show one frame (see ``draw_overlay``); False once the user has pressed q or Esc or
        closed the window (the caller then stops, as on Ctrl-C)."""
        if self._shown and self._closed_by_user():
            return False  # imshow would open the window again
        cv2.imshow(self.title, draw_overlay(image, box, lines))
        self._shown = True
        return (cv2.waitKey(1) & 0xFF) not in _QUIT_KEYS

    def _closed_by_user(self) -> bool:
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # lets HighGUI process the destroy
        except cv2.error:
            pass  # already gone
