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

    What was measured for a recipe without retries and with time-true words (2 cores shared with other work,
    OMP_NUM_THREADS=1, two runs side by side, 12-25 epochs a minute; none replaced this recipe yet):
    - CTC alone does not say where words go: a model memorising three clips spells whatever window it is
      given from that window's first and last frames. This recipe spells swwp2s at the clip's edges (speech
      on frames 12-55 spelt on 0-21 and 57-74, word centres -0.6..+0.9 s off). Neither single aligned words
      (word_prob 0.3, with adam_epsilon 1e-6: no exact read by epoch 520-550) nor random runs of aligned
      words cut at word boundaries or in the silences (span_prob 0.5 and 1.0, tried and dropped: WER 0.33
      at epoch 480, slower than this recipe) changed that: swwp2s's frames 36-75 ("two soon") alone read
      "s-t...w-oo ssooooon", spelt from their first frame.
    - ``aligned_ctc=true`` with ``align_path`` at the shared clips (swwp2s scored word by word over its
      aligned frames) makes swwp2s time-true on every run: word centres within 0.04 s of the align file
      (path "--------------sseet whhitee with pp ttwwooo ssoo--oonn----") from epoch ~100 on. It does not
      make the recipe reliable: bbaf2n and lwbsza have no align file, stay spelt at their edges, and
      single letters drop there. With this recipe's 900-epoch schedule and stop_wer 0, seed 1 read all
      three exactly at epoch 390 (raw videos right too) but, stopped there, read the 60 fps transcoded
      lwbsza as "... s ro again" (3 test_own_video failures); seed 2 still read "bin blue at two now" at
      epoch 560. On a 500-epoch schedule without a stop (its last/ read, for margin), seeds 1 and 4 ended
      at WER 0.11 ("bin blue at two ow", "lay white by s zo again"; "bin blu at f two now", "... s ero
      again"), seed 3 read all three from epoch 350, and seed 2 read all three from epoch 250 and
      the raw videos right, passed the timing test, the real-data and ONNX tests, yet read the
      transcoded bbaf2n as "bin blue at f t wo now" and lwbsza in the concatenation as "... zero ain"
      (3 test_own_video failures again).
    - lr 6e-3 and 1e-2 diverged; 64x32 crops with 8/16/32 channels cost 40% of this recipe's step but the
      memorised model then misread raw videos (it had learnt the JPEG-packed pixels it trained on).
    Next: align files for bbaf2n and lwbsza (then every clip is time-true and none is spelt at its edges),
    or a little pixel augmentation for the margin on transcoded videos.

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
