"""Clips of any length: each keeps its own length (frames=any), batches are padded to their longest clip and
grouped by length (BucketSampler), the padded fraction is logged, and resuming stays exact."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import main
from data_loader import (
    Batchify,
    BucketSampler,
    EpochShuffleSampler,
    SentenceDataset,
    build_records,
    clip_lengths,
    discover_clips,
    make_loader,
    padded_fraction,
)
from tests.fake_data import write_fake_clips
from utils.data.clip_store import clip_length, save_png_folder

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
LENGTHS = (40, 90, 55, 120, 75, 48, 100, 62)
TINY = ["channels=4,8,8", "hidden=16", "batch_size=2", "num_gpus=0", "progress=false", "val_speakers=3",
        "align_path=/nonexistent", "lr=0.003", "frames=any"]


def _padding(lengths: np.ndarray, order: np.ndarray, batch_size: int) -> float:
    batches = [lengths[order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
    return padded_fraction([(int(b.sum()), len(b) * int(b.max())) for b in batches])


def test_bucketing_is_a_seeded_shuffle_per_epoch_with_less_padding():
    lengths = np.random.default_rng(0).integers(20, 150, 203)
    sampler = BucketSampler(lengths, batch_size=8, seed=3, pool=10)
    first = sampler.order()
    assert sorted(first.tolist()) == list(range(203))
    assert np.array_equal(first, BucketSampler(lengths, 8, 3, pool=10).order())  # (seed, epoch) fix it
    sampler.epoch = 1
    second = sampler.order()
    assert not np.array_equal(first, second) and sorted(second.tolist()) == list(range(203))
    assert len(set(map(tuple, np.sort(first[:200].reshape(25, 8), axis=1))) &
               set(map(tuple, np.sort(second[:200].reshape(25, 8), axis=1)))) < 5  # other batches each epoch
    shuffled = np.random.default_rng(0).permutation(203)
    assert _padding(lengths, first, 8) < 0.1 < 0.3 < _padding(lengths, shuffled, 8)
    assert len(first) - len(first) // 8 * 8 == 3  # the one short batch is last
    sampler.skip = 16  # a resume after two batches continues the same order
    assert [i for _, i in sampler] == second[16:].tolist() and len(sampler) == 203 - 16
    assert {e for e, _ in sampler} == {1}


def test_clip_lengths_are_read_from_headers(tmp_path: Path):
    write_fake_clips(tmp_path, speakers=1, per_speaker=3, frames=(40, 90, 55))
    save_png_folder(tmp_path / "s2" / "bbaf2n", np.zeros((33, 8, 8, 3), np.uint8))
    (tmp_path / "s2" / "pgic3a.npz").write_bytes(b"nope")
    records = build_records(discover_clips(tmp_path), None)
    assert clip_lengths(records) == [40, 90, 55, 33, 0]  # clip-id order; an unreadable clip is 0
    with pytest.raises(ValueError, match="pgic3a.npz: not a readable packed clip"):
        clip_length(tmp_path / "s2" / "pgic3a.npz")


def test_batches_of_clips_of_their_own_length_are_padded_to_their_longest(tmp_path: Path):
    write_fake_clips(tmp_path, speakers=1, per_speaker=3, frames=(40, 90, 55))
    records = build_records(discover_clips(tmp_path), None)
    dataset = SentenceDataset(records, num_frames=None)
    assert [dataset[i][0].shape[0] for i in range(3)] == [40, 90, 55]
    (data, _, lengths, _, _, np_lengths), = list(make_loader(dataset, 3, MEAN, STD))
    assert data.shape[2] == 90 and lengths.asnumpy().tolist() == np_lengths.tolist() == [40, 90, 55]
    values = data.asnumpy()
    np.testing.assert_array_equal(values[0, :, 40:], np.repeat(values[0, :, 39:40], 50, axis=1))  # last frame held
    # The default keeps GRID's fixed 75 frames: cut or padded.
    (data, _, lengths, *_), = list(make_loader(SentenceDataset(records), 3, MEAN, STD))
    assert data.shape[2] == 75 and lengths.asnumpy().tolist() == [40, 75, 55]
    # Jitter in a clip of its own length is cut or padded back to that length.
    jittered = SentenceDataset(records, num_frames=None, train=True, jitter_prob=0.3, flip_prob=0.0)
    for epoch in range(3):
        frames, _, length, _ = jittered[(epoch, 1)]
        assert len(frames) == 90 and length <= 90


def test_a_batch_of_clips_shorter_than_the_label_width_gets_labels_the_ctc_loss_takes():
    # MXNet's CTC loss refuses labels wider than the data is long: short caption clips (32-39 frames)
    # made `frames=any` training fail until the label width followed the batch's length
    samples = [(np.zeros((t, 24, 48, 3), np.uint8), np.arange(n, dtype=np.float32), t, i)
               for i, (t, n) in enumerate([(32, 10), (36, 20)])]
    data, labels, lengths, label_lengths, _, _ = Batchify(MEAN, STD)(samples)
    assert labels.shape == (2, 36)
    log_probs = mx.nd.zeros((2, 36, 29))
    loss = mx.gluon.loss.CTCLoss(layout="NTC", label_layout="NT")(log_probs, labels, lengths, label_lengths)
    assert np.isfinite(loss.asnumpy()).all()


def _params(path: Path) -> dict[str, np.ndarray]:
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path / "model.params")).items()}


def test_training_on_clips_of_any_length_logs_padding_and_resumes_exactly(tmp_path: Path):
    clips = tmp_path / "clips"
    write_fake_clips(clips, frames=LENGTHS)
    assert main.main([f"image_path={clips}", f"save_dir={tmp_path / 'straight'}", *TINY, "epochs=2"]) == 0
    assert main.main([f"image_path={clips}", f"save_dir={tmp_path / 'split'}", *TINY, "epochs=1"]) == 0
    assert main.main([f"image_path={clips}", f"save_dir={tmp_path / 'split'}", *TINY, "epochs=2",
                      f"model_path={tmp_path / 'split' / 'last'}"]) == 0
    straight, split = _params(tmp_path / "straight" / "last"), _params(tmp_path / "split" / "last")
    for name in straight:
        np.testing.assert_allclose(split[name], straight[name], rtol=1e-5, atol=1e-6, err_msg=name)
    rows = list(csv.DictReader((tmp_path / "straight" / "metrics.csv").open()))
    bucketed = [float(r["padded_fraction"]) for r in rows]
    log = (tmp_path / "straight" / "train.log").read_text()
    assert "batched by length" in log and "padded " in log
    assert main.main([f"image_path={clips}", f"save_dir={tmp_path / 'plain'}", *TINY, "epochs=2", "bucket=false"]) == 0
    plain = [float(r["padded_fraction"]) for r in csv.DictReader((tmp_path / "plain" / "metrics.csv").open())]
    assert all(0 <= b < p for b, p in zip(bucketed, plain)), (bucketed, plain)
    meta = json.loads((tmp_path / "straight" / "last" / "meta.json").read_text())
    assert meta["args"]["frames"] is None and meta["state"]["history"][-1]["padded_fraction"] == bucketed[-1]


def test_frames_flag_is_checked():
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["--frames", "0"])
    assert main.build_parser().parse_args(["--frames", "any"]).frames is None
    assert main.build_parser().parse_args([]).frames == 75


def test_an_epoch_shuffle_and_a_bucketing_sampler_take_the_same_clips():
    lengths = list(range(30, 50))
    assert sorted(i for _, i in EpochShuffleSampler(20, 0)) == sorted(i for _, i in BucketSampler(lengths, 4, 0))
