"""When a clip's words were said, estimated from its mouth alone: for clips that have a transcript but no
align file (GRID speakers whose aligns are missing, clips cut from captioned videos).

The speech is taken to run from the first to the last frame where the mouth moves at a speaking pace
(``mouth_motion`` above ``SPEECH_LEVEL``), and its words are spread over that span in proportion to
their characters. On the shared GRID clip that has an align file (swwp2s, 25 fps, landmarks on every
frame) this put the speech on frames 15-61 against 12-55 (the mouth closes after the sound ends) and
the word centres 0.11-0.40 s late: far from a forced aligner, but enough to tell ``aligned_ctc``
training which part of a clip each word is in, where CTC alone lets a model memorising a few clips
spell them at the clips' edges.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from utils.video.utterances import SPEECH_LEVEL, mouth_motion


def speech_span(marks: dict[int, np.ndarray], count: int) -> tuple[int, int] | None:
    """Frames ``[start, end)`` of a ``count``-frame clip from the first to the last frame whose mouth moves
    faster than ``SPEECH_LEVEL`` (``marks``: 68 landmarks by frame); None when it never does."""
    motion = mouth_motion(marks, 0, count)
    if motion is None:
        return None
    moving = np.flatnonzero(motion > SPEECH_LEVEL)
    return (int(moving[0]), int(moving[-1]) + 1) if len(moving) else None


def spread_words(words: Sequence[str], start: float, end: float) -> list[tuple[float, float, str]]:
    """``(start, end, word)`` of each word, one after the other over ``[start, end)``, each given time in
    proportion to its characters and the space after it (a letter said alone counting as two characters).

    By characters, not syllables, because CTC needs a frame for each: spread by syllables, lwbsza's
    "white " got 5.5 frames for its 6 characters, and a model trained on that read an H.264 copy of the
    clip as "la white ..." (spread by characters, seeds 1 and 2 read every test video; over seeds 1-6 of
    the tests' recipe, 4 did)."""
    weights = np.array([max(len(w), 2) + 1 for w in words], np.float64)
    edges = start + np.r_[0.0, np.cumsum(weights)] / weights.sum() * (end - start)
    return [(float(a), float(b), w) for a, b, w in zip(edges[:-1], edges[1:], words)]
