"""Shared fixtures: the real GRID clips in ``../shared`` beside the checkout, and a LipNet trained on them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from utils.cuda_libs import preload_cuda_libraries

preload_cuda_libraries()  # test modules import mxnet directly; with the CUDA build it needs its libraries first

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
    (500 epochs, several minutes on 2 cores; batch norm, no dropout or augmentation, so that it can
    memorise three sentences).

    ``aligned_ctc`` scores each clip word by word over the frames its align file gives: swwp2s's own, and
    for bbaf2n and lwbsza (no align file in ../shared) ``utils/estimate_aligns.py``'s estimate from mouth
    motion. What decided the recipe (2 cores shared by two runs, OMP_NUM_THREADS=1, 11-13 minutes a run):
    - Plain CTC does not say where words go: a model memorising three clips spelt them from each
      clip's first and last frames (swwp2s's words 0.6-0.9 s from where they were said), with one short
      word ("at", "by", "f") off the greedy path in about one run in four (so this fixture used to try
      up to three seeds), and models stopped at their first exact read misread transcoded videos.
    - With swwp2s's align file alone, swwp2s was timed to 0.04 s, but bbaf2n and lwbsza were still spelt
      at their edges and dropped letters (2 of 4 seeds exact after 500 epochs).
    - With all three aligned (two estimated), 500 epochs without a stop, seeds 1-4 all read the three
      clips and raw videos exactly from epoch 170-360 on, with swwp2s's words within 0.06 s of its
      align file. Their last checkpoints passed every test that shares this model, except that seed 4
      read the 30 fps 1280x1024 copy of bbaf2n as "bin blue at f wo now": memorising three clips
      leaves little margin for a re-encoding (crops 1.4-2.8 grey levels from the originals'). Words
      spread by syllables instead of characters (1 of 2 seeds passed), 4 grey levels of pixel noise
      in training or flips (seed 4 never read swwp2s exactly) did worse; 700 epochs on seed 4 read
      swwp2s in the concatenated video as "setwhite with p two soon". Seeds 5 and 6, later: 5 passed,
      6 read bbaf2n as "in blue at f two now" from its 30 fps copy and misread two of the concatenation's
      sentences, so about one seed in three fails a test that reads a re-encoded copy.
    - Two differences between training and reading were ruled out. The stored crops are JPEG, about 2
      grey levels from the raw crops infer.py reads: trained on lossless PNG crops, 3 of seeds 1-4 read
      every copy the tests read (seed 4 misread swwp2s in the concatenation). dlib puts the crop up to
      0.65 pixels and 2.7% in scale elsewhere on the H.264 copies: trained with crops shifted by up to a
      pixel and scaled by up to 3% (an option tried and dropped), 2 of seeds 1-6 passed, the others
      reading "atf" or "son" on one to four copies. Dropout 0.1 left CER at 0.76-0.87 after 170 epochs.
    - Where the misreads come from (17 reads a model: originals, 30 and 60 fps copies, portraits, two
      faces, the concatenation). The 30 fps copies are enlarged bilinearly to 1280x1024, and their crops
      keep 54-72% of the originals' sharpness (variance of the Laplacian; see ``crop_frames``): read
      with scikit-image's smaller anti-alias blur instead, all six seeds read both 30 fps copies, seeds
      1-5 all 17; the reader was kept, since that blur over-sharpens bicubic upscales. The concatenation
      has a variable frame rate (8-9 of each clip's 75 frames repeated or dropped at 25 fps): that pattern
      replayed on the original crops reproduced 2 of the 5 concatenation misreads of four models; the
      rest (seed 6's two among them) come from its H.264 noise.
    - Tried later, 500 epochs each, scored on those 17 reads: parameters averaged over the last 25-100 steps
      read exactly as the last checkpoint (seeds 1, 4, 5, 6; the cosine tail leaves them nearly equal), over
      the last 250 or as an EMA (decay 0.98-0.99) the same or worse; AdamW with weight decay 1.0, seeds 4
      and 6: 14 and 15 of 17 (14 and 12 without); batch 1 never read exactly (batch norm over one clip);
      training crops blurred (sigma up to 1 pixel, half the samples), seeds 1, 2, 4, 6: 16, 17, 16, 16, seed
      1 now misreading swwp2s's 60 fps copy (the tests read lwbsza's); a quarter blurred and a quarter
      sharpened (unsharp mask, amount 0.2-0.8), seeds 1, 2, 6: 16, 17, 16, seed 4 never exact; temporal
      jitter 0.05 with each word's segment moved with its frames: seed 4 never exact, seeds 1 and 6 misread
      swwp2s's 60 fps copy. By the copies the tests read, each left the same two of seeds 1, 2, 4, 6 passing
      as this recipe (jitter three, but its seed 4 never read swwp2s).

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
    clip_list = root / "clips.txt"
    clip_list.write_text("".join(f"s1/{clip.stem}\n" for clip in sorted(grid_dir.glob("*.mpg"))))
    run = root / "run"
    assert main.main([
        f"image_path={crops}", f"align_path={aligns}", "aligned_ctc=true", f"train_list={clip_list}",
        f"val_list={clip_list}", f"save_dir={run}", "num_gpus=0", "channels=16,32,48", "hidden=128", "norm=batch",
        "dr_rate=0", "flip_prob=0", "jitter_prob=0", "batch_size=3", "lr=0.003", "lr_schedule=cosine",
        "epochs=500", "seed=1", "val_interval=10", "progress=false", "show_examples=0",
    ]) == 0
    return {"crops": crops, "model": run / "last", "videos": videos}
