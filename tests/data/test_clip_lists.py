"""Clip lists (train_list, val_list): clips named but absent are counted, named, or refused."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

import main
from tests.fake_data import write_fake_clips
from utils.data import splits

AVAILABLE = {"s1/bbaf2n", "s1/lwbsza", "s2/swwp2s"}


def write_list(path: Path, clips: list[str]) -> Path:
    path.write_text("".join(f"{c}\n" for c in clips))
    return path


def test_absent_clips_are_counted_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = write_list(tmp_path / "train.txt", ["s1/bbaf2n", "s1/gone1a", "s1/gone2a", "s1/gone3a"])
    with caplog.at_level(logging.WARNING):
        assert splits.listed_clips(path, AVAILABLE) == ["s1/bbaf2n"]
    assert f"clip list {path}: 3 of the 4 clips it names are absent (s1/gone1a, s1/gone2a, s1/gone3a)" in caplog.text
    assert "missing_clips=error" in caplog.text


def test_missing_clips_error_refuses_the_list(tmp_path: Path):
    path = write_list(tmp_path / "train.txt", ["s1/bbaf2n", *(f"s1/gone{i}a" for i in range(7))])
    with pytest.raises(ValueError, match=rf"clip list {path}: 7 of the 8 .*\(s1/gone0a, .*s1/gone4a \.\.\.\)$"):
        splits.listed_clips(path, AVAILABLE, missing="error")
    assert splits.listed_clips(write_list(tmp_path / "ok.txt", ["s2/swwp2s"]), AVAILABLE, "error") == ["s2/swwp2s"]


def test_a_list_with_nothing_present_is_an_error_naming_it(tmp_path: Path):
    path = write_list(tmp_path / "val.txt", ["s9/gone1a", "s9/gone2a"])
    with pytest.raises(ValueError, match=rf"clip list {path}: 2 of the 2"):
        splits.listed_clips(path, AVAILABLE)
    with pytest.raises(ValueError, match=rf"clip list {tmp_path / 'empty.txt'}: names no clips"):
        splits.listed_clips(write_list(tmp_path / "empty.txt", []), AVAILABLE)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_fake_clips(root)
    return root


def train(clips: Path, tmp_path: Path, *extra: str) -> int:
    return main.main([f"image_path={clips}", f"save_dir={tmp_path / 'run'}", "channels=4,8,8", "hidden=16",
                      "batch_size=4", "num_gpus=0", "progress=false", "align_path=/nonexistent", "epochs=1", *extra])


def test_training_names_the_list_not_the_split(clips: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    val = write_list(tmp_path / "val.txt", ["s3/swwp2s"])
    partly = write_list(tmp_path / "partly.txt", ["s1/bbaf2n", "s1/gone1a", "s1/gone2a", "s1/gone3a"])
    assert train(clips, tmp_path, f"train_list={partly}", f"val_list={val}", "missing_clips=error") == 2
    assert f"clip list {partly}: 3 of the 4 clips it names are absent" in caplog.text
    caplog.clear()
    none = write_list(tmp_path / "none.txt", ["s1/gone1a", "s1/gone2a"])
    assert train(clips, tmp_path, f"train_list={none}", f"val_list={val}") == 2
    assert f"clip list {none}: 2 of the 2" in caplog.text and "split" not in caplog.text
    caplog.clear()
    assert train(clips, tmp_path, f"train_list={partly}", f"val_list={val}", "speakers=3") == 2
    assert f"clip list {partly}: none of its clips is of the speakers selected ([3])" in caplog.text
    assert not (tmp_path / "run" / "last").exists()
