"""aligned_ctc: a whole clip with an align file is scored word by word over its aligned frames."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

import main
from data_loader import ClipRecord, SentenceDataset, aligned_segments, moved_segments
from model.training.sentence_task import SentenceTask
from tests.fake_data import write_fake_clips
from utils.data.clip_store import save_packed
from utils.text.alphabet import GRID
from utils.text.grid_text import AlignedWord, ctc_min_frames, parse_align

SWWP2S = [AlignedWord("set", 12, 20), AlignedWord("white", 19, 28), AlignedWord("with", 27, 31),
          AlignedWord("p", 30, 36), AlignedWord("two", 36, 44), AlignedWord("soon", 43, 56)]
SWWP2S_WORDS = [w.word for w in SWWP2S]


def test_the_shared_clips_align_is_the_one_these_tests_use(grid_dir: Path):
    assert parse_align(grid_dir / "swwp2s.align") == SWWP2S  # as the fixture model is trained on it


def test_segments_cover_the_clip_in_order_and_hold_their_text():
    segments = aligned_segments(SWWP2S, 75)
    assert segments == [(0, 12, ""), (12, 20, "set "), (20, 28, "white "), (28, 33, "with "), (33, 36, "p "),
                        (36, 44, "two "), (44, 56, "soon"), (56, 75, "")]
    assert [s[0] for s in segments[1:]] == [s[1] for s in segments[:-1]]  # consecutive, no frame twice
    assert all(end - start >= ctc_min_frames(text) for start, end, text in segments)
    # a clip cut short keeps what fits and ends with its last frame; one too short for its words has none
    assert aligned_segments(SWWP2S, 60)[-1] == (56, 60, "")
    assert aligned_segments(SWWP2S, 52)[-1] == (44, 52, "soon")
    assert aligned_segments(SWWP2S, 47) is None  # 3 frames left for "soon"
    assert aligned_segments([AlignedWord("at", 0, 2)], 2) == [(0, 2, "at")]


def _peaky(path: str) -> np.ndarray:
    """(T, classes) log-probabilities putting 0.99 on one class per frame ('-' = blank)."""
    lp = np.full((len(path), GRID.num_classes), np.log(0.01 / (GRID.num_classes - 1)))
    for t, c in enumerate(path):
        lp[t, GRID.blank if c == "-" else GRID.characters.index(c)] = np.log(0.99)
    return lp


def _task(tmp_path: Path, **augment: float) -> SentenceTask:
    """A SentenceTask with only what its losses read: one aligned 75-frame clip and one without an align, each
    frame's pixels holding its index (so a sample shows which clip frames it is made of)."""
    frames = np.broadcast_to(np.arange(75, dtype=np.uint8)[:, None, None, None], (75, 8, 16, 3))
    for name in ("swwp2s", "bbaf2n"):
        save_packed(tmp_path / f"{name}.npz", frames)
    task = SentenceTask.__new__(SentenceTask)
    task.args = SimpleNamespace(aligned_ctc=True, frames=75)
    task.alphabet = GRID
    task.loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    records = [ClipRecord("s1/swwp2s", tmp_path / "swwp2s.npz", "set white with p two soon", tuple(SWWP2S)),
               ClipRecord("s1/bbaf2n", tmp_path / "bbaf2n.npz", "bin blue at f two now")]
    task.train_set = SentenceDataset(records, train=True, **{"flip_prob": 0.0, "jitter_prob": 0.0, **augment})
    task._clip_frames = {}
    return task


def _losses(task: SentenceTask, paths: list[str], labels: list[str], lengths: list[int], indices: list[int],
            epoch: int = 0):
    out = mx.nd.array(np.stack([_peaky(p) for p in paths]))
    ids = np.full((len(labels), 40), -1, np.float32)
    for i, text in enumerate(labels):
        ids[i, :len(text)] = GRID.encode(text)
    args = (out, mx.nd.array(ids), mx.nd.array(lengths), mx.nd.array([len(t) for t in labels]))
    aligned = task._aligned_losses(*args, np.array(indices), epoch).asnumpy()
    return aligned, task.loss_fn(*args).asnumpy()




def _spelt(text: str) -> str:
    """``text`` as a CTC path with no blank but between equal neighbours ("soon": "so-on")."""
    return "".join(c + ("-" if c == d else "") for c, d in zip(text, text[1:] + "_"))


# each segment's text spelt from its first frame, then blanks
SAID = "".join(_spelt(text).ljust(end - start, "-") for start, end, text in aligned_segments(SWWP2S, 75))
EDGES = "set white with" + "-" * 49 + " p two so-on"  # where the memorising model spells it


def test_words_spelt_where_they_were_said_cost_less_than_at_the_edges(tmp_path: Path):
    assert len(SAID) == len(EDGES) == 75
    task = _task(tmp_path)
    sentence = "set white with p two soon"
    aligned, plain = _losses(task, [SAID, EDGES], [sentence, sentence], [75, 75], [0, 0])
    assert abs(plain[0] - plain[1]) < 1.0  # the sentence's CTC loss cannot tell where the words are
    assert aligned[0] < 10.0 < 100 * aligned[0] < aligned[1]
    # the aligned loss is the sum of the segments' CTC losses and the silences' blank costs
    lp = _peaky(SAID)
    expected = 0.0
    for start, end, text in aligned_segments(SWWP2S, 75):
        if not text:
            expected -= lp[start:end, GRID.blank].sum()
            continue
        expected += task.loss_fn(mx.nd.array(lp[None, start:end]), mx.nd.array([GRID.encode(text)]),
                                 mx.nd.array([end - start]), mx.nd.array([len(text)])).asscalar()
    assert aligned[0] == pytest.approx(expected, rel=1e-4)


def test_clips_without_an_align_and_word_samples_keep_the_sentence_loss(tmp_path: Path):
    task = _task(tmp_path, word_prob=1.0)
    word = task.train_set.plan(0, 0, 75)
    assert word.sentence in SWWP2S_WORDS  # a word cut out of the clip (word_prob)
    cases = [(word.sentence.ljust(75, "-"), word.sentence, word.length, 0),
             ("bin blue at f two now" + "-" * 54, "bin blue at f two now", 75, 1)]  # no align file
    aligned, plain = _losses(task, *map(list, zip(*cases)))
    np.testing.assert_allclose(aligned, plain, rtol=1e-5)


def test_moved_segments_follow_deleted_repeated_and_cut_frames():
    segments = aligned_segments(SWWP2S, 75)
    assert moved_segments(segments, np.arange(75)) == segments
    # frame 13 (in "set") deleted, 40 (in "two") repeated, the clip cut after frame 59
    order = np.concatenate([np.arange(13), np.arange(14, 41), [40], np.arange(41, 60)])
    assert moved_segments(segments, order) == [
        (0, 12, ""), (12, 19, "set "), (19, 27, "white "), (27, 32, "with "), (32, 35, "p "), (35, 44, "two "),
        (44, 56, "soon"), (56, 60, "")]
    assert moved_segments(segments, np.arange(50))[-1] == (44, 50, "soon")  # 6 of its 12 frames hold it
    assert moved_segments(segments, np.arange(47)) is None  # 3 do not
    assert moved_segments(segments, np.delete(np.arange(75), [34, 35])) is None  # "p " left with 1 frame


def test_jittered_samples_are_scored_over_the_frames_their_words_went_to(tmp_path: Path):
    task = _task(tmp_path, jitter_prob=0.2, seed=3)
    clip = aligned_segments(SWWP2S, 75)
    moved = 0
    for epoch in range(12):
        frames, _, length, _ = task.train_set[(epoch, 0)]
        source = frames[:length, 0, 0, 0]  # the clip frame behind each sample frame
        segments = task._segments(epoch, 0)
        if segments is None:  # jitter left a word too few frames: the sentence loss
            assert moved_segments(clip, source) is None
            continue
        moved += len(source) != 75 or bool((np.diff(source) != 1).any())
        assert [s[2] for s in segments if s[2]] == [s[2] for s in clip if s[2]]
        assert segments[0][0] == 0 and segments[-1][1] == length
        assert [s[0] for s in segments[1:]] == [s[1] for s in segments[:-1]]
        for start, end, text in segments:
            a, b = next((a, b) for a, b, t in clip if t == text and a <= source[start] < b)
            assert a <= source[start:end].min() and source[start:end].max() < b
    assert moved >= 6  # most samples were jittered and still scored word by word


def test_training_with_aligned_ctc_with_and_without_jitter(tmp_path: Path):
    clips, aligns = tmp_path / "clips", tmp_path / "aligns"
    sentences = write_fake_clips(clips, speakers=2, per_speaker=2)
    for clip_id, sentence in sentences.items():
        words = sentence.split()
        bounds = np.linspace(5000, 70000, len(words) + 1).astype(int)
        lines = ["0 5000 sil", *[f"{a} {b} {w}" for a, b, w in zip(bounds[:-1], bounds[1:], words)], "70000 75000 sil"]
        (aligns / clip_id).parent.mkdir(parents=True, exist_ok=True)
        (aligns / f"{clip_id}.align").write_text("\n".join(lines) + "\n")
    common = [f"image_path={clips}", f"align_path={aligns}", "channels=4,8,8", "hidden=16", "batch_size=2",
              "num_gpus=0", "progress=false", "val_speakers=2", "aligned_ctc=true", "epochs=1"]
    assert main.main([*common, f"save_dir={tmp_path / 'run'}", "jitter_prob=0"]) == 0
    assert (tmp_path / "run" / "last" / "model.params").is_file()
    assert main.main([*common, f"save_dir={tmp_path / 'jitter'}", "jitter_prob=0.3"]) == 0
    assert (tmp_path / "jitter" / "last" / "model.params").is_file()
