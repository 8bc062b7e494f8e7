"""Low-rate training samples (``data_loader.low_rate``, ``low_rate_prob``): a clip shown as a 12-25 fps camera
resampled to the clip's rate shows it, as ``utils.video.reader`` shows a low-rate video to the network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import main
from data_loader import SentenceDataset, build_records, discover_clips, low_rate
from tests.fake_data import write_fake_clips
from tests.own_videos import transcode
from utils.video.reader import read_frames


class _Fixed:
    """A generator that draws the camera rate ``ratio`` and phase 0."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def uniform(self, low: float, high: float) -> float:
        assert low <= self.ratio < high
        return self.ratio

    def random(self) -> float:
        return 0.0


@pytest.mark.parametrize("fps", [12, 15, 20])
def test_low_rate_frames_are_those_a_low_rate_video_reaches_the_network_with(tmp_path: Path, fps: int):
    # Frame i of a 25 fps clip is grey level 3 i; its copy at `fps` is read back at 25 fps.
    clip = np.repeat(np.arange(75, dtype=np.uint8)[:, None, None, None] * 3, 64 * 64 * 3).reshape(75, 64, 64, 3)
    video = transcode(clip, tmp_path / f"clip_{fps}.mp4", fps)
    shown = [int(round((f.luma.mean() - 16) * 255 / 219 / 3)) for f in read_frames(video)]  # limited-range luma
    order = low_rate(75, _Fixed(fps / 25))
    assert len(order) == 75 and (np.diff(order) >= 0).all()
    assert len(np.unique(order)) == pytest.approx(75 * fps / 25, abs=1)
    # The same frames repeated alike, each the same clip frame but where a camera frame's time falls halfway
    # between two (20 fps: 2.3 s is frame 57.5), and but at the very end, where the video has no later frame.
    shown, order = np.array(shown[:-1]), order[:-1]
    assert (np.diff(shown) == 0).tolist() == (np.diff(order) == 0).tolist()
    assert np.abs(shown - order).max() <= 1 and (shown == order).mean() > 0.95


def test_low_rate_samples_are_drawn_on_their_own_and_keep_the_other_draws(tmp_path: Path):
    write_fake_clips(tmp_path, speakers=1, per_speaker=3)
    records = build_records(discover_clips(tmp_path), None)
    plain = SentenceDataset(records, train=True, jitter_prob=0.1, flip_prob=0.5, seed=4)
    slow = SentenceDataset(records, train=True, jitter_prob=0.1, flip_prob=0.5, seed=4, low_rate_prob=1.0)
    held = SentenceDataset(records, train=True, jitter_prob=0.0, flip_prob=0.0, seed=4, low_rate_prob=1.0)
    for epoch in range(4):
        a, b, c = plain.plan(epoch, 1, 75), slow.plan(epoch, 1, 75), held.plan(epoch, 1, 75)
        assert a.flip == b.flip  # the other draws are those of a run without low-rate samples
        assert (np.diff(c.order) >= 0).all() and c.length == 75
        distinct = len(np.unique(c.order))
        assert 0.48 * 75 - 2 <= distinct < 75  # a 12-25 fps camera: frames repeated
        assert (np.diff(b.order) >= 0).all()
    assert SentenceDataset(records, low_rate_prob=1.0).low_rate_prob == 0.0  # validation clips stay as they are


def test_low_rate_prob_is_a_probability(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        main.main(["low_rate_prob=1.5"])
    assert "low_rate_prob" in capsys.readouterr().err
