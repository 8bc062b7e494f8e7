"""The alphabet is the checkpoint's: GRID's layout by default, captions' with the apostrophe, and fine-tuning
from one to the other keeps every layer but the output."""
from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import main
from model.checkpoint import load_lipnet
from model.mxnet_network import MXNetLipNet
from tests.fake_data import write_fake_clips
from utils.text.alphabet import CAPTIONS, GRID, Alphabet, alphabet_from_record, choose_alphabet, get_alphabet
from utils.text.decoders import beam_decode, decode_batch, greedy_decode
from utils.text.timings import word_timings

TINY = ["channels=4,8,8", "hidden=16", "batch_size=4", "num_gpus=0", "progress=false", "val_speakers=3",
        "align_path=/nonexistent", "flip_prob=0", "jitter_prob=0", "dr_rate=0"]


def _peaky(text: str, alphabet: Alphabet) -> np.ndarray:
    """Log-probabilities certain of ``text``'s characters, one frame each with a blank between."""
    path = []
    for c in text:
        path += [alphabet.encode(c)[0], alphabet.blank]
    lp = np.full((len(path), alphabet.num_classes), np.log(1e-4))
    lp[np.arange(len(path)), path] = 0.0
    return lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))


def test_grid_is_the_published_layout_and_captions_adds_the_apostrophe():
    assert (GRID.blank, GRID.num_classes, GRID.space, GRID.encode("az ")) == (27, 28, 26, [0, 25, 26])
    assert (CAPTIONS.blank, CAPTIONS.num_classes, CAPTIONS.encode("don't")) == (28, 29, [3, 14, 13, 27, 19])
    assert CAPTIONS.decode([3, 14, 13, 27, 19, 28, -1, 40]) == "don't"  # blank, padding and out-of-range dropped
    with pytest.raises(ValueError, match=r"character \"'\" in \"don't\" is not in the GRID alphabet"):
        GRID.encode("don't")
    with pytest.raises(ValueError, match="distinct"):
        Alphabet("twice", "aa")
    with pytest.raises(ValueError, match="unknown alphabet 'latin'"):
        get_alphabet("latin")


def test_recorded_alphabets_are_read_back_and_old_records_mean_grid():
    assert alphabet_from_record(None) is GRID  # checkpoints from before alphabets, the example's file
    assert alphabet_from_record({"characters": GRID.characters, "blank": 27}) is GRID  # older ONNX metadata
    assert alphabet_from_record(CAPTIONS.to_dict()) is CAPTIONS and alphabet_from_record("captions") is CAPTIONS
    assert alphabet_from_record({"name": "x", "characters": "ab ", "blank": 3}).num_classes == 4
    with pytest.raises(ValueError, match="blank at 0"):
        alphabet_from_record({"characters": "ab ", "blank": 0})
    assert choose_alphabet("auto", None, ["bin blue"]) is GRID
    assert choose_alphabet("auto", None, ["bin blue", "it's"]) is CAPTIONS
    assert choose_alphabet("auto", CAPTIONS, ["bin blue"]) is CAPTIONS  # a checkpoint keeps its own
    assert choose_alphabet("grid", CAPTIONS, ["it's"]) is GRID


def test_decoders_and_timings_spell_with_the_alphabet_given():
    lp = _peaky("it's ok", CAPTIONS)
    assert greedy_decode(lp, CAPTIONS) == beam_decode(lp, 4, CAPTIONS) == "it's ok"
    assert decode_batch(lp[None], method="beam", beam_width=4, alphabet=CAPTIONS) == ["it's ok"]
    with pytest.raises(ValueError, match=r"\(T, 28\).*grid alphabet"):
        greedy_decode(lp)  # 29 classes are not GRID's
    words = word_timings(lp, "it's ok", 25, alphabet=CAPTIONS.characters)
    assert [w.word for w in words] == ["it's", "ok"] and words[0].start == 0 and words[1].start == 10 / 25


def _params(folder: Path) -> dict[str, np.ndarray]:
    return {k: v.asnumpy() for k, v in mx.nd.load(str(folder / "model.params")).items()}


def test_fine_tuning_a_grid_checkpoint_to_captions_keeps_every_layer_but_the_output(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    clips = tmp_path / "clips"
    write_fake_clips(clips)
    grid_run = tmp_path / "grid"
    assert main.main([f"image_path={clips}", f"save_dir={grid_run}", *TINY, "epochs=1", "lr=3e-3"]) == 0
    grid_meta = json.loads((grid_run / "last" / "meta.json").read_text())
    assert grid_meta["alphabet"] == GRID.to_dict()  # auto: every sentence is GRID's
    before = _params(grid_run / "last")

    tuned = tmp_path / "captions"
    caplog.set_level("INFO", logger="lipnet")
    # lr 0: the loaded layers stay as they were, so what was kept can be compared exactly.
    assert main.main([f"image_path={clips}", f"save_dir={tuned}", *TINY, "epochs=1", "lr=0",
                      f"model_path={grid_run / 'last'}", "fine_tune=true", "alphabet=captions"]) == 0
    assert any("to the captions alphabet (29 classes): every layer but the output is loaded" in r.getMessage()
               for r in caplog.records)
    meta = json.loads((tuned / "last" / "meta.json").read_text())
    assert meta["alphabet"] == CAPTIONS.to_dict() and meta["config"]["num_classes"] == 29
    assert meta["state"]["epoch"] == 1  # a new run from epoch 0, not a resume of the GRID run's
    after = _params(tuned / "last")
    assert after.keys() == before.keys()
    for name in before:
        if name.startswith("dense."):
            assert after[name].shape[0] == 29 and before[name].shape[0] == 28
        else:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)

    network = MXNetLipNet(load_lipnet(tuned / "last"), [mx.cpu()])
    assert network.alphabet is CAPTIONS
    assert network.log_probs(np.zeros((1, 3, 75, 24, 48), np.float32)).shape == (1, 75, 29)

    # Resuming the captions run with alphabet=auto keeps captions: no second fine-tune.
    caplog.clear()
    assert main.main([f"image_path={clips}", f"save_dir={tuned}", *TINY, "epochs=2", "lr=0",
                      f"model_path={tuned / 'last'}"]) == 0
    assert not any("fine-tuning" in r.getMessage() for r in caplog.records)
    assert json.loads((tuned / "last" / "meta.json").read_text())["state"]["epoch"] == 2


def test_a_checkpoint_whose_output_does_not_fit_its_alphabet_is_refused(tmp_path: Path):
    clips = tmp_path / "clips"
    write_fake_clips(clips, speakers=3, per_speaker=2)
    assert main.main([f"image_path={clips}", f"save_dir={tmp_path / 'run'}", *TINY, "epochs=1"]) == 0
    meta_path = tmp_path / "run" / "last" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["alphabet"] = CAPTIONS.to_dict()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="28 output classes but its captions alphabet needs 29"):
        load_lipnet(tmp_path / "run" / "last")


def test_an_onnx_export_carries_the_checkpoints_alphabet_and_reading_uses_it(tmp_path: Path):
    from model.checkpoint import save_checkpoint
    from model.lipnet import LipNet, LipNetConfig
    from utils import export_onnx
    from utils.reading.onnx_network import OnnxLipNet

    net = LipNet(LipNetConfig(channels=(4, 4, 4), hidden=8, width=48, height=24, num_classes=CAPTIONS.num_classes))
    net.initialize()
    folder = save_checkpoint(tmp_path / "best", net, None, {"normalisation": {"mean": [0.5] * 3, "std": [0.2] * 3},
                                                            "alphabet": CAPTIONS.to_dict()})
    assert export_onnx.main([f"model_path={folder}", f"out={tmp_path / 'x.onnx'}"]) == 0
    network = OnnxLipNet(tmp_path / "x.onnx")
    assert network.alphabet is CAPTIONS and network.meta["alphabet"] == CAPTIONS.to_dict()
    assert network.log_probs(np.zeros((1, 3, 9, 24, 48), np.float32)).shape == (1, 9, 29)
