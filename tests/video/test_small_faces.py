"""Small faces (issue #34): a face 45 px wide in a 1280x720 frame is found by the finer pass on both
paths (preprocessing's clip extractor and the own-video stream), its crops match the original clip's,
and they carry a warning naming the video, the times and the face size; a normal clip takes no finer pass."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import infer
from tests.own_videos import grid_rgb
from utils.reading import sentence_videos
from utils.scoring.report import UtteranceResult
from utils.video.mouth_extractor import ENLARGE_LIMIT, MouthExtractor
from utils.video.utterances import StreamSummary, UtteranceReader
from utils.video.writer import write_video

REPO = Path(__file__).resolve().parents[2]
FRAMES = 30  # 1.2 s
FACE = 45  # face width (detector box, pixels) in the 1280x720 video
SIZE = re.compile(r"face about (\d+) px wide")


@pytest.fixture(scope="module")
def extractor() -> MouthExtractor:
    return MouthExtractor()


@pytest.fixture(scope="module")
def original(grid_dir: Path) -> np.ndarray:
    return grid_rgb(grid_dir / "bbaf2n.mpg")[:FRAMES]


@pytest.fixture(scope="module")
def reference(extractor: MouthExtractor, original: np.ndarray) -> np.ndarray:
    """The original clip's crops."""
    return extractor.extract_frames(original).frames


@pytest.fixture(scope="module")
def small_video(extractor: MouthExtractor, original: np.ndarray, tmp_path_factory) -> Path:
    """The clip shrunk so its face box is FACE px wide, pasted on a grey 1280x720 frame."""
    box = extractor.detect_all(cv2.cvtColor(original[0], cv2.COLOR_RGB2GRAY))[0]
    factor = FACE / (box[2] - box[0])
    frames = []
    for frame in original:
        small = cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        canvas = np.full((720, 1280, 3), 128, np.uint8)
        canvas[300: 300 + small.shape[0], 600: 600 + small.shape[1]] = small
        frames.append(canvas)
    folder = tmp_path_factory.mktemp("small") / "s1"  # preprocessing's layout: speaker folders
    folder.mkdir()
    return write_video(folder / "small.mp4", frames, 25.0)


@pytest.fixture
def fine_calls(extractor: MouthExtractor, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per finer pass the extractor runs."""
    calls: list[int] = []
    real = extractor.detect_fine

    def counted(gray: np.ndarray) -> list[np.ndarray]:
        calls.append(1)
        return real(gray)

    monkeypatch.setattr(extractor, "detect_fine", counted)
    return calls


def mean_r(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Pearson correlation of the frames of two crop sequences, frame by frame."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]))


def face_size(note: str | None) -> int:
    assert note is not None
    match = SIZE.search(note)
    assert match, note
    return int(match.group(1))


def test_clip_extractor_finds_a_45px_face_and_warns(extractor, small_video, reference, fine_calls):
    clip = extractor.extract(small_video)
    assert fine_calls  # the fast search alone does not see it
    assert clip.found.mean() >= 0.9
    assert mean_r(clip.frames, reference) >= 0.9
    assert clip.scale > ENLARGE_LIMIT
    assert abs(face_size(clip.small_face) - FACE) <= 6


def test_stream_finds_a_45px_face_and_warns(extractor, small_video, reference, fine_calls):
    utterances = list(UtteranceReader(extractor).read(small_video))
    assert fine_calls
    assert utterances and sum(len(u.frames) for u in utterances) >= FRAMES - 3
    for u in utterances:
        first = int(round(u.start * 25))
        assert mean_r(u.frames, reference[first: first + len(u.frames)]) >= 0.9
        assert abs(face_size(u.small_face) - FACE) <= 6


def test_a_normal_clip_takes_no_finer_pass_and_gets_no_warning(extractor, original, fine_calls, tmp_path):
    video = write_video(tmp_path / "normal.mp4", list(original), 25.0)
    clip = extractor.extract(video)
    utterances = list(UtteranceReader(extractor).read(video))
    assert not fine_calls
    assert clip.small_face is None and clip.found.all()
    assert utterances and all(u.small_face is None for u in utterances)


def test_infer_names_the_video_times_and_face_size(extractor, small_video, capsys):
    """The warning an utterance of the small face carries reaches infer.py's stderr and JSON ``warnings``
    (the network is a stand-in: what is read does not matter here)."""
    from utils.text.alphabet import GRID

    utterance = next(UtteranceReader(extractor).read(small_video))
    lipreader = object.__new__(sentence_videos.VideoLipreader)
    lipreader.network = type("Net", (), {"alphabet": GRID})()
    lipreader.decoder, lipreader.beam_width, lipreader.lm, lipreader.fps = "greedy", 8, None, 25.0
    lipreader.edge_frames = 0
    lipreader.log_probs = lambda clips: [np.log(np.full((len(c), GRID.num_classes), 1 / GRID.num_classes))
                                         for c in clips]
    result = lipreader.read_utterance(utterance)
    reading = sentence_videos.VideoReading(small_video, 25.0, StreamSummary(frames=FRAMES), [result])
    args = argparse.Namespace(face="largest", subtitles=None, format="json")
    warnings = infer.report_video(args, small_video, reading)
    captured = capsys.readouterr()
    times = f"utterance {utterance.start:.2f}-{utterance.end:.2f} s: face about"
    assert len(warnings) == 1 and warnings[0].startswith(times), warnings
    assert f"warning: {small_video}: {times}" in captured.err
    assert json.loads(captured.out)["warnings"] == warnings
    assert abs(face_size(warnings[0]) - FACE) <= 6
    unwarned = UtteranceResult(0.0, 1.0, "", [], None, np.zeros((0, 28)), 0)
    assert sentence_videos.VideoReading(small_video, 25.0, StreamSummary(), [unwarned]).small_faces == []
    assert infer.exit_status([infer.ClipResult("x", "", warnings=warnings)], 0) == 1


def test_preprocessing_records_the_warning_in_the_manifest(small_video, tmp_path):
    src = small_video.parent.parent
    proc = subprocess.run([sys.executable, "utils/preprocess_data.py", f"src_path={src}",
                           f"tgt_path={tmp_path / 'out'}", "n_process=1"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok" and record["frames"] == FRAMES
    assert record["warning"].startswith(f"{small_video}: 0.00-1.20 s: face about"), record
    assert abs(face_size(record["warning"]) - FACE) <= 6
    assert f"warning: {record['warning']}" in proc.stdout
