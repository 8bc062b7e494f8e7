"""The end-to-end check: real GRID video -> mouth crops -> a LipNet trained until it reads the clips back.

The model is the committed one of ``tests/real_model.py`` (the ``real_model`` fixture), which other tests on
real video share; ``-m slow`` trains it from scratch by its recipe and checks that it reads them too.
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
@pytest.mark.timeout(1800)  # 4-5 minutes of training on 2 quiet cores
def test_the_recipe_trains_a_model_that_reads_the_three_clips(grid_dir: Path, tmp_path: Path):
    from tests import real_model as recipe

    last = recipe.train(recipe.prepare(grid_dir, tmp_path), tmp_path / "run")
    meta = json.loads((last / "meta.json").read_text())
    assert meta["metrics"]["val_wer"] == 0.0 and meta["metrics"]["val_cer"] == 0.0
    assert meta["state"]["epoch"] == meta["args"]["epochs"]


def test_a_changed_network_makes_the_committed_model_stale(grid_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    import shutil

    from tests import real_model as recipe

    for name in recipe.DEPENDS_ON:  # a copy of what the digest reads
        source, copy = recipe.REPO_ROOT / name, tmp_path / "repo" / name
        if source.is_dir():
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    monkeypatch.setattr(recipe, "REPO_ROOT", tmp_path / "repo")
    assert recipe.recipe_digest(grid_dir) == recipe.committed_digest()  # the committed model is current
    lipnet = tmp_path / "repo" / "model" / "lipnet.py"
    lipnet.write_text(lipnet.read_text() + "\n# a change to the network\n")
    with pytest.raises(recipe.StaleModel, match=r"tests/assets/real_model is stale: .* python -m tests.real_model"):
        recipe.load_or_train(grid_dir, tmp_path / "run", may_train=False)
    assert not (tmp_path / "run").exists()  # refused before any work
