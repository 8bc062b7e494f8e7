"""Word language models: Kneser-Ney estimation, ARPA files, the lm decoder, utils/build_lm.py, and decoder=lm
in training validation and infer.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from utils import build_lm
from utils.text.alphabet import CAPTIONS, GRID, Alphabet
from utils.text.decoders import beam_decode, decode, greedy_decode
from utils.text.language_model import BOS, EOS, UNK, estimate, read_arpa
from utils.text.lm_decoder import LMDecoder, lm_decoder_for

CORPUS = ["bin blue at f two now", "bin red at a one please", "place green by b two soon",
          "set white with c three again", "lay blue in d four now", "san francisco is in california",
          "new york is big", "new york new york", "i love new york", "it's a new day"]


def _sentences(lines: list[str] = CORPUS) -> list[list[str]]:
    return [line.split() for line in lines]


def _log_probs(frames: list[dict[str, float]], alphabet: Alphabet = GRID) -> np.ndarray:
    """One frame per dict of character -> probability ('-' the blank); the rest share what is left."""
    lp = np.empty((len(frames), alphabet.num_classes))
    for t, probs in enumerate(frames):
        rest = (1.0 - sum(probs.values())) / (alphabet.num_classes - len(probs))
        lp[t] = np.log(rest)
        for c, p in probs.items():
            lp[t, alphabet.blank if c == "-" else alphabet.encode(c)[0]] = np.log(p)
    return lp


def _spell(text: str, p: float = 0.9) -> list[dict[str, float]]:
    frames = []
    for c in text:
        frames += [{c: p}, {"-": p}]
    return frames


def test_kneser_ney_is_a_distribution_in_every_context_and_survives_an_arpa_round_trip(tmp_path: Path):
    model = estimate(_sentences(), order=3)
    vocabulary = model.vocabulary + [EOS, UNK]
    for context in [(), (BOS,), (BOS, "new"), ("new", "york"), ("york",), ("unseen", "words"), ("bin", "blue")]:
        total = sum(10 ** model.log10_prob(context, w) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9), context
    # Continuation counts: "york" is frequent but only ever after "new"; "is" follows three different words.
    assert model.log10_prob(("zzz",), "york") < model.log10_prob(("zzz",), "is")
    assert model.log10_prob((BOS, "new"), "york") > -0.3  # seen: most of the mass
    path = tmp_path / "lm.arpa"
    path.write_text(model.to_arpa())
    back = read_arpa(path)
    assert back.order == 3 and back.vocabulary == model.vocabulary
    for sentence in ["new york is big", "bin blue at f two now", "california is new", "it's zzz"]:
        assert back.sentence_log10_prob(sentence.split()) == pytest.approx(
            model.sentence_log10_prob(sentence.split()), abs=1e-5)


def test_lm_decoding_prefers_the_lexicon_sentence_to_an_acoustically_better_non_word():
    frames = _spell("bim blue")
    frames[4] = {"m": 0.5, "n": 0.4}  # "bim" is a little more likely than "bin" to the network
    lp = _log_probs(frames)
    assert greedy_decode(lp) == beam_decode(lp, 25) == "bim blue"
    decoder = LMDecoder(estimate(_sentences()), GRID, beam_width=25)
    assert decoder.decode(lp) == decode(lp, "lm", alphabet=GRID, lm=decoder) == "bin blue"
    assert all(word in decoder.lm.vocabulary for text, _ in decoder.beams(lp)[:3] for word in text.split())


def test_the_language_model_decides_between_two_words_by_their_context():
    lines = CORPUS + ["new day"] * 3 + ["new yolk"]  # both words are in the lexicon; "york" follows "new" more
    frames = _spell("new yolk")
    frames[12] = {"l": 0.5, "r": 0.4}
    lp = _log_probs(frames)
    assert beam_decode(lp) == "new yolk"
    assert LMDecoder(estimate(_sentences(lines)), GRID).decode(lp) == "new york"
    assert LMDecoder(estimate(_sentences(lines)), GRID, lm_weight=0.0, word_bonus=0.0).decode(lp) == "new yolk"


def test_lm_decoding_spells_with_the_captions_alphabet():
    decoder = LMDecoder(estimate(_sentences()), CAPTIONS)
    frames = _spell("it's a new day")
    frames[2] = {"'": 0.45, "s": 0.5}  # "its" is not a word of the lexicon, "it's" is
    assert decoder.decode(_log_probs(frames, CAPTIONS)) == "it's a new day"
    with pytest.raises(ValueError, match="captions alphabet, the network with the grid alphabet"):
        decode(_log_probs(_spell("a")), "lm", alphabet=GRID, lm=decoder)
    with pytest.raises(ValueError, match="needs a language model: give lm_path"):
        decode(_log_probs(_spell("a")), "lm")


def test_missing_and_corrupt_lm_files_are_clear_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.arpa: no such language model file"):
        lm_decoder_for("lm", tmp_path / "nope.arpa", GRID)
    with pytest.raises(ValueError, match="needs a language model"):
        lm_decoder_for("lm", None, GRID)
    assert lm_decoder_for("beam", None, GRID) is None
    good = estimate(_sentences()).to_arpa()
    cases = {"truncated.arpa": (good[: len(good) // 2], "truncated ARPA language model"),
             "garbage.arpa": ("hello world\n", r"not an ARPA language model \(no \\data\\"),
             "badline.arpa": (good.replace("\\2-grams:\n", "\\2-grams:\nnot-a-number x y\n"),
                              r"badline.arpa:\d+: not an ARPA language model: expected 'log10-prob 2 words"),
             "counts.arpa": (good.replace("ngram 1=", "ngram 1=9"), r"\\data\\ says 9\d+ 1-grams")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            read_arpa(tmp_path / name)
    (tmp_path / "binary.arpa").write_bytes(b"\x89\xff\xfe\x00" * 10)
    with pytest.raises(ValueError, match="binary.arpa: not"):
        read_arpa(tmp_path / "binary.arpa")


def test_build_lm_from_a_text_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    text = tmp_path / "talk.txt"
    text.write_text("Hello, World!\nDon't PANIC.\n\n42 is the answer\nhello again\n")
    out = tmp_path / "models" / "talk.arpa"
    assert build_lm.main([f"text={text}", f"out={out}", "order=2", "progress=false"]) == 0
    assert "4 sentences, 8 words" in capsys.readouterr().err
    model = read_arpa(out)
    assert model.order == 2
    assert model.vocabulary == ["again", "answer", "don't", "hello", "is", "panic", "the", "world"]
    assert model.log10_prob(("hello",), "world") > model.log10_prob(("hello",), "panic")
    assert [p.name for p in out.parent.iterdir()] == ["talk.arpa"]  # written atomically: no temporary left
    assert build_lm.main([f"text={tmp_path / 'none.txt'}", f"out={out}", "progress=false"]) == 2
    (tmp_path / "empty.txt").write_text("123\n\n")
    assert build_lm.main([f"text={tmp_path / 'empty.txt'}", f"out={out}", "progress=false"]) == 2
    assert "no sentences" in capsys.readouterr().err


def test_build_lm_from_a_data_folder_takes_the_training_side(tmp_path: Path):
    from tests.fake_data import write_fake_clips

    made = write_fake_clips(tmp_path / "clips")
    train, every = tmp_path / "train.arpa", tmp_path / "all.arpa"
    common = [f"image_path={tmp_path / 'clips'}", "align_path=/nonexistent", "val_speakers=3", "progress=false"]
    assert build_lm.main([*common, f"out={train}"]) == 0
    assert build_lm.main([*common, f"out={every}", "side=all"]) == 0
    # "five" is said only in s3/lrbe5s, a validation clip.
    assert "five" in made["s3/lrbe5s"].split() and not any("five" in s for c, s in made.items() if c[:2] != "s3")
    assert "five" not in read_arpa(train).vocabulary and "five" in read_arpa(every).vocabulary


def test_validation_with_decoder_lm_and_infer_reads_with_the_checkpoints_lm(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture):
    import infer
    import main
    from tests.fake_data import write_fake_clips

    write_fake_clips(tmp_path / "clips")
    lm_path = tmp_path / "grid.arpa"
    assert build_lm.main([f"image_path={tmp_path / 'clips'}", "align_path=/nonexistent", "side=all",
                          f"out={lm_path}", "progress=false"]) == 0
    run = tmp_path / "run"
    assert main.main([f"image_path={tmp_path / 'clips'}", f"save_dir={run}", "channels=4,8,8", "hidden=16",
                      "batch_size=4", "num_gpus=0", "progress=false", "val_speakers=3", "align_path=/nonexistent",
                      "epochs=1", "lr=3e-3", "decoder=lm", f"lm_path={lm_path}", "beam_width=8", "lm_weight=0.7",
                      "word_bonus=2"]) == 0
    meta = json.loads((run / "last" / "meta.json").read_text())
    assert meta["decoder"] == {"method": "lm", "beam_width": 8, "lm_path": str(lm_path.resolve()),
                               "lm_weight": 0.7, "word_bonus": 2.0}
    assert "validation decoder: lm (" in (run / "train.log").read_text()
    lexicon = set(read_arpa(lm_path).vocabulary)
    capsys.readouterr()
    common = [f"model_path={run / 'last'}", f"image_path={tmp_path / 'clips'}", "align_path=/nonexistent",
              "num_gpus=0", "progress=false"]
    assert infer.main(common) == 0  # the checkpoint's decoder: lm with its model and weights
    out = capsys.readouterr()
    assert "decoder lm (" in out.err and "lm_weight 0.7, word_bonus 2.0, beam width 8" in out.err
    predictions = [line[len("[Pred]   "):] for line in out.out.splitlines() if line.startswith("[Pred]")]
    assert predictions and all(set(p.split()) <= lexicon for p in predictions)
    assert infer.main([*common, f"lm_path={tmp_path / 'gone.arpa'}"]) == 2
    assert "error: cannot load the language model: " in capsys.readouterr().err
    assert infer.main([*common, "decoder=greedy"]) == 0
    # An ONNX export carries the lm decoder's settings, and reading with it decodes with the language model.
    from utils import export_onnx

    assert export_onnx.main([f"model_path={run / 'last'}", f"out={tmp_path / 'm.onnx'}"]) == 0
    capsys.readouterr()
    assert infer.main([f"model_path={tmp_path / 'm.onnx'}", *common[1:], "val_speakers=3"]) == 0
    out = capsys.readouterr()
    assert "onnxruntime" in out.err and "lm_weight 0.7, word_bonus 2.0, beam width 8" in out.err
    read = [line[len("[Pred]   "):] for line in out.out.splitlines() if line.startswith("[Pred]")]
    assert len(read) == len(predictions) and all(set(p.split()) <= lexicon for p in read)
    # Training with decoder=lm and a missing model stops before the first epoch.
    assert main.main([f"image_path={tmp_path / 'clips'}", f"save_dir={tmp_path / 'r2'}", "num_gpus=0",
                      "progress=false", "val_speakers=3", "align_path=/nonexistent", "decoder=lm"]) == 2
