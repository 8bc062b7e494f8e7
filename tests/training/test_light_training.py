"""input_norm and the light_* settings in training runs on small fake data: recorded in the checkpoint, kept by
fine-tuning and resumes, refused where they contradict the checkpoint, and the augmentation trains."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import main
from tests.fake_data import write_fake_clips

TINY = ["channels=4,8,8", "hidden=16", "batch_size=4", "num_gpus=0", "progress=false", "val_speakers=3",
        "align_path=/nonexistent", "lr=0.003", "epochs=1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_fake_clips(root, size=(32, 16), frames=20)
    return root


def _run(clips: Path, save_dir: Path, *extra: str) -> int:
    return main.main([f"image_path={clips}", f"save_dir={save_dir}", *TINY, *extra])


def _meta(run: Path) -> dict:
    return json.loads((run / "last" / "meta.json").read_text())


def test_input_norm_is_recorded_kept_and_not_contradicted(clips: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture):
    assert _run(clips, tmp_path / "default") == 0
    assert _meta(tmp_path / "default")["normalisation"]["input"] == "dataset"
    assert _run(clips, tmp_path / "clip", "input_norm=clip", "light_prob=1", "light_gamma=0") == 0
    meta = _meta(tmp_path / "clip")
    assert meta["normalisation"]["input"] == "clip" and "each clip by its own mean and std" in caplog.text
    assert meta["args"]["light_prob"] == 1 and meta["args"]["light_gamma"] == 0
    # fine-tuning keeps the checkpoint's normalisation, and refuses another
    assert _run(clips, tmp_path / "tuned", f"model_path={tmp_path / 'clip' / 'last'}", "fine_tune=true") == 0
    assert _meta(tmp_path / "tuned")["normalisation"]["input"] == "clip"
    caplog.clear()
    assert _run(clips, tmp_path / "other", f"model_path={tmp_path / 'default' / 'last'}", "fine_tune=true",
                "input_norm=clip") == 2
    assert "input_norm=clip differs from that of" in caplog.text and "(dataset)" in caplog.text
    # a resume takes it, and the augmentation, from the run
    assert main.main([f"model_path={tmp_path / 'clip' / 'last'}", "epochs=2", "progress=false", "num_gpus=0"]) == 0
    meta = _meta(tmp_path / "clip")
    assert meta["state"]["epoch"] == 2 and meta["normalisation"]["input"] == "clip"
    assert meta["args"]["light_prob"] == 1
