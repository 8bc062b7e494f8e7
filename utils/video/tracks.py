"""Face tracks through a video: each face keeps its identity from frame to frame, so a reader never
jumps from one person to another.

Every ``step``-th frame each live track looks for its face near its last box (the extractor's
local search: 2-4 ms) and fits the 68 landmarks there (4-5 ms), both on the grey pixels of that
region only. Every ``detect_every``-th examined frame (about once a second; and at every examined
frame while no face is tracked, and right after a scene cut) the whole frame is searched, shrunk to
640 pixels (17 ms at 360x288, 30 ms for 720p), so a 4K frame costs what a 640-pixel one does; a face
found there that overlaps no tracked face is matched to a track that has lost its face (by
overlap or nearness to where it was), else it starts a new track. That search sees faces from 80
pixels times the shrink (160 px at 1280x720); when it and the tracks find no face, the extractor's
finer pass (``detect_fine``: the whole frame enlarged twice, faces from 40 px, about 0.3 s at 720p)
searches too, and after a miss only once every ``detect_every`` examined frames (and at a scene cut),
so a stretch without faces costs little more. Frames up to 480 pixels are searched upsampled whenever
the plain search finds nothing, since that costs little at their size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.video.denoise import for_landmarks
from utils.video.mouth_extractor import DETECT_MAX_SIDE, ROI_PAD, MouthExtractor
from utils.video.reader import Frame

# Grey pixels handed to the local search and the landmark fit: the previous face box widened by this
# many face widths (the local search needs ROI_PAD; the landmarks a margin around the box found).
_REGION_PAD = ROI_PAD + 0.35


@dataclass
class Track:
    """One face: its id (0, 1, ... in order of appearance), last box and how often it was found."""

    id: int
    box: np.ndarray  # (l, t, r, b) source pixels, where the face was last found
    last_seen: int  # frame index of that
    hits: int = 0  # examined frames with landmarks

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (l, t, r, b) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _near(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance over the larger face width (0 = same place)."""
    centre = (a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2
    return float(np.hypot(*centre) / max(a[2] - a[0], b[2] - b[0], 1.0))


class FaceTracker:
    """Landmarks of every face, frame by frame, under stable track ids."""

    def __init__(self, extractor: MouthExtractor, step: int = 3, detect_every: int = 8, lost_after: int = 12) -> None:
        """step: examine every step-th frame. detect_every: search the whole frame every so many
        examined frames. lost_after: frames without its face after which a track stops searching
        near its last box (the whole-frame search can still find it again)."""
        self.extractor = extractor
        self.step = step
        self.detect_every = detect_every
        self.lost_after = lost_after
        self.tracks: list[Track] = []
        self._phase = 0
        self._examined = 0
        self._full_due = True
        self._fine_from = 0  # the examined-frame count from which the finer pass may run again
        self.last_examined = -1

    def restart(self, index: int) -> None:
        """A scene cut at frame ``index``: examine that frame and search all of it."""
        self._phase = index
        self._full_due = True
        self._fine_from = 0

    def live(self, index: int) -> list[Track]:
        return [t for t in self.tracks if index - t.last_seen <= self.lost_after]

    def update(self, frame: Frame, force: bool = False) -> dict[int, np.ndarray] | None:
        """The 68 landmarks of each face found in ``frame``, by track id; None when the frame is not
        examined (``force``: examine it anyway, as the last frame of a video is). Only the regions
        around faces are turned grey, and a shrunk copy for the search."""
        index = frame.index
        if (index - self._phase) % self.step and not force:
            return None
        ex = self.extractor
        self.last_examined = index
        live = self.live(index)
        found: dict[int, np.ndarray] = {}
        regions: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # track id -> (grey region, its offset)
        for track in live:
            region, offset = _region(frame, track.box)
            box = ex.detect_near(region, track.box - offset)
            if box is not None:
                box = box + offset
                if all(overlap(box, b) < 0.5 for b in found.values()):
                    found[track.id] = box
                    regions[track.id] = (region, offset)
        if self._full_due or not live or self._examined % self.detect_every == 0:
            self._full_due = False
            small, shrink = frame.gray_small(DETECT_MAX_SIDE)
            boxes = [b / shrink for b in ex.detect_all(small, 0)]
            if not boxes and max(frame.size) <= 480:  # cheap at this size: upsampled at every search, as ever
                boxes = [b / shrink for b in ex.detect_all(small, 1)]
            elif not boxes and not found and self._examined >= self._fine_from:
                boxes = ex.detect_fine(frame.gray)
                if not boxes:
                    self._fine_from = self._examined + self.detect_every
            for box in sorted(boxes, key=lambda b: b[0] - b[2]):  # largest first
                if any(overlap(box, b) > 0.3 for b in found.values()):
                    continue
                free = [t for t in self.tracks if t.id not in found
                        and (overlap(box, t.box) > 0.3 or _near(box, t.box) < 0.5)]
                if free:
                    track = max(free, key=lambda t: (overlap(box, t.box), t.last_seen))
                else:
                    track = Track(len(self.tracks), box, index)
                    self.tracks.append(track)
                found[track.id] = box
        self._examined += 1
        landmarks = {}
        for track_id, box in found.items():
            track = self.tracks[track_id]
            track.box, track.last_seen = box, index
            track.hits += 1
            region, offset = regions.get(track_id) or _region(frame, box)
            landmarks[track_id] = ex.landmarks(region, box - offset) + offset[:2]
        return landmarks


def _region(frame: Frame, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grey pixels around a face box (blurred when noisy: ``for_landmarks``), and their offset as
    (x, y, x, y) to add to region coordinates."""
    pad = _REGION_PAD * max(box[2] - box[0], box[3] - box[1], 1.0)
    region, (x0, y0) = frame.gray_region((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad))
    return for_landmarks(region), np.array([x0, y0, x0, y0], dtype=np.float64)
