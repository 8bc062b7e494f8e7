"""Reading with an ONNX file where MXNet cannot be installed: .ci/run runs these in a Python 3.13 venv
with NumPy 2 built from requirements-infer.txt (``pytest -m onnx_reader tests/reading/test_onnx_reader.py``).

The model is the one trained on the shared clips, exported by tests/model/test_onnx.py in the main venv,
which leaves it and what its MXNet checkpoint reads in ``LIPNET_ONNX_HANDOFF``. Where MXNet is
importable these tests are skipped (tests/conftest.py).
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.onnx_reader
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def handoff() -> Path:
    folder = os.environ.get("LIPNET_ONNX_HANDOFF")
    if not folder:
        pytest.skip("needs LIPNET_ONNX_HANDOFF, the folder where tests/model/test_onnx.py left the exported model "
                    "(.ci/run sets it)")
    path = Path(folder)
    if not (path / "real.onnx").is_file() or not (path / "expected.json").is_file():
        pytest.fail(f"{path}: no real.onnx and expected.json (tests/model/test_onnx.py did not run, or failed, before)")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def test_this_python_has_numpy_2_and_no_mxnet():
    assert importlib.util.find_spec("mxnet") is None
    assert int(np.__version__.split(".")[0]) >= 2


def test_infer_reads_the_shared_videos_with_the_onnx_file(handoff: Path, grid_dir: Path, tmp_path: Path):
    expected = json.loads((handoff / "expected.json").read_text())["sentences"]
    result = run("infer.py", f"model_path={handoff / 'real.onnx'}", f"video={grid_dir}", "num_gpus=0",
                 "progress=false", f"out={tmp_path / 'report'}")
    assert result.returncode == 0, result.stderr
    assert dict(line.split("\t") for line in result.stdout.splitlines()) == expected
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "predictions.csv").is_file()


def test_infer_scores_a_preprocessed_data_set_with_the_onnx_file(handoff: Path, grid_dir: Path, tmp_path: Path):
    # As speaker s2: the model trained on the clips as s1 and validated on copies as s2 (tests/conftest.py), and
    # clips it trained on are never scored as validation.
    videos = tmp_path / "videos" / "s2"
    videos.mkdir(parents=True)
    for clip in sorted(grid_dir.glob("*.mpg")):
        (videos / clip.name).symlink_to(clip)
    result = run("utils/preprocess_data.py", f"src_path={tmp_path / 'videos'}", f"tgt_path={tmp_path / 'crops'}",
                 "n_process=1")
    assert result.returncode == 0, result.stderr
    result = run("infer.py", f"model_path={handoff / 'real.onnx'}", f"image_path={tmp_path / 'crops'}",
                 f"align_path={tmp_path / 'none'}", "val_speakers=2", "num_gpus=0", "progress=false",
                 "decoder=beam", "beam_width=4")
    assert result.returncode == 0, result.stderr
    assert "CER 0.0000  WER 0.0000  (3 clips" in result.stdout


def test_infer_decodes_with_a_word_language_model_without_mxnet(handoff: Path, grid_dir: Path, tmp_path: Path):
    expected = json.loads((handoff / "expected.json").read_text())["sentences"]
    text = tmp_path / "sentences.txt"
    text.write_text("".join(f"{sentence}\n" for sentence in expected.values()) + "bin blue at f two now\n")
    built = run("utils/build_lm.py", f"text={text}", f"out={tmp_path / 'lm.arpa'}", "progress=false")
    assert built.returncode == 0, built.stderr
    result = run("infer.py", f"model_path={handoff / 'real.onnx'}", f"video={grid_dir}", "num_gpus=0",
                 "progress=false", "decoder=lm", f"lm_path={tmp_path / 'lm.arpa'}")
    assert result.returncode == 0, result.stderr
    assert "decoder lm (" in result.stderr
    assert dict(line.split("\t") for line in result.stdout.splitlines()) == expected


@pytest.fixture(scope="module")
def word_handoff() -> Path:
    folder = os.environ.get("LIPNET_ONNX_HANDOFF")
    if not folder:
        pytest.skip("needs LIPNET_ONNX_HANDOFF, the folder where tests/model/test_tcn_import.py left the exported "
                    "word model (.ci/run sets it)")
    handoff = Path(folder)
    if not (handoff / "tcn_words.onnx").is_file() or not (handoff / "tcn_words.json").is_file():
        pytest.fail(f"{handoff}: no tcn_words.onnx and tcn_words.json (tests/model/test_tcn_import.py did not run, "
                    "or failed, before)")
    return handoff


def test_infer_scores_an_lrw_set_with_a_word_onnx_file(word_handoff: Path):
    # The imported TCN model's export on a set holding 2 of its 12 words: the same lines as MXNet printed.
    expected = json.loads((word_handoff / "tcn_words.json").read_text())["scored"]
    result = run("infer.py", f"model_path={word_handoff / 'tcn_words.onnx'}", f"image_path={word_handoff / 'lrw'}",
                 "data_type=test", "num_gpus=0", "progress=false", "batch_size=3")
    assert result.returncode == 1 and "error: 10 word folders were left out" in result.stderr, result.stderr
    assert result.stdout == expected


def test_infer_reads_word_videos_with_a_word_onnx_file(word_handoff: Path, grid_dir: Path):
    expected = json.loads((word_handoff / "tcn_words.json").read_text())["videos"]
    result = run("infer.py", f"model_path={word_handoff / 'tcn_words.onnx'}", f"video={grid_dir}", "num_gpus=0",
                 "progress=false", "format=json")
    assert result.returncode == 0, result.stderr
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [g["file"] for g in got] == [e["file"] for e in expected]
    for ours, theirs in zip(got, expected):
        assert [t["word"] for t in ours["top"]] == [t["word"] for t in theirs["top"]]
        assert np.allclose([t["probability"] for t in ours["top"]], [t["probability"] for t in theirs["top"]],
                           atol=1e-4)
