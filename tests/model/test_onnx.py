"""ONNX export and the onnxruntime network against MXNet: numerics for every variant and norm, the
file's metadata, the exporter's command line, and infer.py reading with an ONNX file without MXNet.

The numerics run on mouth crops of the shared GRID clips. With ``LIPNET_ONNX_HANDOFF`` set (by
.ci/run), the ONNX export of the model trained on the shared clips and what MXNet reads with it are
left there for tests/reading/test_onnx_reader.py, which runs in the Python 3.13 venv without MXNet.
"""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import onnx
import pytest

import infer
from model.checkpoint import EXAMPLE_BEAM_WIDTH, EXAMPLE_MEAN, EXAMPLE_STD, save_checkpoint
from model.lipnet import LipNet, LipNetConfig
from model.loading import load_network
from utils import export_onnx
from utils.data.sentence_clips import Normaliser
from utils.reading.network import NetworkError
from utils.reading.onnx_network import OnnxLipNet
from utils.text.decoders import decode_batch
from utils.text.grid_text import sentence_from_clip_name

REPO_ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4  # the bound on the largest absolute difference of log-probabilities
MEAN, STD = (0.55, 0.35, 0.25), (0.2, 0.15, 0.12)
CASES = [(variant, norm) for variant in ("paper", "example") for norm in ("none", "instance", "batch")]


def make_net(variant: str, norm: str, seed: int = 0, full_size: bool = True) -> LipNet:
    """A LipNet with random weights, and random norm parameters and batch statistics (so that none of them
    is an identity that would hide a wrong mapping): full size, or narrow (the same layers and shapes but
    the channel and hidden widths, which no mapping depends on: a quarter of the time)."""
    mx.random.seed(seed)
    narrow = {} if full_size else {"channels": (8, 16, 24), "hidden": 32}
    net = LipNet(LipNetConfig(variant=variant, norm=norm, **narrow))
    net.initialize(mx.init.Xavier())
    rng = np.random.default_rng(seed)
    for name, param in net._collect_params_with_prefix().items():
        if name.startswith("bn") or name.endswith("bias"):
            low, high = (0.5, 1.5) if name.endswith(("gamma", "running_var")) else (-0.3, 0.3)
            param.set_data(mx.nd.array(rng.uniform(low, high, param.shape)))
    return net


def export(model_path: Path, out: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = export_onnx.main([f"model_path={model_path}", f"out={out}", *extra])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def crops(grid_dir: Path) -> list[np.ndarray]:
    """Mouth crops (75, 50, 100, 3) of the three shared clips."""
    from utils.video.mouth_extractor import MouthExtractor

    extractor = MouthExtractor(size=(100, 50))
    return [extractor.extract(path).frames for path in sorted(grid_dir.glob("*.mpg"))]


def batches(crops: list[np.ndarray], mean: tuple, std: tuple) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A clip alone, and a batch of all three whose first clip is cut to 52 frames and padded as the
    data loader pads (holding the last frame); with each clip's length."""
    normaliser = Normaliser(mean, std)
    data = np.empty((3, 3, 75, 50, 100), np.float32)
    for i, frames in enumerate(crops):
        if i == 0:
            frames = np.concatenate([frames[:52], np.repeat(frames[51:52], 23, axis=0)])
        normaliser.normalise_into(frames, data[i])
    return {"batch 1": (data[1:2].copy(), np.array([75])), "padded batch": (data, np.array([52, 75, 75]))}


@pytest.mark.parametrize("variant,norm", CASES)
def test_onnx_log_probs_equal_mxnets_for_every_variant_and_norm(variant: str, norm: str, crops: list, tmp_path: Path):
    full_size = (variant, norm) == ("paper", "none")  # the paper's network whole; the others narrow
    folder = save_checkpoint(tmp_path / "best", make_net(variant, norm, full_size=full_size), None,
                             {"normalisation": {"mean": list(MEAN), "std": list(STD)},
                              "decoder": {"method": "beam", "beam_width": 7}})
    code, stderr = export(folder, tmp_path / "lipnet.onnx")
    assert code == 0, stderr
    mxnet_net, onnx_net = load_network(folder), load_network(tmp_path / "lipnet.onnx")
    assert (mxnet_net.backend, onnx_net.backend) == ("mxnet", "onnxruntime CPU")
    for name, (data, lengths) in batches(crops, MEAN, STD).items():
        expected, got = mxnet_net.log_probs(data, lengths), onnx_net.log_probs(data, lengths)
        assert got.shape == expected.shape == (len(data), 75, 28)
        for i, n in enumerate(lengths):  # each clip over its real frames (the padding's outputs are not read)
            assert np.abs(got[i, :n] - expected[i, :n]).max() <= TOLERANCE, (name, i)
        for method in ("greedy", "beam"):
            assert decode_batch(got, lengths, method, 7) == decode_batch(expected, lengths, method, 7), (name, method)


def test_the_original_examples_parameter_file_exports_in_either_naming(crops: list, tmp_path: Path):
    net = make_net("example", "instance", seed=1)
    net.save_parameters(str(tmp_path / "example.params"))
    old = {}
    for name, array in mx.nd.load(str(tmp_path / "example.params")).items():
        if "._unfused.0." in name:  # gru1._unfused.0.l_cell.i2h_weight -> gru1.l0_i2h_weight (MXNet < 1.6)
            gru, _, _, cell, what = name.split(".")
            name = f"{gru}.{cell[0]}0_{what}"
        old[name] = array
    mx.nd.save(str(tmp_path / "old_names.params"), old)
    data, lengths = batches(crops, EXAMPLE_MEAN, EXAMPLE_STD)["padded batch"]
    expected = load_network(tmp_path / "example.params").log_probs(data)
    for params in ("example.params", "old_names.params"):
        out = tmp_path / f"{params}.onnx"
        assert export(tmp_path / params, out)[0] == 0
        network = load_network(out)
        assert network.mean == EXAMPLE_MEAN and network.std == EXAMPLE_STD and network.variant == "example"
        assert network.meta["decoder"] == {"method": "beam", "beam_width": EXAMPLE_BEAM_WIDTH}
        assert np.abs(network.log_probs(data) - expected).max() <= TOLERANCE


def test_the_file_is_checked_has_dynamic_axes_and_carries_what_reading_needs(tmp_path: Path):
    folder_net = LipNet(LipNetConfig(channels=(4, 4, 4), hidden=8, width=64, height=32))
    folder_net.initialize()
    folder = save_checkpoint(tmp_path / "best", folder_net, None,
                             {"normalisation": {"mean": list(MEAN), "std": list(STD)}, "frame_rate": 30})
    out = tmp_path / "x.onnx"
    assert export(folder, out)[0] == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    (output,) = inferred.graph.output
    dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
    assert dims == ["N", "T", 28]
    assert {n.op_type for n in model.graph.node} >= {"Conv", "GRU", "LogSoftmax"}
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["lipnet.input"]["height"] == 32 and meta["lipnet.input"]["width"] == 64
    assert meta["lipnet.input"]["colour"] == "RGB"
    assert meta["lipnet.crop"] == {"framing": "lipnet_gluon", "channel_order": "rgb"}  # our own crops
    assert meta["lipnet.normalisation"] == {"mean": list(MEAN), "std": list(STD), "input": "dataset"}
    assert meta["lipnet.version"] == "1"  # a file normalised by the data set's statistics: any reader reads it
    assert meta["lipnet.frame_rate"] == 30 and meta["lipnet.alphabet"]["characters"] == "abcdefghijklmnopqrstuvwxyz "
    assert meta["lipnet.decoder"]["method"] == "greedy"
    network = OnnxLipNet(out)
    assert (network.width, network.height, network.frame_rate, network.mean) == (64, 32, 30.0, MEAN)
    for n, t in ((1, 9), (5, 75)):  # batch and time are free
        assert network.log_probs(np.zeros((n, 3, t, 32, 64), np.float32)).shape == (n, t, 28)
    # onnxruntime's own failure comes as the NetworkError reading catches per utterance, naming its type.
    with pytest.raises(NetworkError, match=r"onnxruntime could not read a batch of shape \(1, 4, 9, 32, 64\): "
                                           r"InvalidArgument: .*dimensions"):
        network.log_probs(np.zeros((1, 4, 9, 32, 64), np.float32))


def test_a_network_normalised_per_clip_is_read_per_clip_by_both_backends(tmp_path: Path):
    """input_norm=clip travels from the checkpoint into the ONNX file's metadata, and both backends' readers
    normalise each clip by its own statistics: the same input to the same log-probabilities."""
    net = LipNet(LipNetConfig(channels=(4, 4, 4), hidden=8, width=48, height=24))
    net.initialize(mx.init.Xavier())
    folder = save_checkpoint(tmp_path / "best", net, None,
                             {"normalisation": {"mean": list(MEAN), "std": list(STD), "input": "clip"}})
    out = tmp_path / "x.onnx"
    assert export(folder, out)[0] == 0
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["lipnet.normalisation"]["input"] == "clip" and "own mean and std" in meta["lipnet.input"]["scale"]
    assert meta["lipnet.version"] == "2"  # a reader that knows only version 1 would normalise it wrongly: it refuses
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(60, 20, (30, 24, 48, 3)), 0, 255).astype(np.uint8)
    inputs, readings = [], []
    for network in (load_network(folder), load_network(out)):
        normaliser = Normaliser.recorded(network.mean, network.std, network.meta)
        assert normaliser.per_clip
        data = np.empty((1, 3, 30, 24, 48), np.float32)
        normaliser.normalise_into(frames, data[0])
        inputs.append(data)
        readings.append(network.log_probs(data, np.array([30])))
    assert np.array_equal(inputs[0], inputs[1]) and abs(inputs[0].mean()) < 1e-4
    assert np.abs(readings[0] - readings[1]).max() <= TOLERANCE
    # a checkpoint or file naming a normalisation this version does not know is refused, naming the file
    (folder / "meta.json").write_text((folder / "meta.json").read_text().replace('"clip"', '"frame"'))
    with pytest.raises(ValueError, match="meta.json: incomplete checkpoint description .*'frame'"):
        load_network(folder)
    model = onnx.load(str(out))
    for prop in model.metadata_props:
        if prop.key == "lipnet.normalisation":
            prop.value = prop.value.replace('"clip"', '"frame"')
    onnx.save(model, str(tmp_path / "frame.onnx"))
    with pytest.raises(ValueError, match="frame.onnx: incomplete LipNet metadata .*'frame'"):
        OnnxLipNet(tmp_path / "frame.onnx")


@pytest.mark.parametrize("norm", ["none", "instance", "batch"])
def test_lengths_input_makes_padding_irrelevant(norm: str, crops: list, tmp_path: Path):
    """With lengths (the default) a clip padded in a batch reads exactly as the clip alone, and as MXNet
    reads it."""
    folder = save_checkpoint(tmp_path / "best", make_net("paper", norm, full_size=False), None,
                             {"normalisation": {"mean": list(MEAN), "std": list(STD)}})
    out = tmp_path / "lengths.onnx"
    assert export(folder, out, "lengths=true", "check=false")[0] == 0
    network = OnnxLipNet(out)
    assert network.takes_lengths
    data, lengths = batches(crops, MEAN, STD)["padded batch"]
    alone = network.log_probs(data[:1, :, :52], np.array([52]))
    padded = network.log_probs(data, lengths)
    assert np.abs(padded[0, :52] - alone[0]).max() <= 1e-5
    mxnet_padded = load_network(folder).log_probs(data, lengths)
    assert np.abs(padded[0, :52] - mxnet_padded[0, :52]).max() <= TOLERANCE
    assert np.abs(padded[1:] - mxnet_padded[1:]).max() <= TOLERANCE


def test_export_errors_are_one_line_and_exit_2(tmp_path: Path):
    code, stderr = export(tmp_path / "gone", tmp_path / "x.onnx")
    assert code == 2 and "gone: no such checkpoint" in stderr and not (tmp_path / "x.onnx").exists()
    (tmp_path / "garbage.params").write_bytes(b"not parameters")
    code, stderr = export(tmp_path / "garbage.params", tmp_path / "x.onnx")
    assert code == 2 and "garbage.params" in stderr and not (tmp_path / "x.onnx").exists()


def test_unreadable_onnx_file_is_a_clear_error(tmp_path: Path, grid_dir: Path):
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = infer.main([f"model_path={tmp_path / 'bad.onnx'}", f"video={grid_dir}", "num_gpus=0"])
    assert code == 2 and err.getvalue().startswith("error: cannot load the model: ") and "bad.onnx" in err.getvalue()
    assert err.getvalue().count("\n") == 1 and out.getvalue() == ""
    with pytest.raises(FileNotFoundError, match="gone.onnx: no such ONNX file"):
        load_network(tmp_path / "gone.onnx")
    value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    identity = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "other", [value],
                                      [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(identity), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not a LipNet ONNX file"):
        load_network(tmp_path / "other.onnx")


def _read(model: Path, *args: str) -> tuple[int, str, str]:
    """infer.py in a fresh interpreter that fails if MXNet gets imported."""
    code = ("import sys, infer\n"
            "status = infer.main(sys.argv[1:])\n"
            "assert 'mxnet' not in sys.modules, 'MXNet was imported'\n"
            "sys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code, f"model_path={model}", "num_gpus=0", "progress=false", *args],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


def test_model_trained_on_the_shared_clips_reads_them_the_same_through_onnx(real_model: dict, tmp_path: Path):
    """The ONNX export of the trained model reads the raw shared videos, and their crops as a data set,
    to the sentences its MXNet checkpoint reads; the ONNX runs never import MXNet."""
    onnx_path = tmp_path / "real.onnx"
    code, stderr = export(real_model["model"], onnx_path)
    assert code == 0, stderr
    videos = sorted(real_model["videos"].glob("*.mpg"))
    expected = {}
    for mode, args in {"videos": [f"video={real_model['videos']}"],  # the data set: the checkpoint's selection
                       "data set": [f"image_path={real_model['crops']}", f"align_path={tmp_path / 'none'}",
                                    "batch_size=2"]}.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert infer.main([f"model_path={real_model['model']}", "num_gpus=0", "progress=false", *args]) == 0
        code, stdout, stderr = _read(onnx_path, *args)
        assert code == 0, stderr
        assert "onnxruntime" in stderr and stdout == out.getvalue(), mode
        expected[mode] = stdout
    sentences = dict(line.split("\t") for line in expected["videos"].splitlines())
    assert sentences == {video.name: sentence_from_clip_name(video.stem) for video in videos}
    assert "WER 0.0000" in expected["data set"]
    handoff = os.environ.get("LIPNET_ONNX_HANDOFF")
    if handoff:  # for tests/reading/test_onnx_reader.py in the Python 3.13 venv (.ci/run)
        Path(handoff).mkdir(parents=True, exist_ok=True)
        (Path(handoff) / "real.onnx").write_bytes(onnx_path.read_bytes())
        (Path(handoff) / "expected.json").write_text(json.dumps({"sentences": sentences}))


def test_bench_times_both_backends_side_by_side(capsys):
    from bench.onnx import main as bench_main

    figures = bench_main(["batch_sizes=1,2", "repeats=2", "frames=8"])
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == json.loads(json.dumps(figures))
    assert [row["batch_size"] for row in figures["rows"]] == [1, 2]
    for row in figures["rows"]:
        for backend in ("mxnet", "onnxruntime"):
            assert 0 < row[backend]["min_ms"] <= row[backend]["median_ms"]
        assert row["speedup"] == round(row["mxnet"]["median_ms"] / row["onnxruntime"]["median_ms"], 2)
    assert isinstance(figures["meets_target"], bool)
    with pytest.raises(SystemExit):
        bench_main(["batch_sizes=0"])
