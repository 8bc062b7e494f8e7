"""Reading with a checkpoint that records LipNet-PyTorch's framing and BGR channel order (as an imported
LipNet-PyTorch checkpoint does): infer.py crops and orders channels as it says, without a flag."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np

from model.checkpoint import save_checkpoint
from model.lipnet import LipNet, LipNetConfig
from model.loading import load_network
from utils.reading.sentence_videos import VideoLipreader
from utils.video.mouth_extractor import MouthExtractor

REPO = Path(__file__).resolve().parents[2]
# As utils/import_weights.py describes an imported LipNet-PyTorch checkpoint: pixels / 255, BGR, its framing.
PYTORCH_META = {"normalisation": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
                "decoder": {"method": "greedy", "beam_width": 1},
                "crop": {"framing": "lipnet_pytorch", "channel_order": "bgr", "scale": "pixel / 255", "width": 128,
                         "height": 64}}


def checkpoint(folder: Path, **meta: object) -> Path:
    """A small LipNet taking 128x64 crops, with random weights, saved with LipNet-PyTorch's input description."""
    mx.random.seed(0)
    net = LipNet(LipNetConfig(channels=(8, 8, 8), hidden=16, height=64, width=128, dropout=0.0))
    net.initialize(mx.init.Xavier())
    return save_checkpoint(folder, net, None, {**PYTORCH_META, **meta})


def test_the_checkpoints_framing_and_channel_order_shape_what_the_network_reads(grid_dir: Path, tmp_path: Path):
    network = load_network(checkpoint(tmp_path / "best"))
    assert (network.framing, network.channel_order) == ("lipnet_pytorch", "bgr")
    assert "lipnet_pytorch framing BGR" in network.describe()
    reader = VideoLipreader(network)
    assert reader.extractor.framing == "lipnet_pytorch" and reader.extractor.size == (128, 64)
    crops = MouthExtractor(size=(128, 64), framing="lipnet_pytorch").extract(grid_dir / "bbaf2n.mpg").frames
    assert np.array_equal(reader.mouth(grid_dir / "bbaf2n.mpg"), crops)
    # The network gets the crops as LipNet-PyTorch's loader gives them: BGR, pixels / 255, (3, T, H, W).
    bgr = (crops[..., ::-1].transpose(3, 0, 1, 2) / 255.0).astype(np.float32)[None]
    (read,) = reader.log_probs([crops])
    assert np.allclose(read, network.log_probs(bgr)[0], atol=1e-5)
    rgb = (crops.transpose(3, 0, 1, 2) / 255.0).astype(np.float32)[None]
    assert not np.allclose(read, network.log_probs(rgb)[0], atol=1e-3)


def run_infer(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "infer.py"), *argv], capture_output=True, text=True, cwd=REPO)


def test_infer_reads_a_raw_video_in_the_checkpoints_framing_without_a_flag(grid_dir: Path, tmp_path: Path):
    folder = checkpoint(tmp_path / "best")
    done = run_infer(f"model_path={folder}", f"video={grid_dir / 'bbaf2n.mpg'}", "num_gpus=0", "format=json",
                     "progress=false")
    assert done.returncode == 0, done.stderr
    assert "input 128x64 lipnet_pytorch framing BGR" in done.stderr
    record = json.loads(done.stdout)
    assert record["error"] is None and len(record["utterances"]) == 1 and record["duration"] == 3.0


def test_an_unknown_framing_or_channel_order_is_named_with_the_checkpoint(tmp_path: Path):
    for key, value in (("framing", "lipnet_keras"), ("channel_order", "grb")):
        folder = checkpoint(tmp_path / key, crop={**PYTORCH_META["crop"], key: value})
        done = run_infer(f"model_path={folder}", "video=x.mp4", "num_gpus=0")
        assert done.returncode == 2
        assert f"cannot load the model: {folder}: unknown" in done.stderr and repr(value) in done.stderr


def test_an_onnx_export_keeps_the_framing_and_channel_order(tmp_path: Path):
    from utils import export_onnx

    assert export_onnx.main([f"model_path={checkpoint(tmp_path / 'best')}", f"out={tmp_path / 'lipnet.onnx'}"]) == 0
    network = load_network(tmp_path / "lipnet.onnx")
    assert (network.framing, network.channel_order) == ("lipnet_pytorch", "bgr")


def test_the_framing_flag_overrides_the_checkpoints_for_videos(grid_dir: Path, tmp_path: Path):
    folder = checkpoint(tmp_path / "best")
    reader = VideoLipreader(load_network(folder), framing="lipnet_gluon")
    assert reader.extractor.framing == "lipnet_gluon" and reader.normaliser.reverse  # the network's order stays
    done = run_infer(f"model_path={folder}", f"video={grid_dir / 'bbaf2n.mpg'}", "num_gpus=0", "framing=lipnet_gluon",
                     "progress=false")
    assert done.returncode == 0 and done.stdout.startswith("bbaf2n.mpg\t"), done.stderr
    bad = run_infer(f"model_path={folder}", f"video={grid_dir / 'bbaf2n.mpg'}", "framing=lipnet_keras")
    assert bad.returncode == 2 and "invalid choice: 'lipnet_keras'" in bad.stderr
