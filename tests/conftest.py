"""Shared fixtures: the real GRID clips in ``../shared`` beside the checkout, and a LipNet trained on them."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

if importlib.util.find_spec("mxnet") is not None:  # (the ONNX reading tests run where there is none)
    import model.backend  # noqa: F401 (MXNet set up before test modules import it directly)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


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
        pytest.fail(f"{SHARED} is missing: the tests need the shared GRID clips beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def grid_dir(shared_dir: Path) -> Path:
    return shared_dir / "grid"


@pytest.fixture(scope="session")
def real_model(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A narrow LipNet that reads the three shared clips exactly, with its words where they were said
    (900 epochs, 4.3-5.4 minutes on 2 cores in a fast hour here; batch norm, no dropout, so that it can
    memorise three sentences; ``recode_prob=0.5`` and temporal jitter, so that it still reads them
    re-encoded and at a variable frame rate).

    ``aligned_ctc`` scores each clip word by word over the frames its align file gives: swwp2s's own, and
    for bbaf2n and lwbsza (no align file in ../shared) ``utils/estimate_aligns.py``'s estimate from mouth
    motion. What decided the recipe (2 cores shared by four runs, OMP_NUM_THREADS=1):
    - Plain CTC does not say where words go: a model memorising three clips spelt them from each
      clip's first and last frames (swwp2s's words 0.6-0.9 s from where they were said), with one short
      word ("at", "by", "f") off the greedy path in about one run in four (so this fixture used to try
      up to three seeds), and models stopped at their first exact read misread transcoded videos.
    - With swwp2s's align file alone, swwp2s was timed to 0.04 s, but bbaf2n and lwbsza were still spelt
      at their edges and dropped letters (2 of 4 seeds exact after 500 epochs).
    - With all three aligned (two estimated), 500 epochs without a stop and no augmentation, seeds 1-6 all
      read the three clips and raw videos exactly, with swwp2s's words within 0.06 s of its align file,
      but not every re-encoded copy. Scored on 17 greedy reads a model (originals, 30 fps copies at
      360x288 and 1280x1024, 60 fps copies, two portraits, two two-face videos, the variable-rate
      concatenation's three utterances), seeds 1-6 read 16, 17, 17, 14, 16 and 12 (92 of 102), and 4 of
      the 6 passed the tests. Memorising three clips leaves little margin: seeds dropped a letter ("bin
      blue at f wo now", "in blue ...") from the 30 fps copies enlarged bilinearly to 1280x1024 (their
      crops keep 54-72% of the originals' sharpness; see ``crop_frames``), from H.264 noise (2 grey
      levels) and from the concatenation's variable rate (8-9 of a clip's 75 frames repeated or dropped
      at 25 fps).
    - Tried on that recipe and dropped, each leaving the same 2 of seeds 1, 2, 4 and 6 passing: spreading
      words by syllables; 4 grey levels of pixel noise; flips; lossless PNG training crops (the stored
      crops are JPEG, 2 grey levels from the raw crops); crops shifted by up to a pixel and scaled by up
      to 3%; dropout 0.1 (CER 0.76-0.87 after 170 epochs); 700 epochs (seed 4); parameters averaged over the last
      25-250 steps or as an EMA; AdamW with weight decay 1.0; batch 1 (batch norm over one clip never
      read exactly); training crops Gaussian-blurred (sigma up to 1 pixel), or a quarter blurred and a
      quarter sharpened; temporal jitter 0.05 with each word's aligned frames moved with it (seed 4 never
      read swwp2s exactly in 500 epochs).
    - ``recode_prob=0.5`` (``data_loader.recode``: crops shrunk by up to 2x and enlarged back, JPEG at
      quality 30-90, each with probability 0.5) degrades training clips as re-encoding does. At 500
      epochs, seeds 1, 2 and 6 read all 17 but seed 4 had not yet learnt swwp2s ("son"). At 700, every
      one of seeds 1-8 read the three clips, raw videos, 30 and 60 fps copies, portraits and two-face
      videos exactly, 132 of the 136 reads in all (seeds 1-8: 17, 17, 17, 16, 17, 15, 17, 16). The four
      misses are the variable-rate concatenation's ("bin blue atf two now", "lay white by s sero
      again"): frames repeated and dropped. Of those 8 seeds, the 5 without such a miss passed every test
      that shares this model.
    - Temporal jitter 0.05 on top (each word's aligned segment moved with its frames,
      ``data_loader.moved_segments``) trains against repeated and dropped frames. Seeds 1-8 then read
      17, 17, 17, 17, 12, 16, 17 and 17 of the 17 (130 of 136), and 6 of them pass every test that shares
      this model, seed 1 among them. Seed 5 learnt swwp2s late (first exact read at epoch 580, against
      290-420 for the others) and ended on "son"; seed 6 read the concatenation's "zero" as "ero". (With
      the jitter drawn from another stream, seeds 1, 4, 6 and 8 read all 17.)
    - 900 epochs instead of 700, the same recipe otherwise (the cosine schedule stretched over them):
      seeds 1-18 all pass every test that shares this model, and seeds 1-6 read all 17 (102 of 102).
      Late learners get the time they lacked: first exact validation reads at epochs 360, 300, 240,
      480, 530, 400, 270, 310, 450, 490, 610, 450, 390, 300, 270, 210, 290 and 440 for seeds 1-18
      (seed 5 at 530; with 700 epochs it first read swwp2s at 580 and ended on "son"), each still exact
      at the end.

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
