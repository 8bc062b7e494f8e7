"""Training runs on small fake data: resume is exact, failures are handled, outputs are written."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import main
from model import load_lipnet
from tests.fake_data import write_fake_clips

TINY = ["channels=4,8,8", "hidden=16", "batch_size=4", "num_gpus=0", "progress=false", "val_speakers=3",
        "align_path=/nonexistent", "lr=0.003"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_fake_clips(root)
    return root


def _run(clips: Path, save_dir: Path, *extra: str) -> int:
    return main.main([f"image_path={clips}", f"save_dir={save_dir}", *TINY, *extra])


def _params(path: Path) -> dict[str, np.ndarray]:
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path / "model.params")).items()}


def test_two_plus_two_epochs_equal_four(clips: Path, tmp_path: Path):
    assert _run(clips, tmp_path / "straight", "epochs=4") == 0
    assert _run(clips, tmp_path / "split", "epochs=2") == 0
    assert _run(clips, tmp_path / "split", "epochs=4", f"model_path={tmp_path / 'split' / 'last'}") == 0
    straight, split = _params(tmp_path / "straight" / "last"), _params(tmp_path / "split" / "last")
    assert straight.keys() == split.keys()
    for name in straight:
        np.testing.assert_allclose(split[name], straight[name], rtol=1e-5, atol=1e-6, err_msg=name)
    a = json.loads((tmp_path / "straight" / "last" / "meta.json").read_text())
    b = json.loads((tmp_path / "split" / "last" / "meta.json").read_text())
    assert a["state"]["epoch"] == b["state"]["epoch"] == 4
    assert a["state"]["iteration"] == b["state"]["iteration"] == 4 * 2  # 8 training clips, batch 4
    assert [h["lr"] for h in a["state"]["history"]] == [h["lr"] for h in b["state"]["history"]]
    np.testing.assert_allclose([h["val_loss"] for h in a["state"]["history"]],
                               [h["val_loss"] for h in b["state"]["history"]], rtol=1e-4)


def test_run_writes_logs_metrics_plot_and_loadable_checkpoints(clips: Path, tmp_path: Path):
    assert _run(clips, tmp_path, "epochs=2", "lr_schedule=cosine", "warmup_steps=1") == 0
    for name in ("train.log", "metrics.csv", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_loss", "val_cer", "val_wer", "lr", "samples_per_s"} <= rows[0].keys()
    assert float(rows[0]["lr"]) != float(rows[1]["lr"])  # the cosine schedule moves
    meta = json.loads((tmp_path / "last" / "meta.json").read_text())
    assert meta["normalisation"]["mean"] and meta["config"]["channels"] == [4, 8, 8]
    assert (tmp_path / "last" / "trainer.states").stat().st_size > 0
    loaded = load_lipnet(tmp_path)  # the run folder: picks best/
    assert loaded.config.hidden == 16 and loaded.path.name == "best"
    assert "[Target]" in (tmp_path / "train.log").read_text()


def test_non_finite_loss_is_skipped_and_counted(clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mxnet import gluon

    original = gluon.loss.CTCLoss.hybrid_forward
    calls = {"n": 0}

    def poisoned(self, F, pred, label, *args):  # noqa: ANN001
        loss = original(self, F, pred, label, *args)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 1 else loss

    monkeypatch.setattr(gluon.loss.CTCLoss, "hybrid_forward", poisoned)
    assert _run(clips, tmp_path, "epochs=1") == 0
    meta = json.loads((tmp_path / "last" / "meta.json").read_text())
    assert meta["state"]["skipped_steps"] == 1
    assert meta["state"]["iteration"] == 1  # two batches, one skipped
    for value in _params(tmp_path / "last").values():
        assert np.isfinite(value).all()


def test_missing_data_and_bad_checkpoint_fail_clearly(clips: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    assert main.main([f"image_path={tmp_path / 'nothing'}", f"save_dir={tmp_path / 'a'}", *TINY]) == 2
    assert "no such image folder" in caplog.text
    bad = tmp_path / "bad.params"
    bad.write_bytes(b"garbage")
    assert _run(clips, tmp_path / "b", f"model_path={bad}") == 2
    assert "bad.params: not a readable MXNet parameter file" in caplog.text
    assert _run(clips, tmp_path / "c", f"model_path={tmp_path / 'missing'}") == 2
    assert "no such checkpoint" in caplog.text


def test_help_explains_flags(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--batch_size", "--epochs", "--image_path", "--align_path", "--dr_rate", "--num_gpus",
                 "--num_workers", "--model_path", "--split", "--lr", "--seed", "--save_dir", "--variant"):
        assert flag in out
