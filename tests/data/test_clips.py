"""utils/data/sentence_clips.py: one output per clip, PNG frames in number order, and the framework-free batches that
infer.py reads data sets with are the MXNet validation loader's batches, value for value."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import data_loader
from utils.data.clip_store import clip_length, load_clip, save_packed, save_png_folder
from utils.data.sentence_clips import Normaliser, build_records, clip_batches, discover_clips, fit_length

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def test_fit_length_cuts_or_holds_the_last_frame():
    order, length = fit_length(np.arange(3), 6)
    assert order.tolist() == [0, 1, 2, 2, 2, 2] and length == 3
    order, length = fit_length(np.arange(9), 6)
    assert order.tolist() == [0, 1, 2, 3, 4, 5] and length == 6


@pytest.mark.parametrize("num_workers, num_frames", [(0, 75), (2, 75), (0, None)])
def test_clip_batches_equal_the_validation_loaders(tmp_path: Path, num_workers: int, num_frames: int | None,
                                                   caplog: pytest.LogCaptureFixture):
    rng = np.random.default_rng(0)
    for i, frames in enumerate((80, 75, 40, 61, 75)):
        save_packed(tmp_path / "s1" / f"bbaf{i}n.npz", rng.integers(0, 256, (frames, 24, 48, 3), dtype=np.uint8))
    (tmp_path / "s1" / "bbaf9n.npz").write_bytes(b"broken")
    records = build_records(discover_clips(tmp_path), None)
    dataset = data_loader.SentenceDataset(records, size=(40, 20), num_frames=num_frames)
    loader = data_loader.make_loader(dataset, 2, MEAN, STD)
    expected = [(b[0].asnumpy(), b[2].asnumpy().astype(np.int64), b[4].tolist()) for b in loader if b is not None]
    with caplog.at_level(logging.WARNING, logger="data_loader"):
        got = list(clip_batches(records, (40, 20), Normaliser(MEAN, STD), 2, num_frames, num_workers=num_workers))
    assert any("bbaf9n.npz" in r.getMessage() for r in caplog.records)
    assert [[r.clip_id for r in batch] for batch, _, _ in got] == [[records[i].clip_id for i in indices]
                                                                  for _, _, indices in expected]
    for (_, data, lengths), (want_data, want_lengths, _) in zip(got, expected):
        assert data.shape == want_data.shape and data.shape[3:] == (20, 40)
        assert data.shape[2] == (num_frames or max(lengths))
        assert np.array_equal(data, want_data) and np.array_equal(lengths, want_lengths)


def test_png_clips_of_a_thousand_frames_or_more_load_in_order(tmp_path: Path):
    count = 1001  # mouth_1000.png sorts before mouth_101.png by name
    frames = np.zeros((count, 2, 4, 3), np.uint8)
    frames[..., 0] = (np.arange(count) // 256)[:, None, None]
    frames[..., 1] = (np.arange(count) % 256)[:, None, None]
    save_png_folder(tmp_path / "s1" / "long", frames)
    assert (tmp_path / "s1" / "long" / "mouth_1000.png").is_file()
    found = discover_clips(tmp_path)
    np.testing.assert_array_equal(load_clip(found["s1/long"]), frames)
    assert clip_length(found["s1/long"]) == count


def test_a_clip_with_two_outputs_is_an_error_naming_both(tmp_path: Path):
    frames = np.full((3, 8, 16, 3), 7, np.uint8)
    save_packed(tmp_path / "s1" / "bbaf2n.npz", frames)
    save_png_folder(tmp_path / "s1" / "bbaf2n", frames)
    save_packed(tmp_path / "s1" / "lwbsza.npz", frames)
    with pytest.raises(ValueError) as raised:
        discover_clips(tmp_path)
    assert str(raised.value).startswith(f"{tmp_path / 's1' / 'bbaf2n'} and {tmp_path / 's1' / 'bbaf2n.npz'}: "
                                        "two outputs of clip s1/bbaf2n")
    (tmp_path / "s1" / "bbaf2n.npz").unlink()
    assert discover_clips(tmp_path) == {"s1/bbaf2n": tmp_path / "s1" / "bbaf2n",
                                        "s1/lwbsza": tmp_path / "s1" / "lwbsza.npz"}
