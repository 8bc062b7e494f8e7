"""The end-to-end check: real GRID video -> mouth crops -> a LipNet trained until it reads the clips back.

The model is the committed one of ``tests/real_model.py`` (the ``real_model`` fixture), which other tests on
real video share; ``-m slow`` trains it, and the light model, from scratch by their recipes and checks that they
read them too.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils.text.grid_text import sentence_from_clip_name


def test_training_reads_all_three_clips_exactly(real_model: dict[str, Path]):
    meta = json.loads((real_model["model"] / "meta.json").read_text())
    assert meta["metrics"]["val_wer"] == 0.0
    assert meta["metrics"]["val_cer"] == 0.0
    assert meta["state"]["epoch"] == meta["args"]["epochs"]  # its last checkpoint, after the whole schedule: no stop


def test_infer_reads_the_raw_videos_back(real_model: dict[str, Path], capsys: pytest.CaptureFixture):
    import infer

    capsys.readouterr()
    status = infer.main([f"model_path={real_model['model']}", f"video={real_model['videos']}", "num_gpus=0",
                         "progress=false"])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{v.name}\t{sentence_from_clip_name(v.stem)}" for v in sorted(real_model["videos"].iterdir())]


def test_infer_scores_the_preprocessed_clips(real_model: dict[str, Path], capsys: pytest.CaptureFixture):
    import infer

    capsys.readouterr()
    # the checkpoint's own selection: its validation clips (copies of the three clips' crops, as s2)
    status = infer.main([f"model_path={real_model['model']}", f"image_path={real_model['crops']}", "num_gpus=0",
                         "decoder=grammar", "progress=false"])
    assert status == 0
    out = capsys.readouterr().out
    assert out.count("[Target]") == 3 and out.count("[Pred]") == 3
    assert "CER 0.0000  WER 0.0000  (3 clips" in out


@pytest.mark.slow
@pytest.mark.retrain
@pytest.mark.timeout(1800)  # 4-5 minutes of training the real-clip model on 2 quiet cores
@pytest.mark.parametrize("name", ["real_model", "light_model"])
def test_the_recipe_trains_a_model_that_reads_the_three_clips(name: str, grid_dir: Path, tmp_path: Path):
    from tests import real_model as recipe

    model = recipe.MODELS[name]
    last = recipe.train(model, recipe.prepare(model, grid_dir, tmp_path), tmp_path / "run")
    meta = json.loads((last / "meta.json").read_text())
    assert meta["metrics"]["val_wer"] == 0.0 and meta["metrics"]["val_cer"] == 0.0
    assert meta["state"]["epoch"] == meta["args"]["epochs"]
