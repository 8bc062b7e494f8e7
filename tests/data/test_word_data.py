"""Word-level data: the synthetic word set in LRW's layout, the .txt reader, and WordDataset's crops and flips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import data_loader
from utils.data.clip_store import load_clip, save_packed
from utils.data.word_clips import (
    WORD_CROP,
    WORD_MEAN,
    WORD_STD,
    info_text,
    list_words,
    read_duration,
    word_clips,
    word_input,
)
from utils.make_synthetic import main as make_synthetic
from utils.synthetic import visible_shapes
from utils.synthetic import words as synthetic_words

SPLITS = {"train": (1, 2), "val": (3,), "test": (4,)}


@pytest.fixture(scope="module")
def word_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("words")
    report = synthetic_words.generate_words(root, ["MONEY", "about"], SPLITS, clips_per_speaker=2,
                                            n_process=1, progress=False)
    assert report.written == 16 and not report.errors
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_default_words_look_different():
    sequences = {tuple(visible_shapes(w.lower())) for w in synthetic_words.DEFAULT_WORDS}
    assert len(sequences) == len(synthetic_words.DEFAULT_WORDS)


def test_synthetic_words_follow_lrws_layout(word_tree: Path):
    assert list_words(word_tree) == ["ABOUT", "MONEY"]
    for word in ("ABOUT", "MONEY"):
        for split, speakers in SPLITS.items():
            names = sorted(p.name for p in (word_tree / word / split).iterdir())
            expected = sorted(f"{word}_{s * 1000 + i + 1:05d}{suffix}" for s in speakers for i in range(2)
                              for suffix in (".npz", ".txt"))
            assert names == expected  # every speaker in one split only: val/test speakers are unseen
    clip = word_tree / "MONEY" / "val" / "MONEY_03001.npz"
    frames = load_clip(clip)
    assert frames.shape == (29, 96, 96) and frames.dtype == np.uint8
    text = clip.with_suffix(".txt").read_text()
    assert text.startswith("Text:  MONEY\n") and "Duration: " in text
    duration = read_duration(clip.with_suffix(".txt"))
    assert 0.2 < duration < 1.0


def test_the_word_is_centred_with_speech_on_both_sides(word_tree: Path):
    """Context speech moves the mouth in the first and last frames, as in LRW's clips."""
    plan, duration = synthetic_words.plan_word("MONEY", synthetic_words.make_speaker(0, 1), np.random.default_rng(0))
    (start, end, _), = [s for s in plan.segments if s[2] == "MONEY"]
    assert abs((start + end) / 2000 - 14.5) <= 0.6
    assert duration == pytest.approx((end - start) / 1000 / 25, abs=0.011)
    assert any(s[2] == "context" and s[0] < 0 for s in plan.segments)
    assert any(s[2] == "context" and s[1] > 29_000 for s in plan.segments)
    frames = load_clip(word_tree / "MONEY" / "train" / "MONEY_01001.npz").astype(np.float32)
    motion = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    assert motion[:5].max() > 1.0 and motion[-5:].max() > 1.0


def test_speakers_differ_and_clips_are_reproducible_and_resume(word_tree: Path, tmp_path: Path):
    a, _ = synthetic_words.render_word(0, 1, "MONEY", 0)
    b, _ = synthetic_words.render_word(0, 2, "MONEY", 0)
    assert abs(float(a.mean()) - float(b.mean())) > 3 or abs(float(a.std()) - float(b.std())) > 3
    argv = ["layout=lrw", f"tgt_path={tmp_path}", "words=MONEY,ABOUT", "clips_per_speaker=2",
            "train_speakers=1,2", "val_speakers=3", "test_speakers=4", "n_process=1"]
    assert make_synthetic(argv) == 0
    assert _files(tmp_path) == _files(word_tree)  # the same seed gives the same bytes, CLI or library
    (tmp_path / "MONEY" / "val" / "MONEY_03002.npz").unlink()
    report = synthetic_words.generate_words(tmp_path, ["MONEY", "ABOUT"], SPLITS, 2, n_process=1, progress=False)
    assert (report.written, report.skipped) == (1, 15)
    assert _files(tmp_path) == _files(word_tree)


@pytest.mark.parametrize("speakers, words, message", [
    ({"train": (1,), "val": (1,)}, ["MONEY"], "in both the train and val splits"),
    ({"train": (1,)}, ["MONEY2"], "only the letters a-z"),
    ({"dev": (1,)}, ["MONEY"], "unknown split"),
])
def test_bad_synthetic_requests_are_refused(tmp_path: Path, speakers: dict, words: list[str], message: str):
    with pytest.raises(ValueError, match=message):
        synthetic_words.generate_words(tmp_path, words, speakers, 1, n_process=1, progress=False)


def test_make_synthetic_refuses_a_non_square_word_size_or_a_word_preview(tmp_path: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exc:
        make_synthetic(["layout=lrw", f"tgt_path={tmp_path}", "size=96x48", "n_process=1"])
    assert exc.value.code == 2 and "--size: the lrw layout's mouth regions are square" in capsys.readouterr().err
    assert make_synthetic(["layout=lrw", f"preview={tmp_path / 'p.png'}"]) == 1
    assert "grid layout" in capsys.readouterr().err and not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# The .txt reader and the tree's problems


def test_read_duration_names_the_file_and_the_reason(tmp_path: Path):
    folder = tmp_path / "ABOUT" / "train"
    folder.mkdir(parents=True)
    good = folder / "ABOUT_00001.txt"
    good.write_text(info_text("ABOUT", 0.53))
    assert read_duration(good) == pytest.approx(0.53)
    with pytest.raises(ValueError, match=r"ABOUT_00002\.txt: missing"):
        read_duration(folder / "ABOUT_00002.txt")
    (folder / "ABOUT_00003.txt").write_text("Text:  ABOUT\nConf:  3\n")
    with pytest.raises(ValueError, match=r"ABOUT_00003\.txt: no 'Duration"):
        read_duration(folder / "ABOUT_00003.txt")
    (folder / "ABOUT_00004.txt").write_text(info_text("MONEY", 0.4))
    with pytest.raises(ValueError, match=r"ABOUT_00004\.txt: says 'MONEY'"):
        read_duration(folder / "ABOUT_00004.txt")
    (folder / "ABOUT_00005.txt").write_text(info_text("ABOUT", 3.0))
    with pytest.raises(ValueError, match="outside"):
        read_duration(folder / "ABOUT_00005.txt")


def test_word_clips_leave_out_and_name_what_is_missing(word_tree: Path, tmp_path: Path):
    for f in word_tree.rglob("*"):
        if f.is_file():
            target = tmp_path / f.relative_to(word_tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
    (tmp_path / "ABOUT" / "train" / "ABOUT_01001.txt").unlink()
    (tmp_path / "EMPTY" / "train").mkdir(parents=True)
    clips, problems = word_clips(tmp_path, "train")
    assert len(clips) == 7
    assert any("ABOUT_01001.txt: missing" in p for p in problems)
    assert any(str(tmp_path / "EMPTY" / "train") in p and "no .npz clip" in p for p in problems)
    assert len(problems) == 2


# ---------------------------------------------------------------------------------------------
# WordDataset


def test_word_input_crops_flips_and_normalises():
    frames = np.arange(29 * 96 * 96, dtype=np.int64).reshape(29, 96, 96) % 251
    frames = frames.astype(np.uint8)
    data = word_input(frames)
    assert data.shape == (1, 29, WORD_CROP, WORD_CROP) and data.dtype == np.float32
    expected = (frames[:, 4:92, 4:92] / 255.0 - WORD_MEAN) / WORD_STD
    np.testing.assert_allclose(data[0], expected, atol=1e-5)
    flipped = word_input(frames, (0, 8), flip=True)
    mirrored = frames[:, 0:88, 8:96][:, :, ::-1]
    np.testing.assert_allclose(flipped[0], (mirrored / 255.0 - WORD_MEAN) / WORD_STD, atol=1e-5)
    short = word_input(frames[:20])
    assert short.shape[1] == 29 and np.array_equal(short[0, 19], short[0, 28])
    with pytest.raises(ValueError, match="crop"):
        word_input(frames, (0, 9))


def test_word_dataset_shapes_labels_and_centre_crop(word_tree: Path):
    dataset = data_loader.WordDataset(str(word_tree), "val")
    assert dataset.words == ["ABOUT", "MONEY"] and len(dataset) == 4 and not dataset.problems
    data, label, index = dataset[2]
    assert data.shape == (1, 29, 88, 88) and data.dtype == np.float32
    assert (label, index) == (1, 2) and dataset.clips[2].word == "MONEY"
    np.testing.assert_array_equal(data, word_input(load_clip(dataset.clips[2].path)))
    assert dataset[(5, 2)][0].tobytes() == data.tobytes()  # no augmentation outside training
    (data, labels, indices), = list(data_loader.make_word_loader(dataset, 8))
    assert data.shape == (4, 1, 29, 88, 88)
    assert labels.asnumpy().tolist() == [0, 0, 1, 1] and indices.tolist() == [0, 1, 2, 3]


def test_word_dataset_augmentation_is_seeded_per_epoch_and_clip(word_tree: Path):
    train = data_loader.WordDataset(str(word_tree), "train", train=True, seed=3)
    again = data_loader.WordDataset(str(word_tree), "train", train=True, seed=3)
    frames = load_clip(train.clips[1].path)
    draws = set()
    for epoch in range(12):
        data = train[(epoch, 1)][0]
        assert data.tobytes() == again[(epoch, 1)][0].tobytes()
        matches = [(y, x, flip) for y in range(9) for x in range(9) for flip in (False, True)
                   if np.array_equal(data, word_input(frames, (y, x), flip))]
        assert len(matches) == 1
        draws.add(matches[0])
    assert len(draws) > 6 and {flip for _, _, flip in draws} == {False, True}
    other_seed = data_loader.WordDataset(str(word_tree), "train", train=True, seed=4)
    assert any(other_seed[(e, 1)][0].tobytes() != train[(e, 1)][0].tobytes() for e in range(4))
    # batches from worker threads equal those read in order: augmentation does not depend on timing
    sampler = data_loader.EpochShuffleSampler(len(train), 0)
    serial = [b[0].asnumpy() for b in data_loader.make_word_loader(train, 3, sampler)]
    threaded = [b[0].asnumpy() for b in data_loader.make_word_loader(train, 3, sampler, num_workers=2)]
    assert all(np.array_equal(a, b) for a, b in zip(serial, threaded))


def test_word_dataset_skips_an_unreadable_clip_and_keeps_a_given_word_list(word_tree: Path, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture):
    folder = tmp_path / "MONEY" / "test"
    folder.mkdir(parents=True)
    (folder / "MONEY_00001.npz").write_bytes(b"not a zip")
    (folder / "MONEY_00001.txt").write_text(info_text("MONEY", 0.4))
    save_packed(folder / "MONEY_00002.npz", np.full((29, 96, 96), 128, np.uint8))
    (folder / "MONEY_00002.txt").write_text(info_text("MONEY", 0.4))
    dataset = data_loader.WordDataset(str(tmp_path), "test", words=["ABOUT", "MONEY"])
    assert dataset.labels.tolist() == [1, 1]
    assert any("ABOUT" in p for p in dataset.problems)  # the given word has no folder here: named
    assert dataset[0] is None and "MONEY_00001.npz" in caplog.text
    (data, labels, _), = list(data_loader.make_word_loader(dataset, 4))
    assert data.shape[0] == 1 and labels.asnumpy().tolist() == [1]
    with pytest.raises(ValueError, match="no usable val clip"):
        data_loader.WordDataset(str(tmp_path), "val")


def test_grey_clips_pack_small_and_round_trip(tmp_path: Path):
    ramp = np.linspace(0, 255, 96, dtype=np.float32)
    frames = np.stack([np.add.outer(ramp, ramp * 0.3 + t) for t in range(29)]).clip(0, 255).astype(np.uint8)
    save_packed(tmp_path / "grey.npz", frames)
    back = load_clip(tmp_path / "grey.npz")
    assert back.shape == (29, 96, 96) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 2
    assert (tmp_path / "grey.npz").stat().st_size < 29 * 96 * 96 / 5
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) or \(T, H, W\)"):
        save_packed(tmp_path / "bad.npz", frames[..., None])
