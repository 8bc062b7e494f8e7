"""Shared fixtures: the real GRID clips in ``../shared`` beside the checkout, and a LipNet trained on them."""
from __future__ import annotations

import importlib.util
import json
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
    """A narrow LipNet trained on the three shared clips until it reads them exactly (a few minutes on
    2 cores; batch norm, no dropout or augmentation, so that it can memorise three sentences).

    Recipes tried for a run that needs no retry (one seed each unless said; 2 busy cores, OMP_NUM_THREADS=1;
    none replaced this one yet):
    - lr 6e-3 (warm-up 30) and 1e-2 (warm-up 60): the loss jumped back up mid-run (7.9 -> 50 at epoch 150).
    - 64x32 crops, 8/16/32 channels, 256 GRU units: a step costs 40% of this recipe's (1.1-1.2 s against
      2.6-2.9 s side by side). Seed 1 read exactly at epoch 430 (one word short from 270 on: "son"),
      but that first exact model read the raw swwp2s.mpg as "son" (it trained on JPEG-packed crops):
      stopping at the first exact read leaves no margin; resumed to epoch 560 it read it right. Seed 2
      reached WER 0.11 at epoch 170 and then diverged at 210 (loss 0.78 -> 58); at lr 2e-3 on the whole
      900-epoch schedule it diverged too (epoch 140, loss 0.95 -> 82), read the crops exactly from epoch
      380 to the end (loss 0.05), yet read two raw videos wrong ("bin blue at two now", "lay white y s
      zero again"): at 64x32 the memorised model hangs on the JPEG-packed pixels it trained on.
    - the same plus swwp2s's aligned single words (align file, word_prob 0.3-0.5, swwp2s listed three
      times), to make the CTC alignment time-true: the loss spiked again and again with batch and with
      instance norm at lr 3e-3, and went NaN at 1.5e-3 with clip_gradient 1.
    - this recipe plus swwp2s's aligned single words (align_path, word_prob 0.3) and adam_epsilon 1e-6
      (the flag added for this; seed 2 above diverged twice from a small loss, where Adam's 1e-8 lets tiny
      gradients take full-size steps), seeds 1, 2, 3 side by side on a machine at load 14-20 (3-7 epochs
      a minute each, about ten times slower than quiet): no skipped step and no divergence in any (one
      validation-loss bump, 7 -> 24 at epoch 350 of seed 1, gone by 400), but slower than this recipe:
      WER 0.17, 0.22 and 0.06 at epochs 550, 520 and 520, no exact read by then (runs stopped there,
      out of time), so whether it is reliable is not known. Nor did the words make the alignment
      time-true: swwp2s's greedy path at epoch 550 was "set  whiitte  wwiitthh" on frames 0-21 and
      "ttwoo  ------oonnn" on frames 57-74, its speech being frames 12-55 (seed 3 at 520 the same; word
      centres 0.1-0.9 s off, only "p" within 0.25 s):
      the network recognises the sentence from its first frames and spells it at the clip's edges, and
      single words, always cut from the same place, do not stop that.
    Next to try: multi-word spans of aligned clips cut at random word boundaries, so that where a word is
    spelt cannot be learnt from the clip's start; a little augmentation so that the model reads pixels it
    did not train on (raw and transcoded videos); adam_epsilon alone (1e-6 to 1e-4) on this recipe.

    Returns the crops folder, the run folder and a folder of links to the raw videos (speaker s1).
    """
    import main
    from utils import preprocess_data

    root = tmp_path_factory.mktemp("real")
    videos = root / "videos" / "s1"
    videos.mkdir(parents=True)
    for clip in sorted(grid_dir.glob("*.mpg")):
        (videos / clip.name).symlink_to(clip)  # read in place, never copied
    crops = root / "crops"
    assert preprocess_data.main([f"src_path={root / 'videos'}", f"tgt_path={crops}", "n_process=2"]) == 0
    clip_list = root / "clips.txt"
    clip_list.write_text("".join(f"s1/{clip.stem}\n" for clip in sorted(grid_dir.glob("*.mpg"))))
    # CTC on three clips sometimes settles with one short word ("at", "by") below the blank on the
    # greedy path (one run in four here; shorter schedules did so more often); a restart from
    # another seed gets past that, so up to three seeds are tried.
    for seed in (1, 2, 3):
        run = root / f"run-seed{seed}"
        status = main.main([
            f"image_path={crops}", f"align_path={grid_dir.parent / 'no-aligns'}", f"train_list={clip_list}",
            f"val_list={clip_list}", f"save_dir={run}", "num_gpus=0", "channels=16,32,48", "hidden=128",
            "norm=batch", "dr_rate=0", "flip_prob=0", "jitter_prob=0", "batch_size=3", "lr=0.003",
            "lr_schedule=cosine", "epochs=900", f"seed={seed}", "val_interval=10", "stop_wer=0",
            "progress=false", "show_examples=0",
        ])
        assert status == 0
        if json.loads((run / "best" / "meta.json").read_text())["metrics"]["val_wer"] == 0.0:
            break
    return {"crops": crops, "run": run, "videos": videos}
