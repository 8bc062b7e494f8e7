"""The synthetic corpus: GRID layout and formats, determinism, resuming, and that it needs temporal context."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from utils import synthetic
from utils.data.clip_store import load_clip
from utils.make_synthetic import main
from utils.scoring.sentence_metrics import wer
from utils.text.grid_text import (
    GRAMMAR,
    AlignedWord,
    check_align_matches_name,
    is_grid_sentence,
    parse_align,
    sentence_from_clip_name,
)

SMALL = (48, 24)


def _clip_files(root: Path) -> list[Path]:
    return sorted(root.glob("datasets/s*/*.npz"))


def _align_of(root: Path, clip: Path) -> Path:
    return root / "align" / clip.parent.name / f"{clip.stem}.align"


def _contents(root: Path) -> dict[str, bytes]:
    """The bytes of every file of a corpus, by relative path."""
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


# ---------------------------------------------------------------------------------------------
# The speech model


def test_characters_share_shapes_but_every_word_has_its_own_sequence():
    by_shape: dict[str, list[str]] = {}
    for char, shape in synthetic.CHARACTER_SHAPES.items():
        by_shape.setdefault(shape, []).append(char)
    assert by_shape["C"] == ["b", "m", "p"]
    assert sum(len(chars) == 1 for chars in by_shape.values()) <= 2, "most shapes must be ambiguous"
    assert len(set(synthetic.LETTER_NAMES.values())) == 26, "two letter names would look the same"
    for shape in set(synthetic.SHAPE_NAMES) - {"rest"}:
        assert sum(shape in name for name in synthetic.LETTER_NAMES.values()) >= 3
    vocabulary = {w for slot in GRAMMAR for w in slot.values()}
    sequences = {tuple(synthetic.visible_shapes(w)) for w in vocabulary}
    assert len(sequences) == len(vocabulary), "two GRID words have the same visible shape sequence"
    assert synthetic.visible_shapes("green") == synthetic.visible_shapes("gren"), "a held shape looks like one"


def test_sentences_are_distinct_grid_names_and_a_stable_prefix():
    names = synthetic.speaker_sentences(0, 1, 300)
    assert len(set(names)) == 300
    assert all(is_grid_sentence(sentence_from_clip_name(n)) for n in names)
    assert synthetic.speaker_sentences(0, 1, 40) == names[:40]
    assert synthetic.speaker_sentences(0, 2, 40) != names[:40]
    assert {synthetic.sentence_code(i) for i in (0, 1, synthetic.N_SENTENCES - 1)} == {"bbaaza", "bbaazn", "swwz9s"}
    with pytest.raises(ValueError, match="outside"):
        synthetic.sentence_code(synthetic.N_SENTENCES)


def test_speakers_look_and_speak_differently():
    one, two = synthetic.make_speaker(0, 1), synthetic.make_speaker(0, 2)
    assert not np.allclose(one.skin, two.skin)
    assert (one.scale, one.centre, one.rate) != (two.scale, two.centre, two.rate)
    assert np.array_equal(synthetic.make_speaker(0, 1).skin, one.skin)


def test_plan_follows_grid_timing():
    name = "pgwz7p"  # place green with z seven please: the longest sentence must still fit
    for index in range(20):
        plan = synthetic.clip_plan(0, 5, index, name)
        starts = [s for s, _, _ in plan.segments]
        ends = [e for _, e, _ in plan.segments]
        assert starts[0] == 0 and ends[-1] == synthetic.ALIGN_END and starts[1:] == ends[:-1]
        assert plan.segments[0][2] == plan.segments[-1][2] == "sil"
        assert 8000 <= plan.segments[0][1] <= 16000, "leading silence is about half a second"
        assert plan.segments[-1][1] - plan.segments[-1][0] >= 4000
        assert all(t % 250 == 0 for t in starts)
        assert " ".join(w for _, _, w in plan.words) == sentence_from_clip_name(name)
        assert all(e - s >= 2000 for s, e, _ in plan.words)
        shapes = plan.frame_shapes()
        assert shapes[0] == shapes[-1] == synthetic.REST
        assert len(set(shapes.tolist())) >= 5


# ---------------------------------------------------------------------------------------------
# Writing a corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    report = synthetic.generate(root, [1, 3], 8, seed=7, size=SMALL, n_process=1, progress=False)
    assert (report.written, report.skipped, report.errors) == (16, 0, [])
    return root


def test_clips_and_aligns_load_back_in_grid_layout(corpus: Path):
    clips = _clip_files(corpus)
    assert sorted({c.parent.name for c in clips}) == ["s1", "s3"] and len(clips) == 16
    for clip in clips:
        frames = load_clip(clip)
        assert frames.shape == (75, SMALL[1], SMALL[0], 3) and frames.dtype == np.uint8
        assert frames.std() > 5 and np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() > 1
        words = parse_align(_align_of(corpus, clip))
        check_align_matches_name(words, clip.stem)
        lines = _align_of(corpus, clip).read_text().splitlines()
        assert _align_of(corpus, clip).stat().st_mode & 0o644 == 0o644
        assert lines[0].startswith("0 ") and lines[0].endswith(" sil") and lines[-1].endswith(" 74500 sil")
    assert not list(corpus.rglob("*.tmp"))


def test_same_seed_same_bytes_and_parallel_matches_serial(corpus: Path, tmp_path: Path):
    synthetic.generate(tmp_path / "again", [1, 3], 8, seed=7, size=SMALL, n_process=2, progress=False)
    assert _contents(tmp_path / "again") == _contents(corpus)
    synthetic.generate(tmp_path / "other", [1, 3], 8, seed=8, size=SMALL, progress=False)
    other = _contents(tmp_path / "other")
    assert set(other) != set(_contents(corpus)), "another seed should draw other sentences"
    frames_8, _ = synthetic.render_clip(8, 1, 0, "bbaf2n", SMALL)
    frames_7, _ = synthetic.render_clip(7, 1, 0, "bbaf2n", SMALL)
    assert not np.array_equal(frames_7, frames_8)


def test_resumes_and_grows_without_redrawing(tmp_path: Path):
    root = tmp_path / "c"
    synthetic.generate(root, [2], 3, seed=7, size=SMALL, progress=False)
    first = _clip_files(root)
    before = {c: c.stat().st_mtime_ns for c in first}
    first[0].unlink()
    _align_of(root, first[1]).unlink()  # interrupted between writing the clip and its align
    (first[2].parent / ".half.written.tmp").write_bytes(b"junk")  # an interrupted write's leftover
    report = synthetic.generate(root, [2], 5, seed=7, size=SMALL, progress=False)
    assert (report.written, report.skipped, report.errors) == (4, 1, [])
    assert len(report.clip_ids) == 5 and all(cid.startswith("s2/") for cid in report.clip_ids)
    assert first[2].stat().st_mtime_ns == before[first[2]]
    assert first[0].is_file() and _align_of(root, first[1]).is_file()
    report = synthetic.generate(root, [2], 5, seed=7, size=SMALL, progress=False)
    assert (report.written, report.skipped) == (0, 5)


def test_a_failing_clip_is_reported_and_the_rest_written(tmp_path: Path):
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "s2").write_text("a file where a speaker folder should be")
    report = synthetic.generate(tmp_path, [1, 2], 2, seed=0, size=SMALL, progress=False)
    assert report.written == 2 and len(report.errors) == 2
    assert all("datasets/s2/" in e and "could not write" in e for e in report.errors)
    assert len(_clip_files(tmp_path)) == 2


def test_rejects_bad_requests(tmp_path: Path):
    with pytest.raises(ValueError, match="too small"):
        synthetic.generate(tmp_path, [1], 1, size=(4, 2), progress=False)
    with pytest.raises(ValueError, match="clips_per_speaker"):
        synthetic.generate(tmp_path, [1], synthetic.N_SENTENCES + 1, progress=False)


# ---------------------------------------------------------------------------------------------
# The command line


def test_script_writes_the_corpus_with_every_flag(tmp_path: Path, capsys: pytest.CaptureFixture):
    argv = ["--speakers=2,4", "clips_per_speaker=2", "--size", "32x16", "--seed", "3", "--n_process", "2",
            "--tgt_path", str(tmp_path)]
    assert main(argv) == 0
    clips = _clip_files(tmp_path)
    assert sorted({c.parent.name for c in clips}) == ["s2", "s4"] and len(clips) == 4
    assert load_clip(clips[0]).shape == (75, 16, 32, 3)
    assert [c.stem for c in clips if c.parent.name == "s2"] == sorted(synthetic.speaker_sentences(3, 2, 2))
    assert "4 clips written" in capsys.readouterr().out
    assert main(argv) == 0 and "0 clips written, 4 already present" in capsys.readouterr().out


def test_script_reports_failures_with_exit_status(tmp_path: Path):
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "s1").write_text("not a folder")
    assert main(["--speakers", "1", "--clips_per_speaker", "1", "--size", "32x16", "--tgt_path", str(tmp_path)]) == 1
    with pytest.raises(SystemExit):
        main(["--size", "wide"])
    with pytest.raises(SystemExit):
        main(["--clips_per_speaker", "0"])


def test_preview_writes_a_png_strip_and_no_corpus(tmp_path: Path):
    path = tmp_path / "asset" / "strip.png"
    assert main(["--preview", str(path), "--speakers", "1-2", "--size", "48x24", "--tgt_path", str(tmp_path)]) == 0
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 2 * 24 * 2 and image.shape[1] >= 8 * 48 * 2
    assert not (tmp_path / "datasets").exists()


# ---------------------------------------------------------------------------------------------
# A reader that sees one frame at a time cannot read it; the shape sequence can


def _frame_features(frames: np.ndarray) -> np.ndarray:
    """Downsampled pixels minus the clip's mean frame: removes most of the speaker's appearance."""
    small = np.stack([cv2.resize(f, (24, 12), interpolation=cv2.INTER_AREA) for f in frames])
    small = small.reshape(len(frames), -1).astype(np.float64)
    return (small - small.mean(0)) / (small.std() + 1e-6)


def _char_at_frames(word: AlignedWord) -> list[str]:
    """The character being said at each frame of a word, its characters spread evenly over its frames."""
    n = word.end - word.start
    return [word.word[(f * len(word.word)) // n] for f in range(n)]


def _ridge_classifier(x: np.ndarray, labels: np.ndarray, classes: int):
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(xb.T @ xb + 10.0 * np.eye(xb.shape[1]), xb.T @ np.eye(classes)[labels])
    return lambda z: (np.hstack([z, np.ones((len(z), 1))]) @ w).argmax(1)


def _collapse(seq: list) -> list:
    return [v for i, v in enumerate(seq) if i == 0 or v != seq[i - 1]]


@pytest.fixture(scope="module")
def readable_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    seed, per_speaker = 11, 20
    root = tmp_path_factory.mktemp("baseline")
    synthetic.generate(root, range(1, 7), per_speaker, seed=seed, size=SMALL, progress=False)
    clips = []
    for clip in _clip_files(root):
        speaker = int(clip.parent.name[1:])
        index = synthetic.speaker_sentences(seed, speaker, per_speaker).index(clip.stem)
        clips.append({
            "index": index,
            "features": _frame_features(load_clip(clip)),
            "words": parse_align(_align_of(root, clip)),
            "shapes": synthetic.clip_plan(seed, speaker, index, clip.stem).frame_shapes(),
        })
    return clips


def test_a_per_frame_reader_cannot_read_it_but_the_shape_sequence_can(readable_corpus: list[dict]):
    train = [c for c in readable_corpus if c["index"] < 15]
    test = [c for c in readable_corpus if c["index"] >= 15]

    def frames(clips: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, chars, shapes = [], [], []
        for clip in clips:
            for word in clip["words"]:
                x.append(clip["features"][word.start:word.end])
                chars += [ord(c) - ord("a") for c in _char_at_frames(word)]
                shapes.append(clip["shapes"][word.start:word.end])
        return np.concatenate(x), np.array(chars), np.concatenate(shapes)

    x, chars, shapes = frames(train)
    read_char = _ridge_classifier(x, chars, 26)
    read_shape = _ridge_classifier(x, shapes, len(synthetic.SHAPE_NAMES))
    x_test, chars_test, shapes_test = frames(test)
    char_accuracy = (read_char(x_test) == chars_test).mean()
    shape_accuracy = (read_shape(x_test) == shapes_test).mean()

    references, per_frame, by_sequence = [], [], []
    for clip in test:
        references.append(" ".join(w.word for w in clip["words"]))
        frame_words, sequence_words = [], []
        for slot, word in zip(GRAMMAR, clip["words"]):  # word boundaries given: only reading is tested
            pixels = clip["features"][word.start:word.end]
            frame_words.append("".join(chr(ord("a") + c) for c in _collapse(read_char(pixels).tolist())))
            seen = _collapse(read_shape(pixels).tolist())
            sequence_words.append(min(slot.values(),
                                      key=lambda w: Levenshtein.distance(seen, synthetic.visible_shapes(w))))
        per_frame.append(" ".join(frame_words))
        by_sequence.append(" ".join(sequence_words))

    print(f"per-frame character accuracy {char_accuracy:.2f}, shape accuracy {shape_accuracy:.2f}, "
          f"per-frame WER {wer(references, per_frame):.2f}, shape-sequence WER {wer(references, by_sequence):.2f}")
    assert shape_accuracy > 0.6, "the mouth shapes themselves should be easy to see"
    assert char_accuracy < shape_accuracy - 0.2, "a frame should not tell which character it belongs to"
    assert wer(references, per_frame) > 0.5
    assert wer(references, by_sequence) < 0.3, "the sequence of shapes should spell the words"
