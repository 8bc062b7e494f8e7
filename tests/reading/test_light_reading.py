"""Light that does not matter, end to end: a small LipNet trained with ``input_norm=clip`` on the three shared
GRID clips (the committed ``light_model`` of ``tests/real_model.py``) reads a darker, lower-contrast copy of each
video (ffmpeg's ``eq=brightness=-0.25:contrast=0.6``, made here) as it reads the original, with its checkpoint on
MXNet and with its ONNX export; and the command line's checks of the settings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from utils.data.light import light_table
from utils.text.grid_text import sentence_from_clip_name
from utils.video.writer import write_video

REPO_ROOT = Path(__file__).resolve().parents[2]


def eq_copy(video: Path, out: Path, brightness: float, contrast: float) -> Path:
    """What ffmpeg's ``eq=brightness=B:contrast=C`` makes of ``video`` (PyAV's FFmpeg has no ``eq`` filter):
    the luma plane through the same curve (``light_table``), the chroma planes kept, encoded as H.264."""
    table = light_table(brightness, contrast, 1.0)
    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            planes = frame.to_ndarray(format="yuv420p")
            planes[: frame.height] = table[planes[: frame.height]]
            frames.append(av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgb24"))
    return write_video(out, frames, 25)


@pytest.fixture(scope="module")
def clip_model(light_model: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The committed model normalised per clip (the ``light_model`` fixture), its ONNX export, the raw videos
    (s1) and, beside them, their darker, lower-contrast copies."""
    from utils import export_onnx

    root = tmp_path_factory.mktemp("light")
    both = root / "both"
    both.mkdir()
    for clip in sorted(light_model["videos"].iterdir()):
        (both / clip.name).symlink_to(clip.resolve())
        eq_copy(clip, both / f"{clip.stem}_darker.mp4", -0.25, 0.6)
    assert export_onnx.main([f"model_path={light_model['model']}", f"out={root / 'model.onnx'}"]) == 0
    return {"model": light_model["model"], "onnx": root / "model.onnx", "videos": light_model["videos"],
            "both": both}


def _read(model: Path, videos: Path) -> dict[str, str]:
    result = subprocess.run([sys.executable, "infer.py", f"model_path={model}", f"video={videos}", "num_gpus=0",
                             "progress=false"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return dict(line.split("\t", 1) for line in result.stdout.splitlines())


def test_a_model_normalised_per_clip_reads_a_darker_flatter_copy_as_the_original(clip_model: dict[str, Path]):
    meta = json.loads((clip_model["model"] / "meta.json").read_text())
    assert meta["normalisation"]["input"] == "clip" and meta["metrics"]["val_wer"] == 0.0
    for model in (clip_model["model"], clip_model["onnx"]):
        read = _read(model, clip_model["both"])
        for video in sorted(clip_model["videos"].iterdir()):
            sentence = sentence_from_clip_name(video.stem)
            assert (read[video.name], read[f"{video.stem}_darker.mp4"]) == (sentence, sentence), model


def test_the_darker_copy_is_darker_and_flatter(clip_model: dict[str, Path]):
    """The copy the model reads is the change the issue describes, not a near-identical re-encoding."""
    from utils.video.mouth_extractor import MouthExtractor

    extractor = MouthExtractor(size=(100, 50))
    luma = np.array([0.299, 0.587, 0.114])
    for video in sorted(clip_model["videos"].iterdir()):
        original = extractor.extract(video).frames @ luma
        copy = extractor.extract(clip_model["both"] / f"{video.stem}_darker.mp4").frames @ luma
        assert copy.mean() < original.mean() - 50
        assert copy.std() < 0.7 * original.std()


@pytest.mark.parametrize("setting, message", [
    ("light_prob=1.5", "from 0 to 1"), ("light_brightness=-0.1", "from 0 to 1"), ("light_contrast=1", "below 1"),
    ("light_gamma=4", "from 0 to 3"), ("input_norm=frame", "invalid choice: 'frame'")])
def test_out_of_range_light_settings_are_refused_before_training(setting: str, message: str, tmp_path: Path):
    result = subprocess.run([sys.executable, "main.py", f"save_dir={tmp_path}", setting], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and setting.split("=")[0] in result.stderr


def test_the_word_task_refuses_the_sentence_models_light_settings(tmp_path: Path):
    for setting in ("input_norm=clip", "light_prob=0.5"):
        result = subprocess.run([sys.executable, "main.py", "task=words", f"save_dir={tmp_path}", setting],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "settings of task=sentences" in result.stderr


def test_help_states_the_light_settings_and_their_defaults():
    result = subprocess.run([sys.executable, "main.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    text = " ".join(result.stdout.split())
    for flag, default in (("--input_norm", "else dataset"), ("--light_prob", "(default: 0.0)"),
                          ("--light_brightness", "(default: 0.3)"), ("--light_contrast", "(default: 0.5)"),
                          ("--light_gamma", "(default: 0.5)")):
        assert flag in text and default in text.split(flag, 2)[-1][:600]
