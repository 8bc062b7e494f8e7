"""Training runs on small fake data: resume is exact, failures are handled, outputs are written."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import main
from model.checkpoint import load_lipnet
from tests.fake_data import write_fake_clips
from utils.text.grid_text import sentence_from_clip_name

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
    assert 0 <= float(rows[0]["val_mean_clip_wer"]) <= 1 and "val_mean_clip_cer" in rows[0]
    meta = json.loads((tmp_path / "last" / "meta.json").read_text())
    assert meta["split"]["definition"]["val_speakers"] == [3]  # the checkpoint records its clip selection
    assert meta["split"]["val_clips"] == sorted(f"s3/{c.stem}" for c in clips.glob("s3/*.npz"))
    assert meta["split"]["train_count"] == 8 and len(meta["split"]["val_digest"]) == 64
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


@pytest.mark.parametrize("epsilon", [None, 1e-2])
def test_adam_epsilon_damps_the_steps_of_tiny_gradients(epsilon: float | None):
    from mxnet import autograd, gluon

    from model.training.optimiser import make_trainer
    from utils.runtime.cli import parse_args

    args = parse_args(main.build_parser(), ["lr=0.001"] + ([] if epsilon is None else [f"adam_epsilon={epsilon}"]))
    net = gluon.nn.Dense(1, in_units=1, use_bias=False)
    net.initialize(mx.init.Constant(1.0), ctx=mx.cpu())
    opt = make_trainer(net, args, steps_per_epoch=1)
    assert opt._optimizer.epsilon == (1e-8 if epsilon is None else epsilon)
    with autograd.record():
        loss = net(mx.nd.array([[1e-4]])).sum()  # a gradient of 1e-4
    loss.backward()
    opt.step(1)
    step = 1.0 - float(net.weight.data().asscalar())
    if epsilon is None:  # Adam's first step is the learning rate, whatever the gradient's size
        assert step == pytest.approx(1e-3, rel=1e-2)
    else:  # epsilon far above the gradient's scale: a small fraction of it
        assert 0 < step < 1e-5


# ------------------------------------------------------------------------------- exact resume, interrupts

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from model.training import loop, sentence_task  # noqa: E402
from model.training.distributed import Workers  # noqa: E402

# Dropout, flips, jitter, re-encoding, low-rate and single-word clips (through the padded path) all on;
# 4 batches an epoch.
AUGMENTED = ["dr_rate=0.5", "flip_prob=0.5", "jitter_prob=0.2", "word_prob=0.5", "recode_prob=0.5",
             "low_rate_prob=0.5", "batch_size=2", "epochs=2"]


@pytest.fixture(scope="module")
def aligned(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Align files for the fake clips: each sentence's words spread evenly over frames 5-70."""
    root = tmp_path_factory.mktemp("aligns")
    for clip in clips.glob("s*/*.npz"):
        words = sentence_from_clip_name(clip.stem).split()
        bounds = np.linspace(5000, 70000, len(words) + 1).astype(int)
        spoken = [f"{a} {b} {w}" for a, b, w in zip(bounds[:-1], bounds[1:], words)]
        lines = ["0 5000 sil", *spoken, "70000 75000 sil"]
        (root / clip.parent.name).mkdir(exist_ok=True)
        (root / clip.parent.name / f"{clip.stem}.align").write_text("\n".join(lines) + "\n")
    return root


def _augmented(clips: Path, aligns: Path, save_dir: Path, *extra: str) -> int:
    args = [a for a in TINY if not a.startswith(("batch_size=", "align_path="))]
    return main.main([f"image_path={clips}", f"save_dir={save_dir}", f"align_path={aligns}", *args, *AUGMENTED,
                      *extra])


def _interrupt_when(monkeypatch: pytest.MonkeyPatch, target: object, name: str, epoch: int, batch: int,
                    after: bool = False) -> None:
    """Send this process a real SIGINT from inside ``target.name`` (before or ``after`` the real call) during
    training batch (epoch, batch) of a run started from scratch (4 batches an epoch)."""
    where = {"count": 0, "batch": None}
    original_split = loop.split_batch
    in_split = target is loop and name == "split_batch"

    def fire_if_due(now_after: bool) -> None:
        if now_after == after and where["batch"] == (epoch, batch):
            where["batch"] = None
            os.kill(os.getpid(), signal.SIGINT)

    def split(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if sys._getframe(1).f_code.co_name == "train":  # a training batch, not validation
            where["batch"] = divmod(where["count"], 4)
            where["count"] += 1
        if in_split:
            fire_if_due(False)
        return original_split(*args, **kwargs)

    monkeypatch.setattr(loop, "split_batch", split)
    if not in_split:
        original = getattr(target, name)

        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            fire_if_due(False)
            result = original(*args, **kwargs)
            fire_if_due(True)
            return result

        monkeypatch.setattr(target, name, wrapped)


@pytest.fixture(scope="module")
def uninterrupted(clips: Path, aligned: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted")
    assert _augmented(clips, aligned, run) == 0
    return run


def _assert_same_run(run: Path, reference: Path) -> None:
    ours, theirs = _params(run / "last"), _params(reference / "last")
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)  # bit-identical
    a = json.loads((run / "last" / "meta.json").read_text())["state"]
    b = json.loads((reference / "last" / "meta.json").read_text())["state"]
    assert a["iteration"] == b["iteration"] and a["epoch"] == b["epoch"]


def test_interrupt_at_a_chosen_batch_and_resume_is_bit_identical(clips: Path, aligned: Path, uninterrupted: Path,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as patch:
        _interrupt_when(patch, loop, "split_batch", epoch=1, batch=2)
        with pytest.raises(SystemExit) as stopped:
            _augmented(clips, aligned, tmp_path)
    assert stopped.value.code == 130
    state = json.loads((tmp_path / "last" / "meta.json").read_text())["state"]
    # The signal came during batch 2's forward pass: the run stopped before its update, at a batch boundary.
    assert (state["epoch"], state["batch_in_epoch"], state["iteration"]) == (1, 2, 4 + 2)
    assert state["epoch_clips"] == 4 and state["epoch_loss_sum"] > 0  # the epoch's part so far, saved
    assert _augmented(clips, aligned, tmp_path, f"model_path={tmp_path / 'last'}") == 0
    _assert_same_run(tmp_path, uninterrupted)


def test_resumed_epoch_reports_its_whole_training_loss(clips: Path, aligned: Path, uninterrupted: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """metrics.csv after a mid-epoch resume: the interrupted epoch's loss covers all its batches, not only those
    after the resume, and its throughput is a real figure."""
    with monkeypatch.context() as patch:
        _interrupt_when(patch, loop, "split_batch", epoch=1, batch=1)
        with pytest.raises(SystemExit):
            _augmented(clips, aligned, tmp_path)
    assert _augmented(clips, aligned, tmp_path, f"model_path={tmp_path / 'last'}") == 0
    ours = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    theirs = list(csv.DictReader((uninterrupted / "metrics.csv").open()))
    assert [r["epoch"] for r in ours] == ["1", "2"]
    for mine, reference in zip(ours, theirs):
        assert float(mine["train_loss"]) == pytest.approx(float(reference["train_loss"]), rel=1e-6)
        assert float(mine["val_loss"]) == pytest.approx(float(reference["val_loss"]), rel=1e-6)
        assert float(mine["samples_per_s"]) > 0


def test_interrupt_during_validation_writes_no_nan_row(clips: Path, aligned: Path, uninterrupted: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    original = sentence_task.evaluate
    calls = {"n": 0}

    def interrupted_evaluate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's validation
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sentence_task, "evaluate", interrupted_evaluate)
        with pytest.raises(SystemExit):
            _augmented(clips, aligned, tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"]  # nothing written for the interrupted epoch
    assert _augmented(clips, aligned, tmp_path, f"model_path={tmp_path / 'last'}") == 0
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    reference = list(csv.DictReader((uninterrupted / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row, ref in zip(rows, reference):
        assert math.isfinite(float(row["train_loss"])) and float(row["samples_per_s"]) > 0, row
        assert float(row["train_loss"]) == pytest.approx(float(ref["train_loss"]), rel=1e-6)
    _assert_same_run(tmp_path, uninterrupted)


@pytest.mark.parametrize("point", ["split_batch", "allreduce", "backward", "before_step", "inside_step",
                                   "after_step"])
def test_an_interrupt_anywhere_in_a_step_leaves_a_consistent_checkpoint(point: str, clips: Path, aligned: Path,
                                                                        uninterrupted: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """A SIGINT delivered at each point of a training step (simulated by sending it from there): the
    checkpoint's step count always matches its weights, so the resumed run ends bit-identical."""
    from mxnet import gluon

    target, name, after = {
        "split_batch": (loop, "split_batch", False),
        "allreduce": (Workers, "allreduce", False),
        "backward": (mx.nd.NDArray, "backward", False),
        "before_step": (gluon.Trainer, "step", False),
        "inside_step": (gluon.Trainer, "_update", False),  # after the gradients are reduced, before the update
        "after_step": (gluon.Trainer, "step", True),  # between the update and the step counters
    }[point]
    with monkeypatch.context() as patch:
        _interrupt_when(patch, target, name, epoch=0, batch=1, after=after)
        with pytest.raises(SystemExit):
            _augmented(clips, aligned, tmp_path)
    state = json.loads((tmp_path / "last" / "meta.json").read_text())["state"]
    assert state["iteration"] == state["batch_in_epoch"] in (1, 2)
    assert _augmented(clips, aligned, tmp_path, f"model_path={tmp_path / 'last'}") == 0
    _assert_same_run(tmp_path, uninterrupted)


def test_checkpoint_folders_follow_the_umask(clips: Path, tmp_path: Path):
    old = os.umask(0o022)
    try:
        assert _run(clips, tmp_path, "epochs=1") == 0
    finally:
        os.umask(old)
    for folder in (tmp_path / "last", tmp_path / "best"):
        assert folder.stat().st_mode & 0o777 == 0o755, oct(folder.stat().st_mode)
    assert (tmp_path / "metrics.csv").stat().st_mode & 0o777 == 0o644


def test_a_second_interrupt_stops_at_once_without_saving(clips: Path, aligned: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture):
    original = mx.nd.NDArray.backward

    def twice(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the second lands mid-step
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(mx.nd.NDArray, "backward", twice)
        with pytest.raises(SystemExit) as stopped:
            _augmented(clips, aligned, tmp_path)
    assert stopped.value.code == 130
    assert not (tmp_path / "last").exists()  # nothing saved from a half-done step
    assert "interrupted twice (SIGINT): stopped without saving" in caplog.text
