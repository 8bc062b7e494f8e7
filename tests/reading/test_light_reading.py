"""Light that does not matter, end to end: a small LipNet trained with ``input_norm=clip`` on the three shared
GRID clips reads a darker, lower-contrast copy of each video (ffmpeg's ``eq=brightness=-0.25:contrast=0.6``,
made here) as it reads the original, with its checkpoint on MXNet and with its ONNX export; and the
command line's checks of the settings."""
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
# Small and quick: 48x24 crops, a narrow network with batch norm and no dropout, aligned CTC and the grammar
# decoder, so that it memorises the three sentences in 600 steps; light_prob, for what input_norm=clip leaves.
RECIPE = ("input_norm=clip", "light_prob=0.5", "aligned_ctc=true", "decoder=grammar", "num_gpus=0",
          "channels=8,16,16", "hidden=96", "norm=batch", "dr_rate=0", "flip_prob=0", "jitter_prob=0", "batch_size=3",
          "lr=0.01", "lr_schedule=cosine", "epochs=600", "val_interval=100", "seed=0", "progress=false",
          "show_examples=0")
SIZE = "48x24"


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
def clip_model(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint trained with input_norm=clip on the shared clips, its ONNX export, the raw videos (s1)
    and their darker, lower-contrast copies."""
    import main
    from utils import estimate_aligns, export_onnx, preprocess_data

    root = tmp_path_factory.mktemp("light")
    videos, both = root / "videos" / "s1", root / "both"
    videos.mkdir(parents=True)
    both.mkdir()
    for clip in sorted(grid_dir.glob("*.mpg")):
        (videos / clip.name).symlink_to(clip)
        (both / clip.name).symlink_to(clip)
        eq_copy(clip, both / f"{clip.stem}_darker.mp4", -0.25, 0.6)
    crops, aligns = root / "crops", root / "aligns"
    assert preprocess_data.main([f"src_path={root / 'videos'}", f"tgt_path={crops}", f"size={SIZE}",
                                 "n_process=1"]) == 0
    (aligns / "s1").mkdir(parents=True)
    for align in grid_dir.glob("*.align"):
        (aligns / "s1" / align.name).symlink_to(align)
    assert estimate_aligns.main([f"src_path={root / 'videos'}", f"tgt_path={aligns}", "n_process=1"]) == 0
    (crops / "s2").symlink_to(crops / "s1")  # validation: the same crops as another speaker
    train_list, val_list = root / "train.txt", root / "val.txt"
    train_list.write_text("".join(f"s1/{clip.stem}\n" for clip in sorted(grid_dir.glob("*.mpg"))))
    val_list.write_text(train_list.read_text().replace("s1/", "s2/"))
    assert main.main([f"image_path={crops}", f"align_path={aligns}", f"train_list={train_list}",
                      f"val_list={val_list}", f"save_dir={root / 'run'}", *RECIPE]) == 0
    model = root / "run" / "last"
    assert export_onnx.main([f"model_path={model}", f"out={root / 'model.onnx'}"]) == 0
    return {"model": model, "onnx": root / "model.onnx", "videos": videos, "both": both}


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
