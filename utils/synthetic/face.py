"""Whole synthetic faces around the synthetic mouth, for videos that go through the real face path.

A mouth clip (``utils.synthetic.render_frames``) is enough for training on crops, but captioned
talks must go through what real videos go through: dlib's face detector, its 68 landmarks, the
tracker and the crop. So each frame is a drawn face (hair, ears, brows, eyes, nose, jaw shading; flat
shapes with blurred edges) whose mouth region is the rendered mouth, blended in with a soft
elliptical mask. dlib's HOG detector finds these faces on every frame tried, and the landmark fit
puts the mouth centre within about a pixel of the drawn mouth's centre (measured on 320x240 frames
with 45-pixel-wide mouths).

The mouth is narrow for the face (0.56-0.64 of the face's half-width, drawn at half the face's
half-height below its centre), so the mouth crop, 2.75 mouth widths wide as for GRID, shows cheek
on both sides rather than the jaw's outline and the background (with a mouth of 0.66-0.76 half-widths
the outline filled the crop's lower corners).

Faces differ per speaker in hair colour and cut, face shape, eye colour and spacing, background,
position in the frame and size, on top of the mouth's own colours and style.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FRAME_SIZE = (320, 240)  # (width, height) of a talk's frames
_FACE_STREAM = 4  # random stream tag, apart from utils.synthetic's speaker, sentence and clip streams


@dataclass(frozen=True)
class FaceStyle:
    """How one synthetic speaker's face is drawn (colours RGB 0-255, lengths in pixels)."""

    background: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    centre: tuple[int, int]  # face centre in the frame
    half_width: int
    half_height: int
    eye_gap: int  # half the distance between the eyes
    hair_depth: int  # how far the hair comes down the forehead
    mouth_width: int  # the mouth's rest width, corner to corner


def make_face_style(seed: int, speaker: int, size: tuple[int, int] = FRAME_SIZE) -> FaceStyle:
    rng = np.random.default_rng([seed, _FACE_STREAM, speaker])
    width, height = size
    half_width = int(rng.integers(56, 68))
    half_height = int(half_width * rng.uniform(1.22, 1.38))
    background = tuple(int(v) for v in rng.integers(50, 200, 3))
    hair = tuple(int(v) for v in rng.choice([[35, 25, 20], [90, 60, 30], [160, 120, 70], [20, 20, 22],
                                             [120, 40, 25], [170, 170, 165]]))
    iris = tuple(int(v) for v in rng.choice([[60, 40, 30], [40, 90, 140], [60, 110, 60], [110, 80, 40]]))
    cx = width // 2 + int(rng.integers(-25, 26))
    cy = height // 2 + int(rng.integers(-8, 9))
    return FaceStyle(background, hair, iris, (cx, cy), half_width, half_height,
                     eye_gap=int(half_width * rng.uniform(0.38, 0.46)), hair_depth=int(rng.integers(8, 26)),
                     mouth_width=int(half_width * rng.uniform(0.56, 0.64)))


def mouth_centre(style: FaceStyle) -> tuple[float, float]:
    """Where the mouth's centre is drawn, frame pixels (x, y)."""
    return float(style.centre[0]), style.centre[1] + 0.5 * style.half_height


def draw_face(style: FaceStyle, skin: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """The still face without its mouth (the mouth region is plain skin), RGB uint8 (H, W, 3)."""
    width, height = size
    image = np.empty((height, width, 3), np.uint8)
    image[:] = style.background
    cx, cy = style.centre
    fw, fh = style.half_width, style.half_height
    tone = tuple(int(v) for v in skin)
    shade = tuple(int(v * 0.82) for v in skin)
    dark = tuple(int(v * 0.62) for v in skin)
    cv2.ellipse(image, (cx, cy - fh // 4), (fw + 7, fh - fh // 4 + 10), 0, 180, 360, style.hair, -1, cv2.LINE_AA)
    for side in (-1, 1):
        cv2.ellipse(image, (cx + side * fw, cy + 2), (9, 19), 0, 0, 360, shade, -1, cv2.LINE_AA)
    cv2.ellipse(image, (cx, cy), (fw, fh), 0, 0, 360, tone, -1, cv2.LINE_AA)
    cv2.ellipse(image, (cx, cy - fh + style.hair_depth // 2), (fw - 6, style.hair_depth), 0, 180, 360,
                style.hair, -1, cv2.LINE_AA)
    eye_y = cy - fh // 5
    for side in (-1, 1):
        ex = cx + side * style.eye_gap
        cv2.ellipse(image, (ex, eye_y - 15), (16, 5), 0, 180, 360, style.hair, 3, cv2.LINE_AA)
        cv2.ellipse(image, (ex, eye_y), (12, 6), 0, 0, 360, (245, 245, 242), -1, cv2.LINE_AA)
        cv2.circle(image, (ex, eye_y), 5, style.iris, -1, cv2.LINE_AA)
        cv2.circle(image, (ex, eye_y), 2, (15, 10, 10), -1, cv2.LINE_AA)
        cv2.ellipse(image, (ex, eye_y), (12, 6), 0, 0, 360, dark, 1, cv2.LINE_AA)
    nose_y = cy + fh // 4
    cv2.line(image, (cx - 3, eye_y + 4), (cx - 7, nose_y - 2), shade, 2, cv2.LINE_AA)
    cv2.ellipse(image, (cx, nose_y), (10, 5), 0, 0, 180, dark, 2, cv2.LINE_AA)
    return cv2.GaussianBlur(image, (0, 0), 1.0)


def paste_mouth(face: np.ndarray, mouth: np.ndarray, at: tuple[float, float], mask: np.ndarray) -> np.ndarray:
    """``face`` with the mouth patch blended in so that the patch's top-left corner is at ``at`` (the
    patch's pixels weighted by ``mask``, (h, w) float in [0, 1])."""
    out = face.copy()
    h, w = mouth.shape[:2]
    x0, y0 = int(round(at[0])), int(round(at[1]))
    region = out[y0:y0 + h, x0:x0 + w].astype(np.float32)
    blended = region + mask[..., None] * (mouth.astype(np.float32) - region)
    out[y0:y0 + h, x0:x0 + w] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


def soft_mask(size: tuple[int, int]) -> np.ndarray:
    """(h, w) weights: 1 over the central ellipse of a patch, fading to 0 at its edges."""
    w, h = size
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.36), int(h * 0.34)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), max(w, h) * 0.06)


def shift(frame: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The frame moved by (dx, dy) pixels (head motion), edges repeated."""
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(frame, matrix, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
