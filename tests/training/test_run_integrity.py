"""A run is one run: a resume keeps its data, split and settings; splits never overlap; a new run never
mixes with an old one; reading scores only clips the checkpoint did not train on; ONNX files select
what their checkpoint selects. Where a user meets a case on the command line, it runs as a subprocess."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import infer
import main
from model.training import loop, sentence_task
from tests.fake_data import write_fake_clips

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ["channels=4,8,8", "hidden=16", "batch_size=4", "num_gpus=0", "progress=false", "align_path=/nonexistent",
        "lr=0.003"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speakers s1-s3, four clips each."""
    root = tmp_path_factory.mktemp("clips")
    write_fake_clips(root)
    return root


def train(clips: Path, save_dir: Path, *extra: str) -> int:
    return main.main([f"image_path={clips}", f"save_dir={save_dir}", *TINY, *extra])


def script(name: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / name), *argv], capture_output=True, text=True,
                          cwd=cwd or REPO_ROOT, timeout=600, check=False)


def read(*argv: str) -> tuple[int, str, str]:
    """``infer.main(argv)`` with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = infer.main([*argv, "num_gpus=0", "progress=false"])
    return code, out.getvalue(), err.getvalue()


def meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def scored_clips(stdout: str) -> list[str]:
    return re.findall(r"^\[Clip\]\s+(\S+)$", stdout, re.M)


@pytest.fixture(scope="module")
def run(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run validated on s3 (trained on s1 and s2)."""
    save_dir = tmp_path_factory.mktemp("run")
    assert train(clips, save_dir, "val_speakers=3", "epochs=1") == 0
    return save_dir


def interrupt_at_training_batch(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Send this process a real SIGINT as training batch ``number`` (from 1, counted over the run) starts."""
    calls = {"n": 0}
    original = sentence_task.SentenceTask.losses

    def losses(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == number:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sentence_task.SentenceTask, "losses", losses)


@pytest.mark.parametrize("selection", ["val_speakers", "overlapped", "lists"])
def test_the_interrupt_messages_command_resumes_the_same_run(selection: str, clips: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture):
    (tmp_path / "train.txt").write_text("".join(f"{c.parent.name}/{c.stem}\n" for c in sorted(clips.glob("s[12]/*"))))
    (tmp_path / "val.txt").write_text("".join(f"s3/{c.stem}\n" for c in sorted(clips.glob("s3/*"))))
    chosen = {"val_speakers": ["val_speakers=3"], "overlapped": ["split=overlapped"],
              "lists": [f"train_list={tmp_path / 'train.txt'}", f"val_list={tmp_path / 'val.txt'}"]}[selection]
    with monkeypatch.context() as patch:
        interrupt_at_training_batch(patch, 3)  # epoch 2's first batch (2 batches an epoch)
        with pytest.raises(SystemExit) as stopped:
            train(clips, tmp_path / "run", "epochs=3", *chosen)
    assert stopped.value.code == 130
    # The signal came during epoch 2's first batch, before its update: the run saves without it.
    said = re.search(r"in epoch 2 after 0 of its batches; to resume: python main.py (model_path=\S+)", caplog.text)
    assert said, caplog.text
    before = meta(tmp_path / "run" / "last")
    # Exactly as printed, from another directory: no data path, split, batch size or epoch count repeated.
    resumed = script("main.py", said.group(1), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = meta(tmp_path / "run" / "last")
    assert before["state"]["iteration"] == 2 and after["state"]["iteration"] == 6
    assert after["state"]["epoch"] == 3
    assert after["split"] == before["split"] and after["run_id"] == before["run_id"]
    assert after["args"]["batch_size"] == 4 and after["args"]["channels"] == [4, 8, 8]
    if selection != "overlapped":
        assert {c.split("/")[0] for c in after["split"]["val_clips"]} == {"s3"}
        assert after["split"]["train_count"] == 8


def test_a_resume_refuses_another_value_of_a_setting_of_its_run(run: Path):
    for flag, recorded in (("batch_size=8", "batch_size=4"), ("val_speakers=2", "val_speakers=3"),
                           ("lr=0.1", "lr=0.003")):
        result = script("main.py", f"model_path={run / 'last'}", flag, "epochs=2")
        assert result.returncode == 2, result.stderr
        assert f"{flag} differs from the run being resumed ({recorded} in {run / 'last' / 'meta.json'})" \
            in result.stderr
        assert "fine_tune=true" in result.stderr and "Traceback" not in result.stderr
    assert meta(run / "last")["state"]["epoch"] == 1  # nothing trained


def test_fine_tune_starts_a_new_run_from_the_weights(clips: Path, run: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture):
    new = tmp_path / "tuned"
    assert main.main([f"model_path={run / 'last'}", "fine_tune=true", f"save_dir={new}", f"image_path={clips}",
                      "val_speakers=2", "batch_size=2", "epochs=1", "num_gpus=0", "progress=false",
                      "align_path=/nonexistent"]) == 0
    tuned = meta(new / "last")
    assert tuned["state"]["epoch"] == 1 and tuned["state"]["iteration"] == 4  # 8 clips of s1 and s3, batch 2
    assert tuned["split"]["definition"]["val_speakers"] == [2] and tuned["run_id"] != meta(run / "last")["run_id"]
    assert tuned["config"]["channels"] == [4, 8, 8]  # the checkpoint's network
    assert f"fine-tuning from {run / 'last'}" in caplog.text
    code = main.main([f"model_path={run / 'last'}", "fine_tune=true", f"save_dir={run}", f"image_path={clips}",
                      "val_speakers=2", "epochs=1", "num_gpus=0", "progress=false", "overwrite=true"])
    assert code == 2 and "holds the checkpoint this run starts from" in caplog.text
    assert (run / "last" / "meta.json").is_file()


def test_clip_lists_that_share_clips_are_refused(clips: Path, tmp_path: Path):
    (tmp_path / "train.txt").write_text("".join(f"{c.parent.name}/{c.stem}\n" for c in sorted(clips.glob("s*/*"))))
    (tmp_path / "val.txt").write_text("".join(f"s1/{c.stem}\n" for c in sorted(clips.glob("s1/*"))) + "s3/pgic3a\n")
    result = script("main.py", f"image_path={clips}", f"save_dir={tmp_path / 'run'}", *TINY, "epochs=1",
                    f"train_list={tmp_path / 'train.txt'}", f"val_list={tmp_path / 'val.txt'}")
    assert result.returncode == 2
    assert re.search(r"share 5 clips \(s1/\w+, s1/\w+, s1/\w+, s1/\w+, s3/pgic3a\): a validation clip must never be "
                     r"trained on", result.stderr), result.stderr
    assert not (tmp_path / "run" / "last").exists()


def test_a_new_run_never_mixes_with_the_runs_already_in_its_folder(clips: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture):
    folder = tmp_path / "run"
    assert train(clips, folder, "val_speakers=3", "epochs=1") == 0  # run A: last/ and best/
    assert train(clips, folder, "val_speakers=3", "epochs=1", "channels=8,8,8") == 2
    assert f"{folder} holds another run's checkpoints (last/, best/): resume it with model_path=" in caplog.text
    assert meta(folder / "best")["config"]["channels"] == [4, 8, 8]
    with monkeypatch.context() as patch:  # run B, started afresh and interrupted before its first validation
        interrupt_at_training_batch(patch, 1)
        with pytest.raises(SystemExit):
            train(clips, folder, "val_speakers=3", "epochs=1", "channels=8,8,8", "overwrite=true")
    assert not (folder / "best").exists()  # run A's best/ does not outlive its run beside B's last/
    assert meta(folder / "last")["config"]["channels"] == [8, 8, 8]
    code, _, err = read(f"model_path={folder}", f"image_path={clips}")
    assert f"model {folder / 'last'}" in err


def test_the_quick_start_refuses_other_settings_in_its_folders(tmp_path: Path):
    tiny = [f"data_path={tmp_path / 'data'}", f"save_dir={tmp_path / 'run'}", "clips_per_speaker=2", "channels=4,8,8",
            "hidden=16", "epochs=1", "batch_size=4", "decoder=greedy", "progress=false"]
    first = script("utils/quickstart.py", *tiny, "train_speakers=1,2", "val_speakers=3")
    assert first.returncode == 0, first.stderr
    again = script("utils/quickstart.py", *tiny, "train_speakers=1,3", "val_speakers=2")
    assert again.returncode == 2, again.stderr
    assert "reading the unseen speakers" not in again.stderr
    assert meta(tmp_path / "run" / "last")["split"]["definition"]["val_speakers"] == [3]


def test_reading_never_scores_trained_clips_as_validation(clips: Path, run: Path):
    code, out, err = read(f"model_path={run}")  # the data paths and split are the checkpoint's
    assert code == 0, err
    assert {c.split("/")[0] for c in scored_clips(out)} == {"s3"} and "(4 clips, valid" in out
    code, out, err = read(f"model_path={run}", "val_speakers=2,3")
    assert code == 0, err
    assert "warning: this selection differs from the checkpoint's (val_speakers=3): 4 of its 8 validation clips " \
           "were trained on and are left out, 4 of the 4 scored are the checkpoint's validation clips" in err
    assert {c.split("/")[0] for c in scored_clips(out)} == {"s3"}
    result = script("infer.py", f"model_path={run}", "speakers=1-2", "num_gpus=0", "progress=false")
    assert result.returncode == 2  # the unseen split's validation side of s1-s2 is all trained clips
    assert "8 of its 8 validation clips were trained on and are left out" in result.stderr
    assert "[Clip]" not in result.stdout


def test_an_onnx_file_scores_the_clips_its_checkpoint_would(clips: Path, run: Path, tmp_path: Path):
    from utils import export_onnx

    with contextlib.redirect_stderr(io.StringIO()):
        assert export_onnx.main([f"model_path={run}", f"out={tmp_path / 'run.onnx'}"]) == 0
    _, mxnet_out, _ = read(f"model_path={run}")
    result = script("infer.py", f"model_path={tmp_path / 'run.onnx'}", "num_gpus=0", "progress=false")
    assert result.returncode == 0, result.stderr
    assert scored_clips(result.stdout) == scored_clips(mxnet_out) and len(scored_clips(mxnet_out)) == 4
    assert "clips selected as at training (val_speakers=3" in result.stderr


def test_an_onnx_graph_without_lengths_reads_a_padded_batch_clip_by_clip(tmp_path: Path):
    import mxnet as mx

    from model.checkpoint import save_checkpoint
    from model.lipnet import LipNet, LipNetConfig
    from utils import export_onnx
    from utils.reading.onnx_network import OnnxLipNet

    net = LipNet(LipNetConfig(channels=(4, 4, 4), hidden=8, width=32, height=16, norm="instance"))
    net.initialize(mx.init.Xavier())
    folder = save_checkpoint(tmp_path / "best", net, None, {"normalisation": {"mean": [0.5] * 3, "std": [0.2] * 3}})
    with contextlib.redirect_stderr(io.StringIO()):
        assert export_onnx.main([f"model_path={folder}", f"out={tmp_path / 'x.onnx'}", "lengths=false"]) == 0
    network = OnnxLipNet(tmp_path / "x.onnx")
    assert not network.takes_lengths
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 3, 40, 16, 32)).astype(np.float32)
    data[0, :, 20:] = data[0, :, 19:20]  # clip 0 is 20 frames, padded by holding its last frame
    alone = network.log_probs(data[:1, :, :20].copy())[0]
    batched = network.log_probs(data, np.array([20, 40]))
    np.testing.assert_allclose(batched[0, :20], alone, atol=1e-5)
    np.testing.assert_allclose(batched[1], network.log_probs(data[1:])[0], atol=1e-5)
    assert np.abs(network.log_probs(data)[0, :20] - alone).max() > 1e-3  # what reading padding gave


@pytest.mark.parametrize("flag", ["val_interval=0", "batch_size=0", "batch_size=-3", "epochs=0", "epochs=-2", "lr=-1",
                                  "flip_prob=1.5", "num_workers=-1", "channels=4,0,8", "dr_rate=1"])
def test_training_settings_are_range_checked_when_parsed(flag: str, tmp_path: Path):
    result = script("main.py", f"image_path={tmp_path}", f"save_dir={tmp_path / 'run'}", flag)
    key = flag.split("=")[0]
    assert result.returncode == 2
    assert re.search(rf"error: argument --{key}: expected .*, got '", result.stderr), result.stderr
    assert not (tmp_path / "run").exists()


def test_abbreviated_options_are_refused():
    result = script("main.py", "--epoch=1", "--batch=4")
    assert result.returncode == 2 and "unrecognized arguments: --epoch=1 --batch=4" in result.stderr


def test_config_file_errors_name_the_file_the_key_and_the_line(tmp_path: Path):
    cases = {"ten.yaml": (b"epochs: ten\n", "epochs: expected an integer of at least 1, got 'ten'"),
             "syntax.yaml": (b"lr: 0.1\nepochs: [1\nseed: 2\n", "not valid YAML (line 3:"),
             "binary.yaml": (b"\xff\xfe\x00\x01epochs", "not a text file (not UTF-8)")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        result = script("main.py", "--config", str(tmp_path / name))
        assert result.returncode == 2 and f"--config {tmp_path / name}: {message}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_second_ctrl_c_during_the_interrupt_save_exits_130_and_keeps_the_checkpoints(
        clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    original = loop.save_checkpoint

    def save_interrupted_again(folder, net, trainer_, meta_):  # noqa: ANN001, ANN202
        if caplog.text.count("stopping after this batch"):  # the interrupt save: a second Ctrl-C lands in it
            os.kill(os.getpid(), signal.SIGINT)
        return original(folder, net, trainer_, meta_)

    with monkeypatch.context() as patch:
        interrupt_at_training_batch(patch, 3)  # after epoch 1 was validated and saved
        patch.setattr(loop, "save_checkpoint", save_interrupted_again)
        with pytest.raises(SystemExit) as stopped:
            train(clips, tmp_path, "val_speakers=3", "epochs=2")
    assert stopped.value.code == 130
    assert f"interrupted twice (SIGINT): stopped without saving; {tmp_path / 'last'} and {tmp_path / 'best'} hold " \
           "the checkpoints saved before" in caplog.text
    assert meta(tmp_path / "last")["state"]["epoch"] == 1  # epoch 1's checkpoint, intact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no half-written folder


def test_every_record_of_a_run_is_one_line(run: Path):
    lines = (run / "train.log").read_text().splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) ")
    assert lines and all(stamp.match(line) for line in lines), [line for line in lines if not stamp.match(line)]
    epoch = next(line for line in lines if " epoch 1: train loss " in line)
    assert "[Pred]" not in epoch and epoch.rstrip().endswith(tuple("0123456789"))
    assert sum("[Target]" in line for line in lines) == 3 and sum("[Pred]" in line for line in lines) == 3


def test_a_save_dir_that_cannot_be_written_stops_the_run_before_any_epoch(clips: Path, tmp_path: Path):
    (tmp_path / "file").write_text("not a folder")
    result = script("main.py", f"image_path={clips}", f"save_dir={tmp_path / 'file' / 'run'}", *TINY,
                    "val_speakers=3", "epochs=1")
    assert result.returncode == 2
    assert f"save_dir {tmp_path / 'file' / 'run'}: cannot be created ({tmp_path / 'file'} is a file, not a folder)" \
        in result.stderr and "epoch 1" not in result.stderr
