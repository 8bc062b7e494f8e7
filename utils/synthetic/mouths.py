"""Synthetic mouths: the shapes each character is said with, speakers, the timing of a sentence, the
co-articulated trajectory through the shapes, and the frames drawn from it (see the package's docstring).
Deterministic: a clip's random stream comes from ``(seed, speaker, index)`` only."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from utils.synthetic.record import SetMismatch as SetMismatch  # what generate() raises, for its callers
from utils.text.grid_text import GRAMMAR, sentence_from_clip_name

DEFAULT_SIZE = (100, 50)  # (width, height), the GRID mouth-crop size
N_FRAMES = 75  # 3 s at 25 fps, like every GRID clip
ALIGN_END = 74500  # real GRID aligns end their trailing silence at 74.5 frames
SHAPE_FRAMES = 2.2  # mean frames per shape at an average speaking rate
N_SENTENCES = int(np.prod([len(slot) for slot in GRAMMAR]))  # 64,000

# Mouth parameters, one row per shape class:
# opening, width, rounding, lip thickness, upper teeth, lower teeth, tongue, lower-lip tuck.
PARAMS = ("open", "width", "round", "thick", "teeth_up", "teeth_low", "tongue", "tuck")
SHAPES: dict[str, tuple[float, ...]] = {
    "rest": (0.04, 1.00, 0.25, 1.00, 0.00, 0.00, 0.00, 0.0),  # relaxed, lips together
    "C": (0.00, 1.04, 0.10, 0.55, 0.00, 0.00, 0.00, 0.0),  # lips pressed: b m p
    "F": (0.16, 1.02, 0.10, 0.90, 1.00, 0.00, 0.00, 1.0),  # lower lip under upper teeth: f v
    "S": (0.20, 1.24, 0.00, 0.85, 1.00, 1.00, 0.00, 0.0),  # teeth together, spread: c j s x z
    "T": (0.45, 1.08, 0.10, 0.90, 0.50, 0.20, 1.00, 0.0),  # tongue tip between teeth: d l n t
    "K": (0.52, 0.94, 0.35, 1.00, 0.15, 0.00, 0.35, 0.0),  # mid-open, relaxed: g h k q
    "A": (1.00, 1.02, 0.30, 0.90, 0.45, 0.25, 0.25, 0.0),  # wide open: a
    "E": (0.42, 1.30, 0.00, 0.80, 0.90, 0.60, 0.10, 0.0),  # spread with teeth: e i y
    "O": (0.70, 0.72, 0.85, 1.25, 0.10, 0.00, 0.15, 0.0),  # rounded open: o
    "W": (0.20, 0.58, 1.00, 1.45, 0.00, 0.00, 0.00, 0.0),  # tight round, protruded: r u w
}
SHAPE_NAMES = tuple(SHAPES)
SHAPE_TABLE = np.array([SHAPES[name] for name in SHAPE_NAMES], dtype=np.float32)
REST = SHAPE_NAMES.index("rest")
# How strongly a shape pulls the mouth against its neighbours: closures must be reached.
DOMINANCE = {"C": 1.8, "F": 1.5, "W": 1.3, "S": 1.2, "rest": 0.8}
_DOMINANCE = np.array([DOMINANCE.get(name, 1.0) for name in SHAPE_NAMES], dtype=np.float32)

# The shape of every character: viseme classes, so most shapes stand for several characters.
CHARACTER_SHAPES: dict[str, str] = {
    "a": "A", "b": "C", "c": "S", "d": "T", "e": "E", "f": "F", "g": "K", "h": "K", "i": "E",
    "j": "S", "k": "K", "l": "T", "m": "C", "n": "T", "o": "O", "p": "C", "q": "K", "r": "W",
    "s": "S", "t": "T", "u": "W", "v": "F", "w": "W", "x": "S", "y": "E", "z": "S",
}
# A single-letter word is said as the letter's name: two shapes in a row. Every pair is unique,
# while each shape starts or ends several names, so neither frame alone tells the letter.
LETTER_NAMES: dict[str, tuple[str, str]] = {
    "a": ("A", "E"), "b": ("C", "K"), "c": ("S", "O"), "d": ("T", "A"), "e": ("E", "K"),
    "f": ("F", "E"), "g": ("K", "A"), "h": ("K", "S"), "i": ("A", "S"), "j": ("S", "K"),
    "k": ("K", "E"), "l": ("T", "K"), "m": ("C", "O"), "n": ("T", "O"), "o": ("O", "W"),
    "p": ("C", "A"), "q": ("K", "O"), "r": ("W", "A"), "s": ("S", "E"), "t": ("T", "E"),
    "u": ("E", "W"), "v": ("F", "A"), "w": ("W", "E"), "x": ("F", "O"), "y": ("W", "O"),
    "z": ("S", "A"),
}

# Stream tags keep the speaker, sentence and clip random streams apart for the same seed.
_SPEAKER_STREAM, _SENTENCE_STREAM, _CLIP_STREAM = 1, 2, 3


def word_shapes(word: str) -> list[int]:
    """Shape-class ids of a word as said: one per character, or a letter's name."""
    shapes = LETTER_NAMES[word] if len(word) == 1 else [CHARACTER_SHAPES[c] for c in word]
    return [SHAPE_NAMES.index(s) for s in shapes]


def visible_shapes(word: str) -> list[int]:
    """The shape sequence a viewer can see: a shape repeated in a row looks like one held shape."""
    shapes = word_shapes(word)
    return [s for i, s in enumerate(shapes) if i == 0 or s != shapes[i - 1]]


# ---------------------------------------------------------------------------------------------
# Sentences


def sentence_code(index: int) -> str:
    """The six-letter GRID clip name of sentence ``index`` (0 <= index < 64,000)."""
    if not 0 <= index < N_SENTENCES:
        raise ValueError(f"sentence index {index} is outside 0..{N_SENTENCES - 1}")
    letters = []
    for slot in reversed(GRAMMAR):
        index, digit = divmod(index, len(slot))
        letters.append(list(slot)[digit])
    return "".join(reversed(letters))


def speaker_sentences(seed: int, speaker: int, count: int) -> list[str]:
    """Clip names of a speaker's first ``count`` sentences, drawn without replacement.

    Drawn as a prefix of one fixed permutation so that asking for more clips later keeps the
    clips already made (resuming with a larger ``clips_per_speaker`` only adds clips).
    """
    if not 0 <= count <= N_SENTENCES:
        raise ValueError(f"clips_per_speaker must be between 0 and {N_SENTENCES}, got {count}")
    order = np.random.default_rng([seed, _SENTENCE_STREAM, speaker]).permutation(N_SENTENCES)
    return [sentence_code(int(i)) for i in order[:count]]


# ---------------------------------------------------------------------------------------------
# Speakers


@dataclass(frozen=True)
class Speaker:
    """Appearance and speaking style of one synthetic speaker."""

    number: int
    skin: np.ndarray  # RGB 0-255
    lip: np.ndarray
    cavity: np.ndarray
    teeth: np.ndarray
    tongue: np.ndarray
    scale: float  # mouth half-width / image width
    centre: tuple[float, float]  # mouth centre, fractions of width and height
    light: tuple[float, float, float]  # brightness, horizontal and vertical gradient
    texture: np.ndarray  # (6, 12) low-frequency skin shading, upsampled when rendering
    texture_amp: float
    noise: float  # camera noise sigma, grey levels
    motion: float  # head motion, fraction of width
    rate: float  # seconds-per-shape multiplier (>1 is slower)
    crispness: float  # dominance width / shape duration (smaller is crisper)
    style: np.ndarray = field(repr=False)  # per-parameter multipliers: idiosyncratic articulation


def make_speaker(seed: int, speaker: int) -> Speaker:
    rng = np.random.default_rng([seed, _SPEAKER_STREAM, speaker])
    tone = rng.uniform()
    skin = (1 - tone) * np.array([238, 204, 178]) + tone * np.array([98, 66, 50])
    skin = np.clip(skin + rng.normal(0, 7, 3), 30, 250)
    contrast = rng.uniform(0.6, 1.2)
    lip = skin * (1 - contrast * np.array([0.18, 0.45, 0.38])) + rng.normal(0, 5, 3)
    style = np.ones(len(PARAMS))
    style[PARAMS.index("open")] = rng.uniform(0.85, 1.15)
    style[PARAMS.index("width")] = rng.uniform(0.93, 1.07)
    style[PARAMS.index("thick")] = rng.uniform(0.8, 1.25)
    return Speaker(
        number=speaker,
        skin=skin.astype(np.float32),
        lip=np.clip(lip, 15, 245).astype(np.float32),
        cavity=(np.array([48, 16, 20]) * rng.uniform(0.6, 1.3)).astype(np.float32),
        teeth=(np.array([232, 222, 196]) * rng.uniform(0.8, 1.0)).astype(np.float32),
        tongue=(np.array([178, 84, 90]) * rng.uniform(0.8, 1.1)).astype(np.float32),
        scale=float(rng.uniform(0.25, 0.32)),
        centre=(float(rng.uniform(0.45, 0.55)), float(rng.uniform(0.43, 0.57))),
        light=(float(rng.uniform(0.8, 1.15)), float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.2, 0.2))),
        texture=rng.normal(0, 1, (6, 12)).astype(np.float32),
        texture_amp=float(rng.uniform(2, 9)),
        noise=float(rng.uniform(2, 7)),
        motion=float(rng.uniform(0.005, 0.025)),
        rate=float(rng.uniform(0.85, 1.15)),
        crispness=float(rng.uniform(0.45, 0.6)),
        style=style.astype(np.float32),
    )


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class ClipPlan:
    """What is said when: the align segments and the mouth-shape targets of one clip."""

    name: str
    segments: tuple[tuple[int, int, str], ...]  # (start, end, word) in 1/1000 frame, sil/sp included
    key_times: np.ndarray  # (K,) frame times of the shape targets
    key_shapes: np.ndarray  # (K,) shape-class ids
    key_sigma: np.ndarray  # (K,) width of each target's dominance, frames

    @property
    def words(self) -> list[tuple[int, int, str]]:
        return [s for s in self.segments if s[2] not in ("sil", "sp")]

    def dominance(self, times: np.ndarray) -> np.ndarray:
        """(len(times), K) weight of every shape target at every time."""
        d = (times[:, None] - self.key_times[None, :]) / self.key_sigma[None, :]
        return _DOMINANCE[self.key_shapes][None, :] * np.exp(-0.5 * d * d)

    def frame_shapes(self) -> np.ndarray:
        """(T,) the shape class that dominates each frame: the per-frame viseme label."""
        return self.key_shapes[np.argmax(self.dominance(np.arange(N_FRAMES, dtype=np.float64)), axis=1)]

    def align_text(self) -> str:
        return "".join(f"{start} {end} {word}\n" for start, end, word in self.segments)


def _quantise(frame: float) -> int:
    """Align time of a frame position, on GRID's quarter-frame grid."""
    return int(round(frame * 4)) * 250


def plan_clip(name: str, speaker: Speaker, rng: np.random.Generator) -> ClipPlan:
    words = sentence_from_clip_name(name).split(" ")
    rate = speaker.rate * rng.uniform(0.92, 1.08)
    lead = rng.uniform(9.0, 16.0)
    min_trail = 5.0
    shapes = [word_shapes(w) for w in words]
    durations = [rate * rng.uniform(0.8, 1.2, len(s)) * SHAPE_FRAMES for s in shapes]
    margins = [rng.uniform(0.4, 1.2) for _ in words]  # onset/offset around the targets
    pauses = [rng.uniform(1.5, 4.0) if rng.uniform() < 0.2 else 0.0 for _ in words[:-1]] + [0.0]
    total = sum(d.sum() + 2 * m for d, m in zip(durations, margins)) + sum(pauses)
    squeeze = min(1.0, (ALIGN_END / 1000 - lead - min_trail) / total)

    times, key_shapes, sigmas = [], [], []
    edges = [0.0, lead]
    labels = ["sil"]
    t = lead
    for word, word_shapes_, durs, margin, pause in zip(words, shapes, durations, margins, pauses):
        durs, margin, pause = durs * squeeze, margin * squeeze, pause * squeeze
        centres = t + margin + np.cumsum(durs) - durs / 2
        times.extend(centres)
        key_shapes.extend(word_shapes_)
        sigmas.extend(np.maximum(durs * speaker.crispness, 0.35))
        t += durs.sum() + 2 * margin
        labels.append(word)
        edges.append(t)
        if pause:
            times.append(t + pause / 2)
            key_shapes.append(REST)
            sigmas.append(pause / 3)
            t += pause
            labels.append("sp")
            edges.append(t)
    labels.append("sil")
    # Rest targets fill both silences, starting one frame away from speech (anticipation).
    for rest in (np.arange(lead - 1.5, -2.0, -2.0), np.arange(t + 1.5, N_FRAMES + 2.0, 2.0)):
        times.extend(rest)
        key_shapes.extend([REST] * len(rest))
        sigmas.extend([1.0] * len(rest))

    bounds = [_quantise(e) for e in edges] + [ALIGN_END]
    segments = tuple((bounds[i], bounds[i + 1], labels[i]) for i in range(len(labels)))
    return ClipPlan(name, segments, np.array(times), np.array(key_shapes), np.array(sigmas))


def _smooth_noise(rng: np.random.Generator, n: int, knots: int = 8) -> np.ndarray:
    """(n,) slow random wander in [-1, 1]: head drift and lighting flicker."""
    values = rng.uniform(-1, 1, knots)
    return np.interp(np.linspace(0, knots - 1, n), np.arange(knots), values)


def mouth_trajectory(plan: ClipPlan, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """(T, len(PARAMS)) co-articulated mouth parameters: dominance-weighted shape targets."""
    targets = SHAPE_TABLE[plan.key_shapes] * speaker.style
    targets = targets + rng.normal(0, 0.035, targets.shape) * (plan.key_shapes != REST)[:, None]
    rest = plan.key_shapes == REST
    targets[rest, 0] = rng.uniform(0.0, 0.09, rest.sum())  # lips part a little while resting
    weights = plan.dominance(np.arange(N_FRAMES, dtype=np.float64))
    eps = 1e-6
    params = (weights @ targets + eps * SHAPE_TABLE[REST]) / (weights.sum(1, keepdims=True) + eps)
    return np.clip(params, 0, None).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Rendering


_CHUNK_PIXELS = 40_000


def _edge(distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a pixel whose centre is ``distance`` pixels inside an edge."""
    coverage = distance + 0.5
    # np.maximum/np.minimum rather than np.clip: np.clip's Python overhead doubles the drawing time.
    return np.minimum(np.maximum(coverage, 0.0, out=coverage), 1.0, out=coverage)


def render_frames(params: np.ndarray, speaker: Speaker, rng: np.random.Generator,
                  size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a mouth following ``params``.

    All randomness is drawn for the whole clip first, then frames are drawn a few at a time so
    the working arrays stay in the CPU cache (about 2x faster than all 75 frames at once).
    """
    width, height = size
    t_count = len(params)
    drift_x, drift_y, zoom, flicker = (_smooth_noise(rng, t_count).astype(np.float32) for _ in range(4))
    motion = {
        "hw0": speaker.scale * width * (1 + 0.03 * zoom),  # rest half-width, pixels
        "cx": (speaker.centre[0] + speaker.motion * drift_x) * width,
        "cy": (speaker.centre[1] + speaker.motion * drift_y) * height,
        "flicker": 1 + 0.04 * flicker,
    }
    noise = (rng.random((t_count, height, width), dtype=np.float32) - 0.5) * (speaker.noise * 12 ** 0.5)
    ty, tx = np.meshgrid(np.linspace(0, 5, height), np.linspace(0, 11, width), indexing="ij")
    texture = cv2.remap(speaker.texture, tx.astype(np.float32), ty.astype(np.float32), cv2.INTER_LINEAR)
    colours = np.stack([speaker.skin, speaker.lip, speaker.cavity, speaker.tongue, speaker.teeth,
                        np.ones(3, np.float32)]).astype(np.float32)
    frames = np.empty((t_count, height, width, 3), np.uint8)
    chunk = max(1, _CHUNK_PIXELS // (width * height))
    for first in range(0, t_count, chunk):
        part = slice(first, first + chunk)
        weights = _layer_weights(params[part], {k: v[part, None, None] for k, v in motion.items()},
                                 speaker, texture * speaker.texture_amp, noise[part])
        face = weights.reshape(-1, 6) @ colours
        face += 0.5
        frames[part] = np.minimum(np.maximum(face, 0, out=face), 255, out=face).reshape(weights.shape[:3] + (3,))
    return frames


def _layer_weights(params: np.ndarray, motion: dict[str, np.ndarray], speaker: Speaker,
                   texture: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(T, H, W, 6) how much of each layer colour (skin, lips, cavity, tongue, teeth, grey) each pixel shows.

    Each column holds four lip contours (outer/inner, upper/lower) computed analytically, so
    every region is a pair of per-column bounds, anti-aliased by sub-pixel coverage. The weights
    are colour-free, so colouring a frame is one small matrix product.
    """
    t_count, height, width = noise.shape
    p = {name: params[:, i, None, None] for i, name in enumerate(PARAMS)}  # (T, 1, 1)
    y = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    x = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    hw0, cx, cy = motion["hw0"], motion["cx"], motion["cy"]

    hw = hw0 * p["width"]
    u = (x - cx) / hw  # (T, 1, W) position across the mouth, -1..1 between the corners
    across = np.maximum(1 - u * u, 0)
    spread = 1.0 - 0.5 * np.minimum(p["round"], 1)  # spread mouths are lens-shaped, round ones elliptic
    opening = p["open"] * 0.7 * hw0 * across ** spread
    # Closed lips still show a dark seam: the opening never drops below 0.6 pixel.
    y_in_up = cy - 0.38 * opening - 0.3
    y_in_low = cy + 0.62 * opening + 0.3
    lip_profile = across ** 0.35
    bow = 1 - 0.25 * np.exp(-(u / 0.12) ** 2)  # Cupid's bow dip in the upper lip
    thick = p["thick"] * (1 + 0.25 * p["round"])
    y_out_up = y_in_up - 0.20 * hw0 * thick * lip_profile * bow
    y_out_low = y_in_low + 0.26 * hw0 * thick * (1 - 0.45 * p["tuck"]) * lip_profile
    corner = _edge((1 - np.abs(u)) * hw)  # (T, 1, W)
    teeth_w = np.maximum(1 - (u / 0.75) ** 2, 0) ** 0.3
    gaps = 0.88 + 0.12 * np.abs(np.cos(np.pi * 3.5 * u))
    tongue_top = y_in_low - (0.15 + 0.6 * p["tongue"]) * opening * np.maximum(1 - (u / 0.65) ** 2, 0)
    lower_mid = (y_in_low + y_out_low) / 2

    mouth = _edge(y - y_out_up) * _edge(y_out_low - y) * corner  # (T, H, W)
    cavity = _edge(y - y_in_up) * _edge(y_in_low - y) * corner
    upper_teeth = _edge(y_in_up + p["teeth_up"] * 0.22 * hw0 * teeth_w - y)
    lower_teeth = _edge(y - (y_in_low - p["teeth_low"] * 0.18 * hw0 * teeth_w))
    tongue = _edge(y - tongue_top)
    # The upper teeth cover everything; the tongue tip comes in front of the lower teeth as it rises.
    front = p["tongue"]
    behind_upper = 1 - upper_teeth
    tongue_seen = tongue * behind_upper * (front + (1 - front) * (1 - lower_teeth))
    teeth_seen = upper_teeth + behind_upper * lower_teeth * (1 - front * tongue)
    cavity_seen = behind_upper * (1 - lower_teeth) * (1 - tongue)
    depth = 0.6 + 0.4 * np.minimum(p["open"], 1)  # an open mouth lets light in
    below = y > cy
    shine = 1 + 0.18 * np.exp(-((y - lower_mid) / (0.08 * hw0)) ** 2) * (1 - 0.6 * p["tuck"]) * below
    lip_light = shine * (1 - 0.25 * p["tuck"] * below)

    brightness, gx, gy = speaker.light
    light = (brightness + gx * (x / width - 0.5) + gy * (y / height - 0.5)) * motion["flicker"]  # (T, H, W)
    chin = 1 - 0.12 * np.exp(-((y - y_out_low - 0.2 * hw0) / (0.1 * hw0)) ** 2) * corner
    shade = 1 - 0.15 * np.exp(-((np.abs(u) - 1.05) / 0.12) ** 2) * np.exp(-((y - cy) / (0.3 * hw0)) ** 2)

    weights = np.empty((t_count, height, width, 6), np.float32)
    skin = (1 - mouth) * (1 - cavity) * light
    inside = cavity * depth * light
    np.multiply(skin, chin * shade, out=weights[..., 0])
    np.multiply(mouth * (1 - cavity) * light, lip_light, out=weights[..., 1])
    np.multiply(inside, cavity_seen, out=weights[..., 2])
    np.multiply(inside, tongue_seen, out=weights[..., 3])
    np.multiply(inside, teeth_seen * gaps, out=weights[..., 4])
    np.add(skin * texture, noise, out=weights[..., 5])
    return weights


# ---------------------------------------------------------------------------------------------
# Clips


def _clip_rng(seed: int, speaker: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _CLIP_STREAM, speaker, index])


def clip_plan(seed: int, speaker: int, index: int, name: str) -> ClipPlan:
    """The timing plan of clip ``index`` of ``speaker``, without drawing it (labels for analyses)."""
    return plan_clip(name, make_speaker(seed, speaker), _clip_rng(seed, speaker, index))


def render_clip(seed: int, speaker: int, index: int, name: str,
                size: tuple[int, int] = DEFAULT_SIZE) -> tuple[np.ndarray, ClipPlan]:
    """Frames and plan of clip ``index`` of ``speaker`` saying the sentence ``name`` spells."""
    style = make_speaker(seed, speaker)
    rng = _clip_rng(seed, speaker, index)
    plan = plan_clip(name, style, rng)
    frames = render_frames(mouth_trajectory(plan, style, rng), style, rng, size)
    return frames, plan
