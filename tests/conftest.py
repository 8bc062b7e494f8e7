"""Shared fixtures: the real GRID clips in ``../shared`` beside the checkout (or the folder ``LIPNET_SHARED``
names), and the committed LipNets trained on them. Where there are none (a user's fresh clone), the tests that need them
skip, each saying what is missing; CI (``.ci/run``) refuses to start without them, so it never skips them."""
from __future__ import annotations

import compileall
import importlib.util
import os
import re
import warnings
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    # pytest -n N runs N test processes side by side: one OpenMP thread each (and in the scripts they start),
    # since N processes of one thread per core already fill the cores and more threads only wait on each other.
    os.environ["OMP_NUM_THREADS"] = "1"
if importlib.util.find_spec("mxnet") is not None:  # (the ONNX reading tests run where there is none)
    import model.backend  # noqa: F401 (MXNet set up before test modules import it directly)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LIPNET_SHARED") or REPO_ROOT.parent / "shared")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile the checkout once, before any test: the tests start some 200 Python processes, and where
    ``PYTHONDONTWRITEBYTECODE`` is set (as on the development machine) each compiles every module it imports from source
    again, 0.1 s of its 1.2-1.3 s start. Compiled files are read whatever that variable says."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # once, in the process that starts the workers
        compileall.compile_dir(REPO_ROOT, quiet=1, rx=re.compile(r"[/\\](\.venv|\.git|site|tests[/\\]assets)([/\\]|$)"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``onnx_reader`` tests prove reading without MXNet: where MXNet is installed they cannot."""
    if importlib.util.find_spec("mxnet") is None:
        return
    skip = pytest.mark.skip(reason="MXNet is installed here; .ci/run runs these in its Python 3.13 venv without it")
    for item in items:
        if "onnx_reader" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "grid").is_dir():
        pytest.skip(f"needs the shared GRID clips: {SHARED / 'grid'} is missing (put the shared folder beside the "
                    "checkout, or name it with LIPNET_SHARED=FOLDER)")
    return SHARED


@pytest.fixture(scope="session")
def grid_dir(shared_dir: Path) -> Path:
    return shared_dir / "grid"


def committed_model(name: str, grid_dir: Path, root: Path) -> dict[str, Path]:
    """The committed model ``name`` (``tests/real_model.py``): loaded when its digest matches the code and recipe,
    else retrained here, naming the files to commit; in CI a stale model fails the test instead.

    Returns its crops folder, the model (a checkpoint folder) and a folder of links to the raw videos (speaker s1).
    """
    from tests import real_model as recipe

    try:
        data, last, files = recipe.load_or_train(recipe.MODELS[name], grid_dir, root,
                                                 may_train=not os.environ.get("CI"))
    except recipe.StaleModel as err:
        pytest.fail(str(err))
    if files:
        warnings.warn(f"retrained the committed model {name} for a changed recipe: commit "
                      + " ".join(str(f.relative_to(REPO_ROOT)) for f in files), stacklevel=1)
    return {"crops": data["crops"], "model": last, "videos": data["videos"]}


@pytest.fixture(scope="session")
def real_model(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A narrow LipNet that reads the three shared clips exactly, with its words where they were said (retrained
    in 4-5 minutes when stale)."""
    return committed_model("real_model", grid_dir, tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="session")
def light_model(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small LipNet on 48x24 crops, normalised per clip (``input_norm=clip``), that reads the three shared
    clips and darker copies of them (retrained in a few minutes when stale)."""
    return committed_model("light_model", grid_dir, tmp_path_factory.mktemp("light"))
