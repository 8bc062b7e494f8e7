"""Checkpoint files are checked against meta.json's checksums: damage is named, never trained on."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

import main
from model.checkpoint import DamagedCheckpoint, load_lipnet, load_trainer_states, read_checkpoint, save_checkpoint
from model.lipnet import LipNet, LipNetConfig
from tests.fake_data import write_fake_clips

CONFIG = LipNetConfig(channels=(4, 8, 8), hidden=16, height=24, width=48)
META = {"normalisation": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}, "state": {"epoch": 3}}


def small_run(root: Path) -> Path:
    """A run folder with last/ and best/, each with parameters and Adam's state."""
    net = LipNet(CONFIG)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "adam")
    for name in ("best", "last"):
        save_checkpoint(root / name, net, trainer, META)
    return root


def overwrite(path: Path, at: int, count: int = 4096) -> None:
    """Damage in place: the size stays, the contents change (random bytes, as a bad disk block)."""
    data = bytearray(path.read_bytes())
    data[at:at + count] = np.random.default_rng(0).integers(0, 256, count, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_meta_records_each_file(tmp_path: Path):
    run = small_run(tmp_path / "run")
    files = json.loads((run / "last" / "meta.json").read_text())["files"]
    assert set(files) == {"model.params", "trainer.states"}
    for name, record in files.items():
        assert record["bytes"] == (run / "last" / name).stat().st_size and len(record["sha256"]) == 64


def test_params_overwritten_in_place_are_named(tmp_path: Path):
    run = small_run(tmp_path / "run")
    overwrite(run / "best" / "model.params", at=2000)
    with pytest.raises(DamagedCheckpoint, match=r"best/model.params: damaged \(its SHA-256 differs"):
        load_lipnet(run / "best")


def test_truncated_params_are_named_and_the_sibling_offered(tmp_path: Path):
    run = small_run(tmp_path / "run")
    truncate(run / "best" / "model.params")
    with pytest.raises(DamagedCheckpoint) as err:
        load_lipnet(run)  # a run folder: best/ first
    message = str(err.value)
    assert f"{run / 'best' / 'model.params'}: damaged (truncated: " in message
    assert f"; {run / 'last'} (after epoch 3) is intact: use model_path={run / 'last'}" in message


def test_damaged_states_matter_to_a_resume_only(tmp_path: Path):
    run = small_run(tmp_path / "run")
    truncate(run / "last" / "trainer.states")
    assert load_lipnet(run / "last").config == CONFIG  # inference never reads the optimiser state
    with pytest.raises(DamagedCheckpoint, match=r"last/trainer.states: damaged \(truncated.*best.*is intact"):
        read_checkpoint(run, prefer="last", states=True)


def test_no_offer_when_both_are_damaged(tmp_path: Path):
    run = small_run(tmp_path / "run")
    for name in ("last", "best"):
        overwrite(run / name / "model.params", at=2000)
    with pytest.raises(DamagedCheckpoint) as err:
        read_checkpoint(run, prefer="last")
    assert "last/model.params: damaged" in str(err.value) and "intact" not in str(err.value)


def test_checkpoints_without_checksums_still_load(tmp_path: Path):
    run = small_run(tmp_path / "run")
    meta_file = run / "last" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["files"]
    meta_file.write_text(json.dumps(meta))
    contents = read_checkpoint(run / "last", states=True)
    assert contents.config == CONFIG


def test_non_finite_parameters_are_named_even_without_checksums(tmp_path: Path):
    net = LipNet(CONFIG)
    net.initialize()
    arrays = {k: p.data() for k, p in net._collect_params_with_prefix().items()}
    arrays["dense.weight"][0, :3] = float("nan")
    mx.nd.save(str(tmp_path / "nan.params"), arrays)
    with pytest.raises(DamagedCheckpoint, match=r"nan.params: damaged \(dense.weight holds 3 NaN or infinite"):
        read_checkpoint(tmp_path / "nan.params")


def test_unreadable_trainer_state_is_named(tmp_path: Path):
    run = small_run(tmp_path / "run")
    states = run / "last" / "trainer.states"
    truncate(states)
    net = LipNet(CONFIG)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "adam")
    with pytest.raises(DamagedCheckpoint, match=r"trainer.states: not a readable trainer state"):
        load_trainer_states(trainer, states)


TINY = ["channels=4,8,8", "hidden=16", "batch_size=4", "num_gpus=0", "progress=false", "val_speakers=3",
        "align_path=/nonexistent", "epochs=1"]


def test_resume_from_a_damaged_last_names_it_and_offers_best(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    clips = tmp_path / "clips"
    write_fake_clips(clips)
    run = tmp_path / "run"
    args = [f"image_path={clips}", *TINY]
    assert main.main([*args, f"save_dir={run}"]) == 0
    truncate(run / "last" / "trainer.states")
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main.main([*args, f"save_dir={tmp_path / 'resumed'}", f"model_path={run}"]) == 2
    assert f"{run / 'last' / 'trainer.states'}: damaged (truncated" in caplog.text
    assert f"is intact: use model_path={run / 'best'}" in caplog.text
    assert not (tmp_path / "resumed" / "last").exists()  # nothing was trained on it
    # The same damage in a checkpoint from before the checksums is still named, not a traceback.
    meta_file = run / "last" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["files"]
    meta_file.write_text(json.dumps(meta))
    caplog.clear()
    assert main.main([*args, f"save_dir={tmp_path / 'resumed'}", f"model_path={run / 'last'}"]) == 2
    assert f"{run / 'last' / 'trainer.states'}: not a readable trainer state" in caplog.text
