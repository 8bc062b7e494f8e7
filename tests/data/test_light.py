"""Light that does not matter (``utils.data.light``): per-clip input normalisation, the same in training batches,
in reading's batches and for either backend, and the photometric augmentation of training clips."""
from __future__ import annotations

import numpy as np
import pytest

import data_loader
from utils.data.light import MIN_CLIP_STD, NO_LIGHT, Light, light_table, recorded_input_norm, relight
from utils.data.sentence_clips import Normaliser

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _clip(seed: int = 0, frames: int = 30) -> np.ndarray:
    """A clip with structure (a bright moving blob on a tinted background) and noise, levels well inside 0-255."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:24, :48]
    clip = np.empty((frames, 24, 48, 3), np.float64)
    for t in range(frames):
        blob = np.exp(-((x - 10 - t) ** 2 + (y - 12) ** 2) / 30.0)
        clip[t] = np.array([120, 90, 70]) + 80 * blob[..., None] + rng.normal(0, 6, (24, 48, 3))
    return np.clip(np.rint(clip), 0, 255).astype(np.uint8)


def _normalised(normaliser: Normaliser, frames: np.ndarray, length: int | None = None) -> np.ndarray:
    out = np.empty((3,) + frames.shape[:3], np.float32)
    normaliser.normalise_into(frames, out, length)
    return out


def test_each_channel_of_a_clip_comes_out_standardised_whatever_the_datasets_statistics():
    frames = _clip()
    out = _normalised(Normaliser(MEAN, STD, per_clip=True), frames)
    assert np.allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    assert np.allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)
    # the data set's statistics play no part per clip
    assert np.array_equal(out, _normalised(Normaliser((0.1, 0.2, 0.9), (1.0, 0.5, 0.1), per_clip=True), frames))
    # and the default stays the data set's normalisation, table for table
    levels = frames.astype(np.float64) / 255.0
    expected = ((levels - np.array(MEAN)) / np.array(STD)).transpose(3, 0, 1, 2)
    assert np.allclose(_normalised(Normaliser(MEAN, STD), frames), expected, atol=1e-5)


def test_a_flat_channel_comes_out_as_zeros_not_a_division_by_zero():
    frames = np.full((5, 4, 6, 3), 77, np.uint8)
    frames[..., 1] = np.arange(6, dtype=np.uint8)  # the green channel varies, the others are flat
    out = _normalised(Normaliser(MEAN, STD, per_clip=True), frames)
    assert np.isfinite(out).all() and not out[0].any() and not out[2].any()
    assert abs(out[1].std() - 1) < 1e-4 and MIN_CLIP_STD > 0


def test_padding_does_not_count_in_a_clips_statistics():
    frames = _clip(frames=20)
    padded = np.concatenate([frames, np.repeat(np.zeros_like(frames[:1]), 30, axis=0)])  # 30 black frames
    normaliser = Normaliser(MEAN, STD, per_clip=True)
    alone = _normalised(normaliser, frames)
    assert np.array_equal(_normalised(normaliser, padded, length=20)[:, :20], alone)
    assert not np.allclose(_normalised(normaliser, padded)[:, :20], alone, atol=0.1)  # counted, they would skew it


def test_a_darker_flatter_tinted_copy_gives_nearly_the_same_input_per_clip_only():
    frames = _clip()
    # another light: darker, lower contrast, each channel its own gain (a warmer lamp)
    gain, offset = np.array([0.6, 0.55, 0.5]), np.array([-10.0, -8.0, -5.0])
    darker = np.clip(np.rint(frames * gain + offset), 0, 255).astype(np.uint8)
    assert darker.mean() < frames.mean() - 40 and 0 < darker.min()
    per_clip, per_set = Normaliser(MEAN, STD, per_clip=True), Normaliser(MEAN, STD)
    clip_change = np.abs(_normalised(per_clip, darker) - _normalised(per_clip, frames))
    set_change = np.abs(_normalised(per_set, darker) - _normalised(per_set, frames))
    assert clip_change.mean() < 0.05 and clip_change.max() < 0.3  # rounding to whole levels, nothing more
    assert set_change.mean() > 10 * clip_change.mean()


@pytest.mark.parametrize("num_frames", [75, None])
def test_training_batches_and_readings_batches_normalise_a_clip_alike(tmp_path, num_frames: int | None):
    """The training loader (Batchify) and reading's batches (clip_batches, which both backends read) per clip,
    with clips cut, padded to 75 and padded to the batch's longest."""
    from utils.data.clip_store import save_packed
    from utils.data.sentence_clips import build_records, clip_batches, discover_clips

    for i, frames in enumerate((80, 75, 40, 61)):
        save_packed(tmp_path / "s1" / f"bbaf{i + 1}n.npz", _clip(seed=i, frames=frames))
    records = build_records(discover_clips(tmp_path), None)
    dataset = data_loader.SentenceDataset(records, size=(40, 20), num_frames=num_frames)
    loader = data_loader.make_loader(dataset, 2, MEAN, STD, per_clip=True)
    expected = [b[0].asnumpy() for b in loader]
    reading = Normaliser.recorded(MEAN, STD, {"normalisation": {"mean": MEAN, "std": STD, "input": "clip"}})
    got = [data for _, data, _ in clip_batches(records, (40, 20), reading, 2, num_frames)]
    assert len(got) == len(expected) == 2
    for data, want in zip(got, expected):
        assert np.array_equal(data, want)
    # each clip standardised over its own frames: the 40-frame clip's padding is not in its statistics
    short = got[1][0, :, :40]
    assert np.allclose(short.mean(axis=(1, 2, 3)), 0, atol=1e-4)


def test_the_recorded_input_normalisation_defaults_to_the_datasets_and_refuses_unknown_ones():
    assert recorded_input_norm({}) == "dataset"
    assert recorded_input_norm({"normalisation": {"mean": MEAN, "std": STD}}) == "dataset"
    assert recorded_input_norm({"normalisation": {"input": "clip"}}) == "clip"
    assert not Normaliser.recorded(MEAN, STD, {}).per_clip
    with pytest.raises(ValueError, match="unknown input normalisation 'frame'"):
        recorded_input_norm({"normalisation": {"input": "frame"}})


def test_light_table_is_ffmpegs_eq_on_the_zero_to_one_scale():
    table = light_table(-0.25, 0.6, 1.0)
    levels = np.arange(256) / 255.0
    assert np.array_equal(table, np.clip(np.rint(((levels - 0.5) * 0.6 + 0.5 - 0.25) * 255), 0, 255))
    assert np.array_equal(light_table(0.0, 1.0, 1.0), np.arange(256))
    assert light_table(0.0, 1.0, 2.0)[128] == round((128 / 255) ** 2 * 255)


def test_relight_draws_within_its_ranges_one_change_of_luma_per_clip():
    frames = _clip()
    luma = np.array([0.299, 0.587, 0.114])
    assert relight(frames, np.random.default_rng(0), 0.0, 0.3, 0.5, 0.5) is frames
    shifts = []
    for seed in range(40):
        out = relight(frames, np.random.default_rng(seed), 1.0, 0.2, 0.0, 0.0)  # brightness only
        shift = out.astype(int) - frames.astype(int)
        unclipped = ((frames >= 54) & (frames <= 201)).all(axis=-1)  # no offset of up to 51 clips these
        # one offset for every pixel and channel (colour kept), give or take YCrCb's rounding
        assert np.ptp(shift[unclipped]) <= 3
        shifts.append(float(np.median(shift[unclipped])))
    assert max(np.abs(shifts)) <= round(0.2 * 255) + 1 and min(shifts) < -10 and max(shifts) > 10
    again = relight(frames, np.random.default_rng(7), 1.0, 0.2, 0.5, 0.5)
    assert np.array_equal(again, relight(frames, np.random.default_rng(7), 1.0, 0.2, 0.5, 0.5))  # the draws alone
    spread = [(relight(frames, np.random.default_rng(s), 1.0, 0.0, 0.5, 0.0) @ luma).std() / (frames @ luma).std()
              for s in range(40)]
    assert 0.45 < min(spread) < 0.8 and 1.2 < max(spread) < 1.55
    gammas = [relight(frames, np.random.default_rng(s), 1.0, 0.0, 0.0, 1.0).mean() for s in range(40)]
    assert min(gammas) < frames.mean() - 20 and max(gammas) > frames.mean() + 20


def test_training_samples_get_another_light_and_validation_samples_never(tmp_path):
    from utils.data.clip_store import save_packed
    from utils.data.sentence_clips import build_records, discover_clips

    save_packed(tmp_path / "s1" / "bbaf2n.npz", _clip(frames=75))
    records = build_records(discover_clips(tmp_path), None)
    plain = data_loader.SentenceDataset(records, train=True, flip_prob=0, jitter_prob=0)
    lit = data_loader.SentenceDataset(records, train=True, flip_prob=0, jitter_prob=0, light=Light(1.0, 0.3, 0.5, 0.5))
    val = data_loader.SentenceDataset(records, train=False, light=Light(1.0, 0.3, 0.5, 0.5))
    assert val.light == NO_LIGHT and np.array_equal(val[0][0], plain[0][0])
    means = {round(float(lit[(epoch, 0)][0].mean()), 3) for epoch in range(5)}
    assert len(means) == 5  # another light each epoch
    assert np.array_equal(lit[(3, 0)][0], lit[(3, 0)][0])  # and the same one for the same (epoch, clip)
