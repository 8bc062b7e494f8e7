"""The one slow test: real GRID video -> mouth crops -> a LipNet trained until it reads the clips back.

It takes a few minutes on a 2-core CPU (a narrow LipNet with batch norm, no dropout or augmentation,
so that it can memorise three sentences: 340-560 steps in runs here), and it is the end-to-end
check that every stage fits together.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import main
from utils import preprocess_data
from utils.text.grid_text import sentence_from_clip_name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
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


def test_training_reads_all_three_clips_exactly(trained: dict[str, Path]):
    meta = json.loads((trained["run"] / "best" / "meta.json").read_text())
    assert meta["metrics"]["val_wer"] == 0.0
    assert meta["metrics"]["val_cer"] == 0.0
    assert meta["state"]["epoch"] < 900  # stopped by stop_wer, not by running out of epochs



def test_infer_reads_the_raw_videos_back(trained: dict[str, Path], capsys: pytest.CaptureFixture):
    import infer

    capsys.readouterr()
    status = infer.main([f"model_path={trained['run']}", f"video={trained['videos']}", "num_gpus=0",
                         "progress=false"])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{v.name}\t{sentence_from_clip_name(v.stem)}" for v in sorted(trained["videos"].iterdir())]


def test_infer_scores_the_preprocessed_clips(trained: dict[str, Path], capsys: pytest.CaptureFixture):
    import infer

    capsys.readouterr()
    clip_list = trained["crops"].parent / "clips.txt"
    status = infer.main([f"model_path={trained['run']}", f"image_path={trained['crops']}", "num_gpus=0",
                         f"train_list={clip_list}", f"val_list={clip_list}", "decoder=grammar", "progress=false"])
    assert status == 0
    out = capsys.readouterr().out
    assert out.count("[Target]") == 3 and out.count("[Pred]") == 3
    assert "CER 0.0000  WER 0.0000  (3 clips" in out
