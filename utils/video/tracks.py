"""Face tracks through a video: each face keeps its identity from frame to frame, so a reader never
jumps from one person to another.

Every ``step``-th frame each live track looks for its face near its last box (the extractor's
local search, a few ms) and fits the 68 landmarks there. Every ``detect_every``-th examined frame
(and at every examined frame while no face is tracked, and right after a scene cut) the whole
frame is searched, shrunk to 640 pixels, so a 4K frame costs what a 640-pixel one does; a face
found there that overlaps no tracked face is matched to a track that has lost its face (by
overlap or nearness to where it was), else it starts a new track.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.video.mouth_extractor import MouthExtractor


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

    def __init__(self, extractor: MouthExtractor, step: int = 3, detect_every: int = 4, lost_after: int = 12) -> None:
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
        self.last_examined = -1

    def restart(self, index: int) -> None:
        """A scene cut at ``index``: examine that frame and search all of it."""
        self._phase = index
        self._full_due = True

    def live(self, index: int) -> list[Track]:
        return [t for t in self.tracks if index - t.last_seen <= self.lost_after]

    def update(self, index: int, gray: np.ndarray) -> dict[int, np.ndarray] | None:
        """The 68 landmarks of each face found in frame ``index``, by track id; None when the frame
        is not examined."""
        if (index - self._phase) % self.step:
            return None
        ex = self.extractor
        self.last_examined = index
        live = self.live(index)
        found: dict[int, np.ndarray] = {}
        for track in live:
            box = ex.detect_near(gray, track.box)
            if box is not None and all(overlap(box, b) < 0.5 for b in found.values()):
                found[track.id] = box
        if self._full_due or not live or self._examined % self.detect_every == 0:
            self._full_due = False
            boxes = ex.detect_all(gray, 0) or (ex.detect_all(gray, 1) if max(gray.shape) <= 480 else [])
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
            landmarks[track_id] = ex.landmarks(gray, box)
        return landmarks
