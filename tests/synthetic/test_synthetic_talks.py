"""Synthetic captioned talks (utils/synthetic/talks.py, face.py, make_synthetic.py --talks)."""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils import make_synthetic
from utils.synthetic import make_speaker, render_frames
from utils.synthetic.face import make_face_style, mouth_centre
from utils.synthetic.talks import (
    CHARACTER_TARGETS,
    CUE_MARGIN,
    FPS,
    MAX_SPEECH,
    PAUSE,
    VISEMES,
    generate_talks,
    max_characters,
    plan_talk,
    render_talk,
    talk_sentences,
    text_sentences,
)
from utils.text.captions import CHARACTERS, normalise_text, read_captions
from utils.video.mouth_extractor import MOUTH, MouthExtractor, load_models
from utils.video.reader import probe
from utils.video.utterances import UtteranceReader, speaking_frames


def test_every_caption_character_has_a_mouth_target_alike_within_its_viseme_class_only():
    assert set(CHARACTER_TARGETS) == set(CHARACTERS) - {" "}
    assert sorted("".join(letters for letters, _ in VISEMES.values())) == sorted(CHARACTER_TARGETS)
    cls = {c: name for name, (letters, _) in VISEMES.items() for c in letters}
    for a, b in itertools.combinations(CHARACTER_TARGETS, 2):
        distance = np.abs(np.subtract(CHARACTER_TARGETS[a], CHARACTER_TARGETS[b])).max()
        if cls[a] == cls[b]:
            assert 0 < distance < 0.05, (a, b)  # told apart by less than a said target's jitter
        else:
            assert distance >= 0.3, (a, b)  # another viseme: clearly another mouth


def test_grammar_sentences_are_written_as_captions_and_fit_a_cue():
    sentences = talk_sentences(seed=0, speaker=1, talk=0, count=40)
    assert len(set(sentences)) > 30
    assert all(s[0].isupper() and s[-1] in ".!?" for s in sentences)
    assert any(any(c.isdigit() for c in s) for s in sentences) and any("'" in s for s in sentences)
    assert all(0 < len(normalise_text(s)[0]) <= max_characters() for s in sentences)
    assert talk_sentences(0, 1, 0, 40) == sentences and talk_sentences(0, 2, 0, 40) != sentences


def test_text_is_split_into_sentences_that_can_be_said():
    text = ("In the beginning God created the heaven and the earth. Short one!\n"
            "A line without a stop\n[Music]\nSupercalifragilisticexpialidociousnesses")
    pieces = text_sentences(text, 27)
    assert pieces[-2:] == ["Short one!", "A line without a stop"]
    assert " ".join(pieces[:-2]) == "In the beginning God created the heaven and the earth."
    assert all(0 < len(normalise_text(p)[0]) <= 27 for p in pieces)


def test_plan_has_one_cue_per_sentence_with_pauses_between():
    written = ["The 3 boats are red.", "Don't stop.", "Where is it?"]
    plan = plan_talk(written, make_speaker(0, 1), np.random.default_rng(0))
    assert [c.text for c in plan.cues] == written
    assert plan.spoken == ("the three boats are red", "don't stop", "where is it")
    for cue, said in zip(plan.cues, plan.spoken):
        assert cue.end - cue.start <= MAX_SPEECH + 2 * CUE_MARGIN + 1e-9
        assert (cue.end - cue.start) * FPS >= len(said)  # CTC has a frame for every character
    for a, b in zip(plan.cues, plan.cues[1:]):
        assert PAUSE[0] - 2 * CUE_MARGIN <= b.start - a.end <= PAUSE[1]
    assert plan.n_frames / FPS > plan.cues[-1].end
    with pytest.raises(ValueError, match="cannot spell"):
        plan_talk(["Привет"], make_speaker(0, 1), np.random.default_rng(0))


@pytest.fixture(scope="module")
def frames() -> dict[int, list[np.ndarray]]:
    return {s: list(render_talk(0, s, 0, ["Hello there.", "Bye now."])[0]) for s in (1, 2, 3)}


def test_speakers_differ_and_dlib_finds_their_faces_with_the_mouth_in_place(frames: dict[int, list[np.ndarray]]):
    detector, predictor = load_models()
    means = []
    for speaker, talk in frames.items():
        assert talk[0].shape == (240, 320, 3)
        means.append(np.mean(talk[0], axis=(0, 1)))
        centre = np.array(mouth_centre(make_face_style(0, speaker)))
        for frame in talk[::15]:
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            faces = detector(grey, 0)
            assert len(faces) == 1, f"speaker {speaker}: no face found"
            points = np.array([(p.x, p.y) for p in predictor(grey, faces[0]).parts()])[MOUTH]
            # within head motion (at most 3 pixels each way) and where the landmarks put a mouth centre (the
            # mean of the lip points sits 1-4 pixels below the lip line the drawing is centred on)
            assert np.hypot(*(points.mean(0) - centre)) < 9
    assert min(np.abs(a - b).max() for a, b in itertools.combinations(means, 2)) > 5


def test_the_mouth_moves_while_speaking_and_rests_in_pauses(frames: dict[int, list[np.ndarray]]):
    plan = render_talk(0, 1, 0, ["Hello there.", "Bye now."])[1]
    talk = np.stack(frames[1]).astype(np.float32)
    x, y = (int(v) for v in mouth_centre(make_face_style(0, 1)))
    region = talk[:, y - 12:y + 12, x - 25:x + 25]
    change = np.abs(np.diff(region, axis=0)).mean(axis=(1, 2, 3))
    cue = plan.cues[0]
    speaking = change[int(cue.start * FPS) + 3:int(cue.end * FPS) - 3].mean()
    pause = change[int(cue.end * FPS) + 8:int(plan.cues[1].start * FPS) - 8].mean()
    assert speaking > 3 * pause


def test_talks_are_written_with_subtitles_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture):
    text = tmp_path / "book.txt"
    text.write_text("The 3 boats are red. It's cold!\nWhere is the old man?")
    args = [f"tgt_path={tmp_path / 'talks'}", "talks=2", "speakers=1,4", "sentences_per_talk=2", f"text={text}"]
    assert make_synthetic.main(args) == 0
    talks = tmp_path / "talks"
    assert (talks / "speakers.txt").read_text() == "s1_talk0 s1\ns1_talk1 s1\ns4_talk0 s4\ns4_talk1 s4\n"
    cues = read_captions(talks / "s4_talk1.srt")
    assert len(cues) == 2 and {c.text for c in cues} <= {"The 3 boats are red.", "It's cold!", "Where is the old man?"}
    info = probe(talks / "s4_talk1.mp4")
    assert (info.width, info.height, info.fps) == (320, 240, FPS) and info.duration > cues[-1].end
    stamp = (talks / "s1_talk0.mp4").stat().st_mtime_ns
    assert make_synthetic.main(args) == 0
    assert "0 talks written, 4 already present" in capsys.readouterr().out
    assert (talks / "s1_talk0.mp4").stat().st_mtime_ns == stamp
    report = generate_talks(talks, [1, 4], talks_per_speaker=2, sentences_per_talk=2, seed=0,
                            text=text.read_text(), progress=False)
    assert (report.written, report.skipped) == (0, 4)
    empty = tmp_path / "empty.txt"
    empty.write_text("[Music]\n")
    assert make_synthetic.main([f"tgt_path={tmp_path / 'x'}", "talks=1", "speakers=1", f"text={empty}"]) == 1


def _mouth_frames(speaker: int, sentences: int) -> tuple[np.ndarray, np.ndarray]:
    """Small mouth frames of a speaker's talk, and the character said at each (frames near a character's
    target time only)."""
    style = make_speaker(0, speaker)
    rng = np.random.default_rng([0, speaker])
    plan = plan_talk(talk_sentences(0, speaker, 0, sentences), style, rng)
    mouths = render_frames(plan.trajectory(style, rng), style, rng, (48, 24))
    keys = np.array([c != "" for c in plan.key_chars])  # characters and spaces, not the rests
    times = plan.key_times[keys]
    chars = [c for c in plan.key_chars if c]
    assert "".join(chars) == "".join(plan.spoken)  # one target per character, in the order of the text
    nearest = np.abs(np.arange(plan.n_frames)[:, None] - times[None, :]).argmin(1)
    close = np.abs(np.arange(plan.n_frames) - times[nearest]) < 0.6
    small = np.stack([cv2.resize(m, (24, 12), interpolation=cv2.INTER_AREA) for m in mouths[close]])
    x = small.reshape(len(small), -1).astype(np.float64)
    x = (x - x.mean(0)) / (x.std() + 1e-6)
    return x, np.array([CHARACTERS.index(chars[i]) for i in nearest[close]])


def test_a_frame_shows_which_character_is_said_to_an_unseen_speaker_often_not_always():
    """A linear reader of single mouth frames (uncropped: speakers place and size their mouths
    differently) does better than always guessing the commonest character, and far from perfectly
    (measured 0.30 against 0.17; on landmark-centred 48x24 crops from the videos it reached 0.55)."""
    train = [_mouth_frames(s, 20) for s in (1, 2, 3, 4)]
    x, y = np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])
    x_test, y_test = _mouth_frames(5, 20)
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(xb.T @ xb + 10.0 * np.eye(xb.shape[1]), xb.T @ np.eye(len(CHARACTERS))[y])
    accuracy = ((np.hstack([x_test, np.ones((len(x_test), 1))]) @ w).argmax(1) == y_test).mean()
    chance = np.bincount(y_test).max() / len(y_test)
    print(f"per-frame character accuracy on an unseen speaker {accuracy:.2f} (chance {chance:.2f})")
    assert accuracy > 1.5 * chance, "a frame should carry information about its character"
    assert accuracy < 0.9, "characters of one viseme class should be confusable"


def test_speech_is_motion_that_reaches_the_speech_level_with_its_onset_and_ending():
    motion = np.zeros(40)
    motion[3:8] = 0.012  # a still mouth's jitter bump: above STILL, never SPEECH_LEVEL
    motion[15:30] = [0.009, 0.011, 0.02, 0.04, 0.03, 0.006, 0.02, 0.03, 0.02, 0.01, 0.009, 0.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(speaking_frames(motion), [15, 16, 17, 18, 19, 21, 22, 23, 24, 25])
    assert len(speaking_frames(np.full(10, 0.012))) == 0


def test_a_margin_trims_the_still_mouth_around_each_utterance_to_about_the_cues(tmp_path: Path):
    generate_talks(tmp_path, [3], sentences_per_talk=4, seed=1, progress=False)
    video, cues = tmp_path / "s3_talk0.mp4", read_captions(tmp_path / "s3_talk0.srt")
    extractor = MouthExtractor(size=(48, 24))
    whole = list(UtteranceReader(extractor, max_seconds=4.5).read(video))
    trimmed = list(UtteranceReader(extractor, max_seconds=4.5, margin=0.15).read(video))
    assert len(whole) == len(trimmed) == len(cues)
    for full, cut, cue in zip(whole, trimmed, cues):
        assert full.start <= cut.start < cut.end <= full.end
        assert len(cut.frames) == round((cut.end - cut.start) * FPS)
        # the cue (speech and CUE_MARGIN) is kept, give or take the mouth's first and last movements
        assert cut.start < cue.start + 0.4 and cut.end > cue.end - 0.4, (cut.start, cut.end, cue)
    # cut in the middle of the pauses, the whole utterances hold about a second more of still mouth each
    assert sum(f.end - f.start for f in whole) - sum(c.end - c.start for c in trimmed) > 0.5 * len(cues)
    with pytest.raises(ValueError, match="margin"):
        UtteranceReader(extractor, margin=-1.0)
