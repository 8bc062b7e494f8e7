"""The TCN reference's LRW word models through utils/import_weights.py, utils/export_onnx.py and infer.py.

The reference's log-probabilities on fixed weights and clips were computed once with torch by
tests/tcn_reference.py (tests/assets/tcn_reference/expected.json); here the same weights are drawn from their
NumPy seed and written in torch's file format without torch (tests/weights/torch_writer.py), imported, run on
MXNet and exported to ONNX, each compared with the reference within 1e-4.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import mxnet as mx
import numpy as np
import onnx
import pytest

from model.checkpoint import read_checkpoint
from model.tcn_weights import TcnWeightsError, clean_state, config_from_state, expected_names, reference_arrays
from model.word_classifier import WordClassifier
from model.word_net import WordNet, WordNetConfig
from tests.tcn_reference import EXPECTED, LENGTHS, draw_state, grey_frames, reference_input
from tests.weights.torch_writer import write_torch_file
from utils.data.word_clips import word_input
from utils.reading.onnx_network import OnnxLipNet
from utils.reading.onnx_words import OnnxWordClassifier

REPO_ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4
WORDS = ["ABOUT", "BLACK", "COURT", "DURING", "GREAT", "LEVEL", "MONEY", "PRICE", "RIGHT", "STILL", "WHERE",
         "WORLD"]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(EXPECTED.read_text())


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)


def shapes(case: dict) -> dict[str, tuple[int, ...]]:
    return {name: tuple(shape) for name, shape in case["shapes"].items()}


def write_reference_file(path: Path, state: dict, layout: str = "zip") -> Path:
    """A training checkpoint as the reference saves it: the state dict under ``model_state_dict``."""
    return write_torch_file({"model_state_dict": OrderedDict(state), "epoch_idx": 79}, path, layout)


@pytest.fixture(scope="module")
def words_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("words") / "words.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


@pytest.fixture(scope="module")
def imported(reference: dict, words_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case written as the reference's .pth.tar (swish in the zip layout, prelu in the legacy one) and
    imported with utils/import_weights.py."""
    root = tmp_path_factory.mktemp("tcn")
    out = {}
    for case, layout in (("swish", "zip"), ("prelu", "legacy")):
        source = write_reference_file(root / f"{case}.pth.tar", draw_state(shapes(reference["cases"][case])), layout)
        result = run("utils/import_weights.py", source, root / case, f"words={words_file}")
        assert result.returncode == 0, result.stderr
        assert f"wrote {root / case}: tcn weights" in result.stderr
        out[case] = root / case
    return out


def test_the_loader_input_is_the_reference_loaders():
    frames = grey_frames()
    ours = np.stack([word_input(clip) for clip in frames])  # centred 88x88 of 96x96, as WordDataset reads
    assert np.abs(ours - reference_input()).max() < 1e-5


def test_full_size_names_and_shapes_map_onto_the_reference_network(reference: dict):
    # The full lrw_resnet18_mstcn state dict's names and shapes (torch's, from tests/tcn_reference.py), no weights.
    full = shapes(reference["full_size"])
    state = {name: np.broadcast_to(np.float32(0), shape) for name, shape in full.items()}
    config = config_from_state(clean_state(state))
    assert config == WordNetConfig(num_classes=500, relu_type="swish")
    expected = expected_names(config)
    assert set(expected) == {name for name in full if not name.endswith("num_batches_tracked")}
    assert all(tuple(full[ref]) == shape for ref, (_, shape) in expected.items())
    assert sorted(ours for ours, _ in expected.values()) == sorted(WordNet(config)._collect_params_with_prefix())


@pytest.mark.parametrize("case", ["swish", "prelu"])
def test_imported_model_and_its_onnx_export_equal_the_reference(case: str, reference: dict, imported: dict,
                                                               tmp_path: Path):
    expected = np.array(reference["cases"][case]["log_probs"], np.float32)
    data, lengths = reference_input(), np.array(LENGTHS)
    classifier = WordClassifier.load(imported[case])
    assert classifier.words == WORDS and classifier.net.config.relu_type == case
    scores = classifier.net(mx.nd.array(data), mx.nd.array(lengths))
    ours = mx.nd.log_softmax(scores).asnumpy()
    assert np.abs(ours - expected).max() <= TOLERANCE
    assert np.ptp(expected, axis=1).min() > 1  # the classes are told apart: a wrong mapping would show

    result = run("utils/export_onnx.py", f"model_path={imported[case]}", f"out={tmp_path / 'words.onnx'}")
    assert result.returncode == 0, result.stderr
    assert "word classifier of 12 words, input 88x88" in result.stderr
    onnx_net = OnnxWordClassifier(tmp_path / "words.onnx")
    graph = onnx.load(str(tmp_path / "words.onnx")).graph
    norms = [node for node in graph.node if node.op_type == "BatchNormalization"]
    assert len(norms) == 1 + 19 + 24 and not any(a.name == "training_mode" and a.i for n in norms for a in n.attribute)
    assert not any(node.op_type == "Dropout" for node in graph.node)  # inference: batch norms' running statistics
    got = onnx_net(data, lengths)
    assert got.shape == (2, 12)
    assert np.abs(got - ours).max() <= TOLERANCE and np.abs(got - expected).max() <= TOLERANCE
    assert (onnx_net.words, onnx_net.crop, onnx_net.region, onnx_net.mean, onnx_net.std) == (
        WORDS, 88, 96, (0.421,), (0.165,))
    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "words.onnx")).metadata_props}
    assert metadata["lipnet.crop"]["framing"] == "tcn" and metadata["lipnet.imported_from"]["kind"] == "tcn"
    # Without lengths: every frame of each clip counts, as a clip of the network's length is read.
    full = mx.nd.log_softmax(classifier.net(mx.nd.array(data), mx.nd.full((2,), 29))).asnumpy()
    assert np.abs(onnx_net(data) - full).max() <= TOLERANCE


def test_checkpoint_records_words_normalisation_framing_and_origin(imported: dict, words_file: Path):
    contents = read_checkpoint(imported["swish"])
    meta = contents.meta
    assert meta["network"] == "word_net" and meta["words"] == WORDS
    assert meta["normalisation"] == {"mean": [0.421], "std": [0.165]} and meta["region"] == 96
    assert meta["frame_rate"] == 25.0 and meta["crop"]["size"] == 88
    origin = meta["imported_from"]
    assert origin["kind"] == "tcn" and origin["file"] == "swish.pth.tar" and origin["layout"] == "zip"
    assert len(origin["sha256"]) == 64 and origin["words"] == str(words_file)
    assert meta["files"]["model.params"]["bytes"] == (imported["swish"] / "model.params").stat().st_size


def test_older_layouts_map_alike(reference: dict):
    state = draw_state(shapes(reference["cases"]["swish"]))
    config = config_from_state(clean_state(state))
    plain = reference_arrays(clean_state(state), config)
    # nn.DataParallel's module. prefix; the earliest version's top-level tcn_output beside an unused tcn.tcn_output
    wrapped = {f"module.{name}": array for name, array in state.items()}
    old = {("tcn_output." + n.removeprefix("tcn.tcn_output.") if n.startswith("tcn.tcn_output.") else n): a
           for n, a in state.items()}
    old.update({name: np.zeros_like(a) for name, a in state.items() if name.startswith("tcn.tcn_output.")})
    for other in (wrapped, old):
        arrays = reference_arrays(clean_state(other), config_from_state(clean_state(other)))
        assert all(np.array_equal(arrays[name], plain[name]) for name in plain)


def test_unknown_missing_and_wrong_shapes_are_named_in_one_error(reference: dict, words_file: Path, tmp_path: Path):
    state = draw_state(shapes(reference["cases"]["swish"]))
    del state["trunk.layer2.0.bn1.running_var"]
    state["trunk.layer2.0.extra.weight"] = np.zeros(3, np.float32)
    state["tcn.mb_ms_tcn.network.1.cbcr0_2.conv.weight"] = np.zeros((16, 48, 5), np.float32)
    result = run("utils/import_weights.py", write_reference_file(tmp_path / "bad.pth", state), tmp_path / "out",
                 f"words={words_file}")
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(tmp_path / "bad.pth") in line
    assert "unknown keys (1): trunk.layer2.0.extra.weight" in line
    assert "missing keys (1): trunk.layer2.0.bn1.running_var" in line
    assert "wrong shapes (1): tcn.mb_ms_tcn.network.1.cbcr0_2.conv.weight (16, 48, 5) (expected (16, 48, 7))" in line
    with pytest.raises(TcnWeightsError, match="depthwise-separable"):
        config_from_state({**state, "tcn.mb_ms_tcn.network.0.cbcr0_0.conv.0.weight": np.zeros(1)})


def test_a_500_word_model_takes_lrws_sorted_words_unless_given_others(reference: dict, tmp_path: Path):
    listed = (REPO_ROOT / "asset" / "lrw500_words.txt").read_text().split()
    assert len(set(listed)) == 500 and listed == sorted(listed)
    assert {"ABOUT", "ALMOST", "REPORTS", "YOUNG"} <= set(listed)
    drawn = shapes(reference["cases"]["swish"])
    hidden = drawn["tcn.tcn_output.weight"][1]
    drawn.update({"tcn.tcn_output.weight": (500, hidden), "tcn.tcn_output.bias": (500,)})
    source = write_reference_file(tmp_path / "lrw.pth", draw_state(drawn))
    result = run("utils/import_weights.py", source, tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert read_checkpoint(tmp_path / "a").meta["words"] == listed


def test_word_list_is_required_checked_and_may_be_an_lrw_folder(reference: dict, tmp_path: Path):
    source = write_reference_file(tmp_path / "model.pth", draw_state(shapes(reference["cases"]["swish"])))
    result = run("utils/import_weights.py", source, tmp_path / "a")
    assert result.returncode == 2 and f"{source} has 12 classes, not LRW's 500: give words=" in result.stderr
    short = tmp_path / "short.txt"
    short.write_text("ABOUT\nMONEY\n")
    result = run("utils/import_weights.py", source, tmp_path / "b", f"words={short}", "kind=tcn")
    assert result.returncode == 2 and f"{short}: 2 words, but {source} has 12 classes" in result.stderr
    twice = tmp_path / "twice.txt"
    twice.write_text("\n".join(WORDS[:11] + ["ABOUT"]))
    result = run("utils/import_weights.py", source, tmp_path / "c", f"words={twice}")
    assert result.returncode == 2 and "words listed twice: ABOUT" in result.stderr
    lrw = tmp_path / "lrw"
    for word in reversed(WORDS):
        (lrw / word / "test").mkdir(parents=True)
    result = run("utils/import_weights.py", source, tmp_path / "d", f"words={lrw}", "relu_type=relu")
    assert result.returncode == 0, result.stderr
    meta = read_checkpoint(tmp_path / "d").meta
    assert meta["words"] == sorted(WORDS) and meta["config"]["relu_type"] == "relu"
    # A file with PReLU slopes is prelu whatever the flag says.
    prelu = write_reference_file(tmp_path / "prelu.pth", draw_state(shapes(reference["cases"]["prelu"])))
    result = run("utils/import_weights.py", prelu, tmp_path / "e", f"words={lrw}", "relu_type=swish")
    assert result.returncode == 2 and "has PReLU slopes" in result.stderr


@pytest.fixture(scope="module")
def word_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic LRW-layout set of two of the model's words, 96x96 regions as the reference's preprocessing."""
    from utils.synthetic import words as synthetic_words

    root = tmp_path_factory.mktemp("lrw")
    synthetic_words.generate_words(root, ["ABOUT", "MONEY"], {"train": (1,), "val": (2,), "test": (3,)},
                                   clips_per_speaker=2, size=96, n_process=1, progress=False)
    return root


@pytest.fixture(scope="module")
def word_onnx(imported: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tcn_words.onnx"
    result = run("utils/export_onnx.py", f"model_path={imported['swish']}", f"out={out}")
    assert result.returncode == 0, result.stderr
    return out


def test_infer_scores_an_lrw_set_and_reads_videos_alike_with_the_onnx_file(imported: dict, word_onnx: Path,
                                                                          word_set: Path, grid_dir: Path,
                                                                          tmp_path: Path):
    scored = {}
    for model in (imported["swish"], word_onnx):
        result = run("infer.py", f"model_path={model}", f"image_path={word_set}", "data_type=test", "num_gpus=0",
                     "progress=false", "batch_size=3", f"out={tmp_path / model.stem}")
        # The set holds 2 of the model's 12 words: the other 10 are named, and the run says so (exit 1).
        assert result.returncode == 1 and "error: 10 word folders were left out" in result.stderr, result.stderr
        assert "(4 clips, test)" in result.stdout
        scored[model] = result.stdout
    assert scored[imported["swish"]] == scored[word_onnx]
    for name in ("words.csv", "predictions.csv"):
        assert (tmp_path / "swish" / name).read_text() == (tmp_path / "tcn_words" / name).read_text()
    read = {}
    for model in (imported["swish"], word_onnx):
        result = run("infer.py", f"model_path={model}", f"video={grid_dir}", "num_gpus=0", "progress=false",
                     "format=json")
        assert result.returncode == 0, result.stderr
        read[model] = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(read[word_onnx]) == 3
    with pytest.raises(ValueError, match="a word_net ONNX file, not a LipNet's"):
        OnnxLipNet(word_onnx)
    for ours, onnx_line in zip(read[imported["swish"]], read[word_onnx]):
        assert [t["word"] for t in ours["top"]] == [t["word"] for t in onnx_line["top"]]
        assert np.allclose([t["probability"] for t in ours["top"]], [t["probability"] for t in onnx_line["top"]],
                           atol=1e-4)
    handoff = os.environ.get("LIPNET_ONNX_HANDOFF")
    if handoff:  # for tests/reading/test_onnx_reader.py in the Python 3.13 venv (.ci/run)
        Path(handoff).mkdir(parents=True, exist_ok=True)
        shutil.copy(word_onnx, Path(handoff) / "tcn_words.onnx")
        shutil.copytree(word_set, Path(handoff) / "lrw", dirs_exist_ok=True)
        (Path(handoff) / "tcn_words.json").write_text(json.dumps({"scored": scored[word_onnx],
                                                                  "videos": read[imported["swish"]]}))


def test_an_imported_model_fine_tunes_with_main(imported: dict, word_set: Path, tmp_path: Path):
    import main

    assert main.main([f"model_path={imported['swish']}", "fine_tune=true", "task=words", f"image_path={word_set}",
                      f"save_dir={tmp_path}", "num_gpus=0", "progress=false", "epochs=1", "batch_size=2"]) == 0
    meta = json.loads((tmp_path / "last" / "meta.json").read_text())
    assert meta["words"] == WORDS and meta["config"]["relu_type"] == "swish"
    assert meta["state"]["iteration"] == 2  # 4 training clips (2 words, 2 each), batch 2
