"""Training on LipNet-PyTorch's published crop folders: a run records the framing of its clips, and fine-tuning a
checkpoint that takes BGR keeps feeding it BGR and says so in its own checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import main
from model.checkpoint import save_checkpoint
from model.lipnet import LipNet, LipNetConfig
from tests.fake_data import NAMES, write_lipnet_pytorch_crops
from utils.data.clip_store import save_packed
from utils.data.manifest import write_manifest
from utils.data.sentence_clips import build_records, data_framing, discover_clips

TINY = ["batch_size=4", "epochs=1", "num_gpus=0", "progress=false", "val_speakers=3"]


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Speakers s1-s3, four 30-frame clips each, as LipNet-PyTorch publishes its crops (160x80 JPEG)."""
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (1, 80, 160, 3)).astype(np.uint8)
    clips = {f"s{s}/{name}": np.clip(base + rng.integers(-20, 20, (30, 80, 160, 3)), 0, 255).astype(np.uint8)
             for s in (1, 2, 3) for name in NAMES[4 * (s - 1):4 * s]}
    return write_lipnet_pytorch_crops(tmp_path_factory.mktemp("download"), clips)


def imported(folder: Path) -> Path:
    """A tiny LipNet taking 128x64 crops, described as an imported LipNet-PyTorch checkpoint is."""
    mx.random.seed(0)
    net = LipNet(LipNetConfig(channels=(4, 8, 8), hidden=16, height=64, width=128))
    net.initialize(mx.init.Xavier())
    return save_checkpoint(folder, net, None, {
        "normalisation": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}, "decoder": {"method": "greedy"},
        "crop": {"framing": "lipnet_pytorch", "channel_order": "bgr", "scale": "pixel / 255", "width": 128,
                 "height": 64}})


def meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def test_fine_tuning_a_bgr_checkpoint_on_its_crops_keeps_its_framing_and_channel_order(crops, tmp_path: Path):
    lip, aligns = crops
    start = imported(tmp_path / "imported")
    assert main.main([f"model_path={start}", "fine_tune=true", f"save_dir={tmp_path / 'tuned'}", f"image_path={lip}",
                      f"align_path={aligns}", *TINY]) == 0
    tuned = meta(tmp_path / "tuned" / "last")
    assert tuned["crop"] == {"framing": "lipnet_pytorch", "channel_order": "bgr"}
    assert tuned["state"]["iteration"] == 2 and tuned["config"]["width"] == 128  # 8 clips of s1 and s2, batch 4
    # A fresh network trained on them takes RGB (our loader's) in their framing, at their size (160x80).
    assert main.main([f"save_dir={tmp_path / 'fresh'}", f"image_path={lip}", f"align_path={aligns}",
                      "channels=4,8,8", "hidden=16", *TINY]) == 0
    fresh = meta(tmp_path / "fresh" / "last")
    assert (fresh["crop"], fresh["config"]["width"]) == ({"framing": "lipnet_pytorch", "channel_order": "rgb"}, 160)


def test_a_data_sets_framing_comes_from_its_manifest_and_may_not_be_mixed(tmp_path: Path):
    frames = np.full((3, 8, 16, 3), 128, np.uint8)
    for clip in ("s1/bbaf2n", "s1/lwbsza"):
        save_packed(tmp_path / f"{clip}.npz", frames)
    records = build_records(discover_clips(tmp_path), None)
    assert data_framing(tmp_path, records) == "lipnet_gluon"  # no manifest: made before framings were named
    write_manifest(tmp_path, {"s1/bbaf2n": {"clip": "s1/bbaf2n", "status": "ok", "framing": "lipnet_pytorch"},
                              "s1/lwbsza": {"clip": "s1/lwbsza", "status": "ok", "framing": "lipnet_pytorch"}})
    assert data_framing(tmp_path, records) == "lipnet_pytorch"
    write_manifest(tmp_path, {"s1/bbaf2n": {"clip": "s1/bbaf2n", "status": "ok", "framing": "lipnet_pytorch"},
                              "s1/lwbsza": {"clip": "s1/lwbsza", "status": "ok"}})
    with pytest.raises(ValueError, match=r"different framings: lipnet_gluon \(s1/lwbsza ...\), lipnet_pytorch"):
        data_framing(tmp_path, records)


def test_infer_scores_the_crop_folders_with_an_imported_checkpoint(crops, tmp_path: Path):
    lip, aligns = crops
    start = imported(tmp_path / "imported")
    done = subprocess.run([sys.executable, str(Path(main.__file__).parent / "infer.py"), f"model_path={start}",
                           f"image_path={lip}", f"align_path={aligns}", "num_gpus=0", "progress=false"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "(8 clips, valid, decoder greedy)" in done.stdout  # s1 and s2: the unseen split's validation speakers
    assert "input 128x64 lipnet_pytorch framing BGR" in done.stderr
