"""Shared fixtures: the real GRID clips in ``../shared`` beside the checkout (or the folder ``LIPNET_SHARED``
names), and a LipNet trained on them. Where there are none (a user's fresh clone), the tests that need them
skip, each saying what is missing; CI (``.ci/run``) refuses to start without them, so it never skips them."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

if importlib.util.find_spec("mxnet") is not None:  # (the ONNX reading tests run where there is none)
    import model.backend  # noqa: F401 (MXNet set up before test modules import it directly)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LIPNET_SHARED") or REPO_ROOT.parent / "shared")


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


@pytest.fixture(scope="session")
def real_model(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A narrow LipNet that reads the three shared clips exactly, with its words where they were said:
    batch norm and no dropout, so that it can memorise three sentences; ``aligned_ctc`` over each clip's
    align file (swwp2s's own, ``utils/estimate_aligns.py``'s estimate for the other two), so that words
    are spelt where they were said rather than at the clips' edges; ``recode_prob=0.5`` and temporal
    jitter, so that it still reads them re-encoded and at a variable frame rate; 900 epochs, so that late
    learners get there (about 5 minutes on 2 cores). docs/tests.md says how the recipe was chosen.

    Returns the crops folder, the model (the run's last checkpoint) and a folder of links to the raw
    videos (speaker s1).
    """
    import main
    from utils import estimate_aligns, preprocess_data

    root = tmp_path_factory.mktemp("real")
    videos = root / "videos" / "s1"
    videos.mkdir(parents=True)
    for clip in sorted(grid_dir.glob("*.mpg")):
        (videos / clip.name).symlink_to(clip)  # read in place, never copied
    crops = root / "crops"
    assert preprocess_data.main([f"src_path={root / 'videos'}", f"tgt_path={crops}", "n_process=2"]) == 0
    aligns = root / "aligns"
    (aligns / "s1").mkdir(parents=True)
    for align in grid_dir.glob("*.align"):
        (aligns / "s1" / align.name).symlink_to(align)  # the real ones are kept; the others are estimated
    assert estimate_aligns.main([f"src_path={root / 'videos'}", f"tgt_path={aligns}", "n_process=2"]) == 0
    # The model memorises three clips and is validated on them: on copies of their crops as speaker s2, since
    # a run's validation clips are never among its training clips. Validation reads them exactly as the originals.
    shutil.copytree(crops / "s1", crops / "s2")
    clip_list, val_list = root / "clips.txt", root / "val.txt"
    clip_list.write_text("".join(f"s1/{clip.stem}\n" for clip in sorted(grid_dir.glob("*.mpg"))))
    val_list.write_text(clip_list.read_text().replace("s1/", "s2/"))
    run = root / "run"
    assert main.main([
        f"image_path={crops}", f"align_path={aligns}", "aligned_ctc=true", f"train_list={clip_list}",
        f"val_list={val_list}", f"save_dir={run}", "num_gpus=0", "channels=16,32,48", "hidden=128", "norm=batch",
        "dr_rate=0", "flip_prob=0", "jitter_prob=0.05", "batch_size=3", "lr=0.003", "lr_schedule=cosine",
        "epochs=900", "recode_prob=0.5", "seed=1", "val_interval=10", "progress=false", "show_examples=0",
    ]) == 0
    return {"crops": crops, "model": run / "last", "videos": videos}
