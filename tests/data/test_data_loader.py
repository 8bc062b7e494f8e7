"""The data pipeline on small synthetic clips: discovery, labels, splits, batches, augmentation, buffer reuse,
and the packed clip reader."""
from __future__ import annotations

import logging
import re
import weakref
import zipfile
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

import data_loader
from data_loader import (
    MAX_LABEL_LENGTH,
    NUM_FRAMES,
    BatchBuffers,
    Batchify,
    ClipRecord,
    EpochShuffleSampler,
    SentenceDataset,
    build_records,
    discover_clips,
    label_clip,
    make_loader,
    recode,
    select_clips,
    temporal_jitter,
)
from tests.fake_data import write_fake_clips
from utils.data import splits
from utils.data.clip_store import load_clip, load_packed, save_packed, save_png_folder
from utils.text.grid_text import decode, sentence_from_clip_name

MEAN = (0.30, 0.50, 0.70)
STD = (0.10, 0.20, 0.40)  # distinct per channel, so that a swapped channel order shows


def _smooth_frames(t: int = NUM_FRAMES, h: int = 24, w: int = 48, seed: int = 0) -> np.ndarray:
    """RGB frames with a different level in each channel and a left-right asymmetry, which JPEG keeps well."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, w)[None, None, :]
    y = np.linspace(0, 1, h)[None, :, None]
    ramp = np.linspace(0, 1, t)[:, None, None]
    channels = [200 - 150 * x + 20 * ramp, 40 + 120 * y * x + 30 * ramp, 120 + 80 * x * (1 - y) - 40 * ramp]
    frames = np.stack([np.broadcast_to(c, (t, h, w)) for c in channels], axis=-1)
    return np.clip(frames + rng.integers(-3, 4, frames.shape), 0, 255).astype(np.uint8)


def _expected(frames: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """The documented normalisation, (x / 255 - mean) / std per RGB channel, as (3, T, H, W)."""
    scaled = (frames.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    return scaled.transpose(3, 0, 1, 2).astype(np.float32)


def _align_text(words: list[tuple[str, int, int]]) -> str:
    """An align file: times in 1/1000 of a frame, with the silences GRID puts around the words."""
    last = words[-1][2]
    body = [(0, words[0][1], "sil"), *[(s, e, w) for w, s, e in words], (last, max(last, NUM_FRAMES), "sil")]
    return "".join(f"{s * 1000} {e * 1000} {w}\n" for s, e, w in body)


def _batches(loader) -> list[tuple[np.ndarray, ...] | None]:
    return [None if b is None else tuple(x if isinstance(x, np.ndarray) else x.asnumpy() for x in b) for b in loader]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("fake")
    return root, write_fake_clips(root)  # 3 speakers x 4 clips of 75 frames, 24x48


@pytest.fixture(scope="module")
def records(fake) -> list[ClipRecord]:
    return build_records(discover_clips(fake[0]), None)


# ---------------------------------------------------------------------------------------------- discovery


def test_discover_finds_packed_clips_and_png_folders_and_skips_temporaries(tmp_path: Path):
    packed = _smooth_frames(seed=1)
    png = _smooth_frames(t=5, seed=2)
    save_packed(tmp_path / "s1" / "bbaf2n.npz", packed)
    save_png_folder(tmp_path / "s2" / "lwbsza", png)
    # Leftovers of interrupted writes and hidden folders, which must not become clips.
    (tmp_path / "s1" / ".swwp2s.npz.k2j3.tmp").write_bytes(b"half a clip")
    (tmp_path / "s1" / ".pgic3a.npz").write_bytes(b"half a clip")
    save_png_folder(tmp_path / "s2" / ".brak4p.abcd.tmp", png)
    save_png_folder(tmp_path / ".s9" / "lrbe5s", png)
    (tmp_path / "s1" / "notes.txt").write_text("not a clip")
    (tmp_path / "stray.npz").write_bytes(b"not in a speaker folder")

    found = discover_clips(tmp_path)
    assert found == {"s1/bbaf2n": tmp_path / "s1" / "bbaf2n.npz", "s2/lwbsza": tmp_path / "s2" / "lwbsza"}
    assert list(found) == sorted(found)
    assert sorted(p.name for p in (tmp_path / "s2" / "lwbsza").iterdir()) == [f"mouth_{i:03d}.png" for i in range(5)]
    np.testing.assert_array_equal(load_clip(found["s2/lwbsza"]), png)  # PNG is lossless
    assert load_clip(found["s1/bbaf2n"]).shape == packed.shape


def test_discover_missing_folder_names_it(tmp_path: Path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        discover_clips(missing)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "file"))):
        discover_clips(tmp_path / "file")


# ---------------------------------------------------------------------------------------------- labels

WORDS = [("lay", 10, 20), ("red", 20, 28), ("by", 28, 33), ("g", 33, 40), ("four", 40, 50), ("please", 50, 60)]


def test_label_from_speaker_align_then_flat_align_then_name(tmp_path: Path):
    aligns = tmp_path / "align"
    (aligns / "s1").mkdir(parents=True)
    (aligns / "s1" / "bbaf2n.align").write_text(_align_text(WORDS))
    (aligns / "bbaf2n.align").write_text(_align_text([("set", 5, 30), ("white", 30, 40)]))
    (aligns / "lwbsza.align").write_text(_align_text([("bin", 5, 30), ("green", 30, 40)]))
    path = tmp_path / "clip.npz"

    by_speaker = label_clip("s1/bbaf2n", path, aligns)
    assert by_speaker.sentence == "lay red by g four please"  # the speaker's own align wins over the flat one
    assert [(w.word, w.start, w.end) for w in by_speaker.words] == WORDS  # silences dropped, times in frames
    assert by_speaker.path == path and by_speaker.speaker == "s1"

    flat = label_clip("s2/bbaf2n", path, aligns)  # no s2/ folder: the original example's flat layout
    assert flat.sentence == "set white"
    assert label_clip("s7/lwbsza", path, aligns).sentence == "bin green"

    by_name = label_clip("s1/swwp2s", path, aligns)
    assert by_name.sentence == sentence_from_clip_name("swwp2s") == "set white with p two soon"
    assert by_name.words == ()
    assert label_clip("s1/bbaf2n", path, None).sentence == "bin blue at f two now"


def test_build_records_reports_and_leaves_out_unlabelled_clips(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    aligns = tmp_path / "align"
    aligns.mkdir()
    (aligns / "mouth2.align").write_text(_align_text(WORDS))  # not a GRID name, but it has an align
    (aligns / "pgic3a.align").write_text("0 1000\n")  # a broken align is not silently replaced by the name
    clips = {c: tmp_path / f"{c}.npz" for c in ("s1/bbaf2n", "s1/mouth1", "s1/mouth2", "s1/pgic3a", "s2/zzzzzz")}
    with caplog.at_level(logging.WARNING, logger="data_loader"):
        built = build_records(clips, aligns)
    assert [r.clip_id for r in built] == ["s1/bbaf2n", "s1/mouth2"]
    assert built[1].sentence == "lay red by g four please"
    warned = [r.getMessage() for r in caplog.records if r.name == "data_loader"]
    assert len(warned) == 3
    for clip_id in ("s1/mouth1", "s2/zzzzzz", "s1/pgic3a"):
        assert sum(str(clips[clip_id]) in m for m in warned) == 1, clip_id
    assert any("not a GRID clip name" in m for m in warned)
    assert any("pgic3a.align:1" in m for m in warned)


# ---------------------------------------------------------------------------------------------- selection

IDS = [f"s{s}/{n}" for s in (1, 2, 3, 5, 20, 22) for n in ("bbaf2n", "lwbsza", "swwp2s", "pgic3a", "brak4p", "lrbe5s")]


def test_select_standard_splits():
    train, val = select_clips(reversed(IDS), split="unseen")
    assert {splits.speaker_of(c) for c in val} == {"s1", "s2", "s20", "s22"}
    assert {splits.speaker_of(c) for c in train} == {"s3", "s5"}
    assert "s20/bbaf2n" in val and "s3/bbaf2n" in train and "s1/lrbe5s" in val and "s5/lrbe5s" in train
    assert (train, val) == splits.unseen_split(IDS)
    assert select_clips(IDS) == (train, val)  # unseen is the default

    train, val = select_clips(IDS, split="overlapped")
    assert (train, val) == splits.overlapped_split(IDS)
    assert set(train) | set(val) == set(IDS) and not set(train) & set(val)
    for speaker in ("s1", "s3", "s22"):  # every speaker on both sides: half of its 6 clips held out
        assert sum(splits.speaker_of(c) == speaker for c in val) == 3
        assert sum(splits.speaker_of(c) == speaker for c in train) == 3
    # The draw depends only on the set of clips: the same clip lands on the same side from a shuffled input.
    shuffled = list(np.random.default_rng(0).permutation(IDS))
    assert select_clips(shuffled, split="overlapped") == (train, val)


def test_select_by_speakers_and_validation_speakers():
    train, val = select_clips(IDS, speakers=[1, 3])
    assert train == sorted(c for c in IDS if c.startswith("s3/"))
    assert val == sorted(c for c in IDS if c.startswith("s1/"))

    train, val = select_clips(IDS, split="no such split", val_speakers=[3, 22])  # val_speakers overrides split
    assert val == sorted(c for c in IDS if c.startswith(("s3/", "s22/")))
    assert train == sorted(c for c in IDS if not c.startswith(("s3/", "s22/")))

    train, val = select_clips(IDS, speakers=[2, 3], val_speakers=[3])
    assert train == sorted(c for c in IDS if c.startswith("s2/"))
    assert val == sorted(c for c in IDS if c.startswith("s3/"))


def test_select_from_list_files(tmp_path: Path):
    train_list, val_list = tmp_path / "train.txt", tmp_path / "val.txt"
    train_list.write_text("# training clips\ns5/lwbsza\ns3/bbaf2n  # kept in file order\n\ns9/absent\n")
    val_list.write_text("s20/pgic3a\ns1/brak4p\n")
    assert select_clips(IDS, train_list=train_list, val_list=val_list) == (
        ["s5/lwbsza", "s3/bbaf2n"], ["s20/pgic3a", "s1/brak4p"])  # absent clips dropped
    # Lists win over split and val_speakers; speakers still filters.
    assert select_clips(IDS, split="overlapped", train_list=str(train_list), val_list=str(val_list),
                        speakers=[3, 20], val_speakers=[5]) == (["s3/bbaf2n"], ["s20/pgic3a"])
    with pytest.raises(ValueError, match="give both train_list and val_list"):
        select_clips(IDS, train_list=train_list)
    with pytest.raises(ValueError, match="give both train_list and val_list"):
        select_clips(IDS, val_list=val_list)


def test_select_unknown_split_is_refused():
    with pytest.raises(ValueError, match=r"unknown split 'seen'.*unseen, overlapped"):
        select_clips(IDS, split="seen")


# ---------------------------------------------------------------------------------------------- batches


def test_batches_have_the_documented_layout(records: list[ClipRecord]):
    dataset = SentenceDataset(records[:5])
    batches = list(make_loader(dataset, 2, MEAN, STD))
    assert len(batches) == 3
    data, labels, data_lengths, label_lengths, indices, lengths = batches[-1]  # the last, short batch is kept
    assert data.shape == (1, 3, NUM_FRAMES, 24, 48)
    seen = []
    for data, labels, data_lengths, label_lengths, indices, lengths in batches:
        n = len(indices)
        assert isinstance(lengths, np.ndarray) and lengths.tolist() == [NUM_FRAMES] * n
        assert isinstance(data, mx.nd.NDArray) and data.dtype == np.float32
        assert data.shape == (n, 3, NUM_FRAMES, 24, 48)
        assert labels.shape == (n, MAX_LABEL_LENGTH) and labels.dtype == np.float32
        np.testing.assert_array_equal(data_lengths.asnumpy(), [NUM_FRAMES] * n)
        labels, label_lengths = labels.asnumpy(), label_lengths.asnumpy()
        for row, length, index in zip(labels, label_lengths, indices):
            sentence = records[index].sentence
            assert length == len(sentence)
            assert decode(row[: int(length)].astype(int)) == sentence
            assert (row[int(length):] == -1).all()
        seen.extend(indices.tolist())
    assert seen == [0, 1, 2, 3, 4]


def test_normalisation_is_per_rgb_channel(tmp_path: Path):
    frames = _smooth_frames(seed=3)
    save_packed(tmp_path / "s1" / "bbaf2n.npz", frames)
    save_png_folder(tmp_path / "s1" / "lwbsza", frames[:, :, ::-1])
    dataset = SentenceDataset(build_records(discover_clips(tmp_path), None))
    (data, *_rest), = list(make_loader(dataset, 2, MEAN, STD))
    data = data.asnumpy()
    np.testing.assert_allclose(data[0], _expected(load_clip(dataset.records[0].path)), atol=1e-5)
    np.testing.assert_allclose(data[1], _expected(frames[:, :, ::-1]), atol=1e-5)  # PNG: exact frames
    # Red is brightest in the test frames: channel 0 of the batch must be red, not blue.
    assert data[1, 0].mean() == pytest.approx(((frames[..., 0] / 255).mean() - MEAN[0]) / STD[0], abs=1e-3)


def test_resize_to_size(tmp_path: Path):
    frames = _smooth_frames(seed=4)
    save_png_folder(tmp_path / "s1" / "bbaf2n", frames)
    record, = build_records(discover_clips(tmp_path), None)
    resized = SentenceDataset([record], size=(24, 12))[0][0]
    assert resized.shape == (NUM_FRAMES, 12, 24, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized[7], cv2.resize(frames[7], (24, 12), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(SentenceDataset([record], size=(48, 24))[0][0], frames)  # native size: untouched
    (data, *_rest), = list(make_loader(SentenceDataset([record], size=(32, 16)), 1, MEAN, STD))
    assert data.shape == (1, 3, NUM_FRAMES, 16, 32)


def test_a_label_outside_the_alphabet_is_refused_and_a_long_one_widens_its_batch(records: list[ClipRecord]):
    frames = np.zeros((NUM_FRAMES, 4, 4, 3), np.uint8)
    short, long = np.zeros(3, np.int32), np.arange(MAX_LABEL_LENGTH + 5, dtype=np.int32) % 26
    _, labels, _, label_lengths, _, _ = Batchify(MEAN, STD)([(frames, short, NUM_FRAMES, 0),
                                                             (frames, long, NUM_FRAMES, 1)])
    assert labels.shape == (2, MAX_LABEL_LENGTH + 5) and label_lengths.asnumpy().tolist() == [3, 45]
    np.testing.assert_array_equal(labels.asnumpy()[1], long)
    assert (labels.asnumpy()[0, 3:] == -1).all()
    with pytest.raises(ValueError, match="s1/x: .*not in the GRID alphabet"):
        SentenceDataset([ClipRecord("s1/x", records[0].path, "bin blue at f 2 now")])
    with pytest.raises(ValueError, match="s1/y: empty label"):
        SentenceDataset([ClipRecord("s1/y", records[0].path, "")])
    assert len(SentenceDataset([ClipRecord("s1/z", records[0].path, "a" * 41)])) == 1


def test_an_align_of_more_than_40_characters_is_a_label(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    aligns = tmp_path / "align"
    aligns.mkdir()
    long_words = [("abcdefghij", 2, 10), ("klmnopqrst", 10, 20), ("uvwxyzabcd", 20, 30), ("efghijklmn", 30, 40)]
    (aligns / "mouth1.align").write_text(_align_text(long_words))
    (aligns / "mouth2.align").write_text(_align_text(WORDS))
    with caplog.at_level(logging.WARNING, logger="data_loader"):
        built = build_records({"s1/mouth1": tmp_path / "m1.npz", "s1/mouth2": tmp_path / "m2.npz"}, aligns)
    assert [r.clip_id for r in built] == ["s1/mouth1", "s1/mouth2"] and not caplog.records
    assert built[0].sentence == " ".join(w for w, _, _ in long_words) and len(built[0].sentence) == 43


def test_clips_of_different_sizes_in_one_batch_are_refused_clearly():
    label = np.zeros(3, np.int32)
    samples = [(np.zeros((NUM_FRAMES, 24, 48, 3), np.uint8), label, NUM_FRAMES, 0),
               (np.zeros((NUM_FRAMES, 48, 24, 3), np.uint8), label, NUM_FRAMES, 1)]
    with pytest.raises(ValueError, match="different frame sizes.*give the data set a size"):
        Batchify(MEAN, STD)(samples)


def test_unreadable_clips_are_reported_once_and_skipped(records: list[ClipRecord], tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture):
    garbage = tmp_path / "s1" / "garbage.npz"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x00not a zip file at all" * 50)
    missing = tmp_path / "s1" / "missing.npz"
    bad = [ClipRecord("s1/garbage", garbage, "bin blue"), ClipRecord("s1/missing", missing, "lay red")]
    dataset = SentenceDataset([*bad, records[0], records[1]])
    for workers in (0, 2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="data_loader"):
            per_batch = [_batches(make_loader(dataset, 2, MEAN, STD, num_workers=workers)) for _epoch in range(2)]
            whole = [_batches(make_loader(dataset, 4, MEAN, STD, num_workers=workers)) for _epoch in range(2)]
        for epoch in per_batch:
            assert epoch[0] is None  # a batch of unreadable clips only
            assert epoch[1][0].shape == (2, 3, NUM_FRAMES, 24, 48) and epoch[1][4].tolist() == [2, 3]
        for (batch,) in whole:
            assert batch[4].tolist() == [2, 3]
            np.testing.assert_allclose(batch[0][1], _expected(load_clip(records[1].path)), atol=1e-5)
            assert decode(batch[1][0][: int(batch[3][0])].astype(int)) == records[0].sentence
        messages = [r.getMessage() for r in caplog.records if r.name == "data_loader"]
        if workers == 0:  # the data set remembers what it reported, over epochs and loaders
            assert sum(str(garbage) in m for m in messages) == 1
            assert sum(str(missing) in m for m in messages) == 1
            assert any("not a readable packed clip" in m for m in messages)
        else:
            assert messages == []
    fresh = SentenceDataset(bad)
    with caplog.at_level(logging.WARNING, logger="data_loader"):
        caplog.clear()
        assert [fresh[(epoch, 0)] for epoch in range(3)] == [None] * 3
    assert len([r for r in caplog.records if str(garbage) in r.getMessage()]) == 1


# ---------------------------------------------------------------------------------------------- augmentation


def test_flip_mirrors_left_right(records: list[ClipRecord]):
    original = load_clip(records[2].path)
    flipped = SentenceDataset(records, train=True, flip_prob=1.0, jitter_prob=0.0)[(3, 2)]
    np.testing.assert_array_equal(flipped[0], original[:, :, ::-1])
    assert flipped[2] == NUM_FRAMES and flipped[3] == 2
    assert decode(flipped[1]) == records[2].sentence
    # Evaluation never augments, whatever the probabilities say.
    plain = SentenceDataset(records, train=False, flip_prob=1.0, jitter_prob=0.5, word_prob=1.0)[(3, 2)]
    np.testing.assert_array_equal(plain[0], original)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.49, 0.5])
def test_temporal_jitter_only_deletes_or_duplicates(p: float):
    for count in (1, 2, 3, 75):
        for seed in range(200):
            order = temporal_jitter(count, np.random.default_rng(seed), p)
            assert len(order) > 0
            assert order.min() >= 0 and order.max() < count
            assert (np.diff(order) >= 0).all()
            assert np.bincount(order, minlength=count).max() <= 2
            if p == 0:
                np.testing.assert_array_equal(order, np.arange(count))


def test_temporal_jitter_rates():
    order = temporal_jitter(20000, np.random.default_rng(0), 0.1)
    counts = np.bincount(order, minlength=20000)
    assert abs((counts == 0).mean() - 0.1) < 0.01
    assert abs((counts == 2).mean() - 0.1) < 0.01


def _sharpness(frames: np.ndarray) -> float:
    """Variance of the Laplacian over grey frames."""
    return float(np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames]))


def test_recode_softens_and_compresses_like_a_reencoding():
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (50, 100, 3)).astype(np.uint8), (0, 0), 1.0)
    frames = np.stack([np.roll(texture, k, axis=1) for k in range(6)])
    assert recode(frames, np.random.default_rng(1), 0.0) is frames
    shrunk, compressed = [], []
    for seed in range(40):
        out = recode(frames, np.random.default_rng(seed), 0.5)
        assert out.shape == frames.shape and out.dtype == np.uint8
        # Which degradation a draw took is told by the draws themselves (first the shrink, then JPEG).
        draws = np.random.default_rng(seed)
        took_shrink = draws.random() < 0.5
        if took_shrink:
            draws.uniform()
        took_jpeg = draws.random() < 0.5
        if not (took_shrink or took_jpeg):
            np.testing.assert_array_equal(out, frames)
            continue
        assert 0 < np.abs(out.astype(int) - frames).mean() < 40  # the same picture, degraded
        if took_shrink != took_jpeg:
            (shrunk if took_shrink else compressed).append(out)
    assert shrunk and compressed
    assert max(_sharpness(f) for f in shrunk) < _sharpness(frames)  # enlarged back from smaller: softer
    for out in compressed:  # JPEG keeps each frame's own content, frame by frame
        assert all(np.abs(o.astype(int) - f).mean() < np.abs(o.astype(int) - np.roll(f, 3, 1)).mean()
                   for o, f in zip(out, frames))


def test_recode_in_training_only_with_its_own_draws(records: list[ClipRecord]):
    original = load_clip(records[2].path)
    plain = SentenceDataset(records, train=True, flip_prob=0.5, jitter_prob=0.3, seed=4)
    recoded = SentenceDataset(records, train=True, flip_prob=0.5, jitter_prob=0.3, seed=4, recode_prob=1.0)
    for epoch in range(4):
        a, b = plain[(epoch, 2)], recoded[(epoch, 2)]
        assert a[2] == b[2] and b[0].shape == a[0].shape  # the same jitter: recode draws from its own stream
        assert 0 < np.abs(a[0].astype(int) - b[0]).mean() < 40
        np.testing.assert_array_equal(b[0], recoded[(epoch, 2)][0])  # drawn from (seed, epoch, index) only
    evaluation = SentenceDataset(records, recode_prob=1.0)[(0, 2)]
    np.testing.assert_array_equal(evaluation[0], original)


def test_short_clips_are_padded_with_their_last_frame(tmp_path: Path):
    frames = _smooth_frames(t=40, seed=5)
    save_png_folder(tmp_path / "s1" / "bbaf2n", frames)
    save_png_folder(tmp_path / "s1" / "lwbsza", _smooth_frames(t=NUM_FRAMES + 9, seed=6))
    records = build_records(discover_clips(tmp_path), None)
    short, long = SentenceDataset(records)[0], SentenceDataset(records)[1]
    assert short[0].shape == (NUM_FRAMES, 24, 48, 3) and short[2] == 40
    np.testing.assert_array_equal(short[0][:40], frames)
    assert (short[0][40:] == frames[-1]).all()
    assert long[0].shape == (NUM_FRAMES, 24, 48, 3) and long[2] == NUM_FRAMES  # longer clips are cut
    (_, _, data_lengths, _, _, lengths), = list(make_loader(SentenceDataset(records), 2, MEAN, STD))
    assert lengths.tolist() == [40, NUM_FRAMES]
    np.testing.assert_array_equal(data_lengths.asnumpy(), [40, NUM_FRAMES])


def test_single_word_clips_from_the_align(tmp_path: Path):
    frames = _smooth_frames(seed=7)
    save_png_folder(tmp_path / "clips" / "s1" / "bbaf2n", frames)
    (tmp_path / "align").mkdir()
    words = [*WORDS[:-1], ("please", 60, 90)]  # an align running past the clip's last frame
    (tmp_path / "align" / "bbaf2n.align").write_text(_align_text(words))
    records = build_records(discover_clips(tmp_path / "clips"), tmp_path / "align")
    dataset = SentenceDataset(records, train=True, flip_prob=0.0, jitter_prob=0.0, word_prob=1.0)
    spans = {w: (s, min(e, NUM_FRAMES)) for w, s, e in words}
    seen = set()
    for epoch in range(30):
        clip, label, length, _ = dataset[(epoch, 0)]
        word = decode(label)
        start, end = spans[word]
        seen.add(word)
        assert length == end - start
        np.testing.assert_array_equal(clip[:length], frames[start:end])
        assert (clip[length:] == frames[end - 1]).all()
    assert len(seen) >= 4
    loader = make_loader(dataset, 1, MEAN, STD, EpochShuffleSampler(1, 0))
    (_, labels, data_lengths, label_lengths, _, _), = list(loader)
    word = decode(labels.asnumpy()[0, : int(label_lengths.asscalar())].astype(int))
    assert data_lengths.asscalar() == spans[word][1] - spans[word][0]
    assert label_lengths.asscalar() == len(word)


def test_augmentation_depends_only_on_seed_epoch_and_index(records: list[ClipRecord]):
    def make(seed: int = 5) -> SentenceDataset:
        return SentenceDataset(records, train=True, flip_prob=0.5, jitter_prob=0.3, seed=seed)

    first, second = make(), make()
    for index in (0, 3, 7):
        a, b = first[(2, index)], second[(2, index)]
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2:] == b[2:]
        np.testing.assert_array_equal(first[(0, index)][0], first[index][0])  # a plain index is epoch 0
    # Jitter at p=0.3 on 75 frames: another epoch or seed draws differently.
    assert not np.array_equal(first[(2, 3)][0], first[(3, 3)][0])
    assert not np.array_equal(first[(2, 3)][0], make(seed=6)[(2, 3)][0])
    lengths = {first[(epoch, 3)][2] for epoch in range(8)}
    assert len(lengths) > 1 and max(lengths) <= NUM_FRAMES  # deletions shorten the clip


# ---------------------------------------------------------------------------------------------- order, threads


def test_epoch_shuffle_sampler_order_and_skip():
    sampler = EpochShuffleSampler(10, seed=4)
    epoch0 = list(sampler)
    assert sorted(epoch0) == [(0, i) for i in range(10)] and len(sampler) == 10
    assert list(EpochShuffleSampler(10, seed=4)) == epoch0
    sampler.epoch = 1
    epoch1 = list(sampler)
    assert [e for e, _ in epoch1] == [1] * 10 and [i for _, i in epoch1] != [i for _, i in epoch0]
    sampler.epoch = 0
    assert list(sampler) == epoch0  # depends on (seed, epoch), not on how many epochs ran
    assert [i for _, i in EpochShuffleSampler(10, seed=5)] != [i for _, i in epoch0]
    sampler.skip = 3
    assert list(sampler) == epoch0[3:] and len(sampler) == 7
    sampler.skip = 12  # a resume after the epoch's last, short batch
    assert list(sampler) == [] and len(sampler) == 0


def test_worker_threads_give_the_same_batches(records: list[ClipRecord]):
    dataset = SentenceDataset(records, train=True, flip_prob=0.5, jitter_prob=0.2, seed=1)
    results = []
    for workers in (0, 2):
        sampler = EpochShuffleSampler(len(dataset), seed=9)
        sampler.epoch = 2
        results.append(_batches(make_loader(dataset, 5, MEAN, STD, sampler, num_workers=workers)))
    serial, threaded = results
    epoch0 = [i for _, i in EpochShuffleSampler(len(dataset), seed=9)]
    assert len(serial) == len(threaded) == 3
    for a, b in zip(serial, threaded):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert np.concatenate([b[4] for b in serial]).tolist() != epoch0  # epoch 2 is not epoch 0's order
    sampler = EpochShuffleSampler(len(dataset), seed=9)
    sampler.epoch = 2
    assert np.concatenate([b[4] for b in serial]).tolist() == [i for _, i in sampler]


# ---------------------------------------------------------------------------------------------- buffer reuse


def test_batch_buffers_reuse_only_what_mxnet_and_python_let_go():
    buffers = BatchBuffers()
    shape = (2, 3, 4)
    first = buffers.take(shape)
    first_ref = weakref.ref(first)
    first[...] = 1.0
    held = mx.nd.from_numpy(first, zero_copy=True)
    del first
    second = buffers.take(shape)  # the NDArray still holds the first array
    assert second is not first_ref() and second.shape == shape and second.dtype == np.float32
    second[...] = 2.0
    third = buffers.take(shape)  # the name ``second`` still holds it
    assert third is not second and third is not first_ref()
    third[...] = 3.0
    mx.nd.waitall()
    np.testing.assert_array_equal(held.asnumpy(), np.ones(shape))  # never overwritten while held
    del held
    mx.nd.waitall()
    again = buffers.take(shape)
    assert again is first_ref()  # MXNet let go: the first array is refilled
    assert again.flags.writeable  # from_numpy froze it; take hands it back writable
    del again, third
    other = buffers.take((1, 3, 4))  # a free array of another shape makes room for the short batch
    assert other.shape == (1, 3, 4) and other is not second
    assert buffers.take(shape) is not second


def test_batches_kept_alive_are_never_overwritten(records: list[ClipRecord]):
    dataset = SentenceDataset(records, train=True, flip_prob=0.5, jitter_prob=0.2, seed=2)
    for workers in (0, 2):
        sampler = EpochShuffleSampler(len(dataset), seed=3)
        loader = make_loader(dataset, 3, MEAN, STD, sampler, num_workers=workers)
        kept = {}
        for epoch in range(2):  # the second epoch runs while every batch of the first is still held
            sampler.epoch = epoch
            kept[epoch] = [list(batch) for batch in loader]
            keys = [(epoch, i) for i in np.random.default_rng((3, epoch)).permutation(len(dataset))]
            assert [len(b[4]) for b in kept[epoch]] == [3, 3, 3, 3]
            assert np.concatenate([b[4] for b in kept[epoch]]).tolist() == [i for _, i in keys]
        mx.nd.waitall()
        for epoch, batches in kept.items():
            keys = [(epoch, int(i)) for b in batches for i in b[4]]
            for b, batch in enumerate(batches):
                expected = np.stack([_expected(dataset[key][0]) for key in keys[3 * b: 3 * b + 3]])
                np.testing.assert_allclose(batch[0].asnumpy(), expected, atol=1e-5,
                                           err_msg=f"workers={workers} epoch={epoch} batch={b}")
        assert not np.array_equal(kept[0][0][0].asnumpy(), kept[1][0][0].asnumpy())
        del kept
        mx.nd.waitall()


# ---------------------------------------------------------------------------------------------- packed reader


def test_packed_round_trip(tmp_path: Path):
    for h, w in ((24, 48), (20, 36), (50, 100)):
        frames = _smooth_frames(h=h, w=w, seed=h)
        save_packed(tmp_path / f"{h}.npz", frames)
        loaded = load_packed(tmp_path / f"{h}.npz")
        assert loaded.shape == frames.shape and loaded.dtype == np.uint8
        assert np.abs(loaded.astype(int) - frames).mean() < 3
        # The channels stay in RGB order.
        assert loaded[..., 0].mean() == pytest.approx(frames[..., 0].mean(), abs=2)
        assert loaded[..., 2].mean() == pytest.approx(frames[..., 2].mean(), abs=2)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_packed_reader_names_the_file_of_every_bad_clip(tmp_path: Path):
    good = tmp_path / "good.npz"
    save_packed(good, _smooth_frames(seed=8))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    no_jpeg = tmp_path / "no_jpeg.npz"
    np.savez(no_jpeg, shape=np.array([NUM_FRAMES, 24, 48], np.int32))
    bad_jpeg = tmp_path / "bad_jpeg.npz"
    np.savez(bad_jpeg, jpeg=np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8), shape=np.array([1, 24, 48], np.int32))
    wrong_shape = tmp_path / "wrong_shape.npz"
    with zipfile.ZipFile(good) as archive, zipfile.ZipFile(wrong_shape, "w") as out:
        out.writestr("jpeg.npy", archive.read("jpeg.npy"))
        np.save(tmp_path / "shape.npy", np.array([NUM_FRAMES, 40, 48], np.int32))
        out.write(tmp_path / "shape.npy", "shape.npy")
    for path in (garbage, truncated, no_jpeg, bad_jpeg, wrong_shape, tmp_path / "missing.npz"):
        with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable packed clip")):
            load_packed(path)
        with pytest.raises(ValueError, match=re.escape(str(path))):
            load_clip(path)
    assert load_packed(good).shape == (NUM_FRAMES, 24, 48, 3)


def test_channel_stats_match_numpy_and_skip_unreadable(records: list[ClipRecord], tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture):
    frames = np.concatenate([load_clip(r.path) for r in records[:3]]).reshape(-1, 3) / 255.0
    broken = ClipRecord("s1/broken", tmp_path / "broken.npz", "bin blue")
    with caplog.at_level(logging.WARNING, logger="data_loader"):
        mean, std = data_loader.channel_stats([*records[:3], broken])
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, frames.std(0), rtol=1e-5)
    assert str(broken.path) in caplog.text
    with pytest.raises(ValueError, match="no readable clip"):
        data_loader.channel_stats([broken])


def test_no_word_sample_is_shorter_than_its_label_needs(tmp_path: Path, grid_dir: Path):
    """Words rounded outwards and widened to what CTC needs, with jitter on: every sample can hold its label."""
    from utils.text.grid_text import ctc_min_frames

    frames = _smooth_frames(seed=3)
    save_png_folder(tmp_path / "clips" / "s1" / "swwp2s", frames)
    save_png_folder(tmp_path / "clips" / "s1" / "bbaf2n", frames)
    (tmp_path / "align" / "s1").mkdir(parents=True)
    (tmp_path / "align" / "s1" / "swwp2s.align").write_bytes((grid_dir / "swwp2s.align").read_bytes())
    # words squeezed into one or two frames, as fast speech or a poor alignment gives them
    squeezed = [("bin", 10, 12), ("blue", 12, 13), ("at", 13, 14), ("f", 14, 15), ("two", 15, 16), ("now", 16, 74)]
    (tmp_path / "align" / "s1" / "bbaf2n.align").write_text(_align_text(squeezed))
    records = build_records(discover_clips(tmp_path / "clips"), tmp_path / "align")
    dataset = SentenceDataset(records, train=True, flip_prob=0.5, jitter_prob=0.3, word_prob=1.0, seed=1)
    samples = 0
    for epoch in range(150):
        for idx in range(len(records)):
            clip, label, length, _ = dataset[(epoch, idx)]
            word = decode(label)
            assert length >= ctc_min_frames(word) == len(word) + (word in ("soon", "three")), (epoch, idx, word, length)
            samples += 1
    assert samples == 300 and dataset.too_short == 0


def test_a_sample_is_its_plan_replayed_without_the_frames(tmp_path: Path, grid_dir: Path):
    """``aligned_ctc`` replays ``SentenceDataset.plan`` to move the align with the jitter: the plan must be the sample."""
    frames = _smooth_frames(seed=5)
    save_png_folder(tmp_path / "clips" / "s1" / "swwp2s", frames)
    (tmp_path / "align" / "s1").mkdir(parents=True)
    (tmp_path / "align" / "s1" / "swwp2s.align").write_bytes((grid_dir / "swwp2s.align").read_bytes())
    records = build_records(discover_clips(tmp_path / "clips"), tmp_path / "align")
    dataset = SentenceDataset(records, train=True, flip_prob=0.5, jitter_prob=0.2, word_prob=0.5, seed=7)
    kinds = set()
    for epoch in range(40):
        clip, label, length, _ = dataset[(epoch, 0)]
        plan = dataset.plan(epoch, 0, NUM_FRAMES)
        expected = frames.take(plan.order, axis=0)
        np.testing.assert_array_equal(clip, expected[:, :, ::-1] if plan.flip else expected)
        assert (decode(label), length) == (plan.sentence, plan.length)
        assert (np.diff(plan.order) >= 0).all() and len(plan.order) == NUM_FRAMES
        kinds.add((plan.sentence == records[0].sentence, plan.flip, plan.length < NUM_FRAMES))
    assert len(kinds) >= 6  # words and sentences, flipped or not, jitter shortening some


def test_a_clip_too_short_for_its_label_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    save_png_folder(tmp_path / "clips" / "s1" / "bbaf2n", _smooth_frames(t=15))  # 21 characters need 21 frames
    save_png_folder(tmp_path / "clips" / "s1" / "lwbsza", _smooth_frames(t=30))
    records = build_records(discover_clips(tmp_path / "clips"), None)
    dataset = SentenceDataset(records, train=True, jitter_prob=0.5, seed=2)
    assert dataset[(0, 0)] is None and dataset[(1, 0)] is None
    assert dataset.too_short == 2 and caplog.text.count("cannot hold its 21-character label") == 1
    assert all(dataset[(e, 1)] is not None for e in range(20))  # jitter never takes a clip below its label
    batch = data_loader.Batchify(MEAN, STD)([dataset[(0, 0)], dataset[(0, 1)]])
    assert batch[0].shape[0] == 1  # the batch is the clip that can be trained on
