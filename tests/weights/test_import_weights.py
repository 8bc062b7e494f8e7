"""utils/import_weights.py with LipNet-PyTorch files: the imported network reads as LipNet-PyTorch does (its
log-probabilities, computed once with torch by bench/reference/lipnet_pytorch_outputs.py, within 1e-4), exports to
ONNX with the same numbers, and a hostile or foreign file is refused with exit status 2 and nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from model.backend import mx
from model.checkpoint import load_lipnet
from model.lipnet_pytorch import THEIR_CLASS
from model.training.state import resolve_start
from tests.weights.lipnet_pytorch_case import REFERENCE, clips, state_dict
from tests.weights.torch_writer import Call, Global, write_torch_file
from utils import import_weights
from utils.reading.onnx_network import OnnxLipNet

REPO_ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4  # the bound on the largest absolute difference of log-probabilities


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)


def reference() -> np.ndarray:
    """LipNet-PyTorch's log-probabilities in our class order (a..z, space, blank)."""
    saved = np.load(REFERENCE)
    # The seeded weights and clips must be the ones the reference was computed from.
    assert np.isclose(clips().astype(np.float64).sum(), float(saved["clips_sum"]), rtol=1e-12)
    weights_sum = sum(float(np.abs(v).astype(np.float64).sum()) for v in state_dict().values())
    assert np.isclose(weights_sum, float(saved["weights_sum"]), rtol=1e-12)
    return saved["log_probs"][..., THEIR_CLASS]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LipNet-PyTorch file in the legacy layout its 2019 checkpoints have, imported."""
    folder = tmp_path_factory.mktemp("lipnet_pytorch")
    source = write_torch_file(state_dict(), folder / "LipNet_overlap_test.pt", "legacy")
    result = run("utils/import_weights.py", source, folder / "checkpoint")
    assert result.returncode == 0, result.stderr
    assert f"wrote {folder / 'checkpoint'}: lipnet_pytorch weights (24 tensors)" in result.stderr
    return folder / "checkpoint"


def test_the_imported_network_reads_as_lipnet_pytorch_within_1e_4(imported: Path):
    net = load_lipnet(imported).net
    got = net(mx.nd.array(clips())).asnumpy()
    assert got.shape == (2, 8, 28)
    assert np.abs(got - reference()).max() <= TOLERANCE


def test_the_checkpoint_records_crop_normalisation_alphabet_and_source(imported: Path):
    meta = json.loads((imported / "meta.json").read_text())
    assert meta["config"]["variant"] == "paper" and (meta["config"]["width"], meta["config"]["height"]) == (128, 64)
    assert meta["crop"] == {"framing": "lipnet_pytorch", "channel_order": "bgr", "scale": "pixel / 255",
                            "width": 128, "height": 64}
    assert meta["normalisation"] == {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    assert meta["alphabet"]["characters"] == "abcdefghijklmnopqrstuvwxyz " and meta["alphabet"]["blank"] == 27
    assert meta["frame_rate"] == 25 and meta["files"]["model.params"]["sha256"]
    source = meta["imported_from"]
    assert source["kind"] == "lipnet_pytorch" and source["file"] == "LipNet_overlap_test.pt"
    assert source["layout"] == "legacy" and len(source["sha256"]) == 64 and "MIT" in source["licence"]


def test_the_onnx_export_reads_as_ours_and_as_lipnet_pytorch_within_1e_4(imported: Path, tmp_path: Path):
    out = tmp_path / "lipnet_pytorch.onnx"
    result = run("utils/export_onnx.py", f"model_path={imported}", f"out={out}", "lengths=false")
    assert result.returncode == 0, result.stderr
    props = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert props["lipnet.crop"]["framing"] == "lipnet_pytorch" and props["lipnet.input"]["colour"] == "BGR"
    got = OnnxLipNet(out).log_probs(clips())
    ours = load_lipnet(imported).net(mx.nd.array(clips())).asnumpy()
    assert np.abs(got - ours).max() <= TOLERANCE
    assert np.abs(got - reference()).max() <= TOLERANCE


def test_fine_tuning_starts_from_the_imported_weights(imported: Path):
    start = resolve_start(str(imported), fine_tune=True)
    assert (start.config.width, start.config.height, start.config.num_classes) == (128, 64, 28)
    assert start.mean == [0.0, 0.0, 0.0] and start.alphabet.name == "grid"
    assert np.array_equal(start.arrays["dense.bias"].asnumpy(), state_dict()["FC.bias"][THEIR_CLASS])


def test_the_zip_layout_imports_to_the_same_parameters(imported: Path, tmp_path: Path):
    source = write_torch_file(state_dict(), tmp_path / "new.pt", "zip")
    result = run("utils/import_weights.py", source, tmp_path / "checkpoint", "kind=lipnet_pytorch")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "checkpoint" / "meta.json").read_text())["imported_from"]["layout"] == "zip"
    assert (tmp_path / "checkpoint" / "model.params").read_bytes() == (imported / "model.params").read_bytes()


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_a_hostile_file_is_refused_with_exit_2_no_traceback_and_nothing_run_or_written(tmp_path: Path, layout: str):
    marker = tmp_path / "ran"
    hostile = {**state_dict(), "payload": Call(Global("os", "system"), (f"touch {marker}",))}
    source = write_torch_file(hostile, tmp_path / "evil.pt", layout)
    result = run("utils/import_weights.py", source, tmp_path / "out")
    assert result.returncode == 2
    assert "refused: its pickle asks for os.system" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_unknown_missing_and_misshapen_keys_are_named_in_one_error(tmp_path: Path):
    state = state_dict()
    del state["gru2.bias_hh_l0"]
    state["FC.weight"] = state["FC.weight"][:27]
    state["extra.weight"] = np.ones(2, np.float32)
    source = write_torch_file(state, tmp_path / "odd.pt", "zip")
    result = run("utils/import_weights.py", source, tmp_path / "out", "kind=lipnet_pytorch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "odd.pt: not the LipNet-PyTorch network (128x64 input, GRU input 3072, 28 classes): unknown keys: " \
           "extra.weight; missing keys: gru2.bias_hh_l0; wrong shapes: FC.weight (27, 512) (needs (28, 512))" \
           in result.stderr
    assert not (tmp_path / "out").exists()


def test_every_kind_has_its_importer():
    assert tuple(import_weights.importers()) == import_weights.KINDS


def test_a_state_dict_of_no_known_network_is_refused_and_an_output_replaced_only_with_force(tmp_path: Path):
    source = write_torch_file({"fc.weight": np.ones((2, 2), np.float32)}, tmp_path / "other.pt", "zip")
    result = run("utils/import_weights.py", source, tmp_path / "out")
    assert result.returncode == 2 and "that none of lipnet_pytorch, tcn recognises" in result.stderr
    assert not (tmp_path / "out").exists()
    lipnet = write_torch_file(state_dict(), tmp_path / "l.pt", "zip")
    (tmp_path / "out").mkdir()
    result = run("utils/import_weights.py", lipnet, tmp_path / "out")
    assert result.returncode == 2 and "already exists; give force=true" in result.stderr
    assert not (tmp_path / "out" / "meta.json").exists()
    result = run("utils/import_weights.py", lipnet, tmp_path / "out", "force=true")
    assert result.returncode == 0 and (tmp_path / "out" / "meta.json").is_file()


def test_infer_and_fine_tuning_take_the_imported_checkpoint(imported: Path, tmp_path: Path):
    """128x64 GRID-style clips (synthetic) read by infer.py and fine-tuned on by main.py for one epoch."""
    data = tmp_path / "synthetic"
    made = run("utils/make_synthetic.py", "speakers=1-2", "clips_per_speaker=1", "size=128x64", f"tgt_path={data}",
               "n_process=1")
    assert made.returncode == 0, made.stderr
    paths = [f"image_path={data / 'datasets'}", f"align_path={data / 'align'}", "speakers=1-2", "val_speakers=2",
             "num_gpus=0"]
    read = run("infer.py", f"model_path={imported}", *paths, "progress=false")
    assert read.returncode == 0, read.stderr
    assert "(1 clips, valid, decoder greedy)" in read.stdout + read.stderr
    trained = run("main.py", f"model_path={imported}", "fine_tune=true", "epochs=1", "batch_size=1", *paths,
                  f"save_dir={tmp_path / 'run'}")
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((tmp_path / "run" / "last" / "meta.json").read_text())
    assert (meta["config"]["width"], meta["config"]["height"]) == (128, 64)
    assert meta["normalisation"] == {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "input": "dataset"}
