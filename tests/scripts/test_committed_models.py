"""The committed models' digests (``tests/real_model.py``): a change to what a model was trained by makes it
stale, the ``real_model`` and ``light_model`` fixtures then fail in CI naming it, and ``python -m
tests.real_model`` retrains only what is stale."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import real_model as recipe

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the files the digests read, which they then read instead (the committed models stay put)."""
    for name in recipe.DEPENDS_ON:
        source, copy = REPO_ROOT / name, tmp_path / "repo" / name
        if source.is_dir():
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    monkeypatch.setattr(recipe, "REPO_ROOT", tmp_path / "repo")
    return tmp_path / "repo"


def change_the_network(repo: Path) -> None:
    lipnet = repo / "model" / "lipnet.py"
    lipnet.write_text(lipnet.read_text() + "\n# a change to the network\n")


@pytest.mark.parametrize("name", sorted(recipe.MODELS))
def test_a_changed_network_makes_each_committed_model_stale(name: str, grid_dir: Path, repo_copy: Path,
                                                           tmp_path: Path):
    model = recipe.MODELS[name]
    assert recipe.recipe_digest(model, grid_dir) == recipe.committed_digest(model)  # the committed model is current
    change_the_network(repo_copy)
    with pytest.raises(recipe.StaleModel, match=rf"tests/assets/{name} is stale: .* "
                                                rf"python -m tests.real_model --only={name}"):
        recipe.load_or_train(model, grid_dir, tmp_path / "run", may_train=False)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_in_ci_a_stale_light_model_fails_the_fixture_naming_it(grid_dir: Path, repo_copy: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    from tests.conftest import committed_model

    monkeypatch.setenv("CI", "true")
    change_the_network(repo_copy)
    with pytest.raises(pytest.fail.Exception, match=r"tests/assets/light_model is stale"):
        committed_model("light_model", grid_dir, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_models_digest_covers_its_recipe_and_crop_settings(grid_dir: Path):
    light = recipe.MODELS["light_model"]
    digests = {recipe.recipe_digest(model, grid_dir) for model in (
        light, dataclasses.replace(light, recipe=(*light.recipe, "seed=1")),
        dataclasses.replace(light, preprocess=("size=50x25",)), recipe.MODELS["real_model"])}
    assert len(digests) == 4


def test_regenerating_leaves_a_current_model_as_it_is(shared_dir: Path):
    asset = recipe.MODELS["light_model"].asset
    before = {path.name: path.read_bytes() for path in asset.iterdir() if path.name != ".lock"}
    done = subprocess.run([sys.executable, "-m", "tests.real_model", f"--shared={shared_dir}", "--only=light_model"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("light_model: current") and lines[0].endswith("not retrained")
    assert {path.name: path.read_bytes() for path in asset.iterdir() if path.name != ".lock"} == before


@pytest.mark.parametrize("args, message", [(["--only=nonesuch"], "invalid choice: 'nonesuch'"),
                                           (["--shared=/nonexistent"], "/nonexistent/grid: no such folder")])
def test_regenerating_refuses_an_unknown_model_or_a_missing_shared_folder(args: list[str], message: str):
    done = subprocess.run([sys.executable, "-m", "tests.real_model", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr


def test_help_states_the_defaults():
    done = subprocess.run([sys.executable, "-m", "tests.real_model", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    text = " ".join(done.stdout.split())
    for flag, default in (("--only", "every committed model"), ("--all", "only the stale ones"),
                          ("--shared", "(default:")):
        assert flag in text and default in text.split(flag, 2)[-1][:300]
