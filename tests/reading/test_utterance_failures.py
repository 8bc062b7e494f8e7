"""One utterance never sinks a batch: an utterance the network or the decoder cannot read (too short for the
grammar, a backend error on its frames) is named on stderr with its video and times, carries its ``error``
in the JSON record, gets no cue and no text, and the rest of that video and every other video are read;
infer.py then exits 1, not 2."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.own_videos import grid_rgb
from utils.reading import sentence_videos
from utils.reading.network import NetworkError
from utils.text.alphabet import GRID
from utils.text.grid_text import is_grid_sentence
from utils.text.subtitles import read_subtitles
from utils.video.utterances import Utterance
from utils.video.writer import write_video

REPO_ROOT = Path(__file__).resolve().parents[2]
TOO_SHORT = r"UndecodableClip: (\d+) frames cannot hold any sentence of the grammar \(it needs at least 20\)"


# ------------------------------------------------------------------------------------------ the reader

def lipreader(utterances: list[Utterance], log_probs, edge_search: int = 0) -> sentence_videos.VideoLipreader:
    """A VideoLipreader with the grammar decoder whose video yields ``utterances`` and whose network is
    ``log_probs`` (clips in, (T, C) log-probabilities out)."""
    reader = object.__new__(sentence_videos.VideoLipreader)
    reader.network = type("Net", (), {"alphabet": GRID})()
    reader.decoder, reader.beam_width, reader.lm, reader.fps = "grammar", 8, None, 25.0
    reader.edge_frames = edge_search
    reader.utterances = type("Reader", (), {"min_frames": 10, "read": lambda self, path, summary, progress:
                                             iter(utterances)})()
    reader.log_probs = log_probs
    return reader


def uniform(clips: list[np.ndarray]) -> list[np.ndarray]:
    """Every class equally likely on every frame: the grammar decoder names some sentence for 20 frames or more."""
    return [np.full((len(c), GRID.num_classes), np.log(1 / GRID.num_classes)) for c in clips]


def utterance(start: float, frames: int, marker: int = 0) -> Utterance:
    crops = np.full((frames, 2, 2, 3), marker, np.uint8)
    return Utterance(0, start, start + frames / 25, crops, 10.0)


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real file for the reader's probe; the utterances come from the stub."""
    return write_video(tmp_path_factory.mktemp("tiny") / "tiny.mp4", [np.zeros((16, 16, 3), np.uint8)] * 5, 25.0)


def test_a_decoder_failure_on_one_utterance_does_not_stop_the_next(tiny_video: Path):
    said = [utterance(0.0, 40), utterance(2.0, 12), utterance(3.0, 30)]  # the middle one: too short for the grammar
    reading = lipreader(said, uniform).read(tiny_video, keep_frames=True)
    first, short, last = reading.utterances
    assert is_grid_sentence(first.text) and is_grid_sentence(last.text) and first.error is last.error is None
    assert short.text == "" and short.words == [] and re.fullmatch(TOO_SHORT.replace(r"(\d+)", "12"), short.error)
    assert len(short.frames) == 12 and short.log_probs.shape == (0, GRID.num_classes)  # the report shows its frames
    assert (short.start, short.end) == pytest.approx((2.0, 2.48))
    assert reading.text() == f"{first.text} {last.text}"
    assert reading.unread == [f"utterance 2.00-2.48 s not read: {short.error}"]
    record = json.loads(sentence_videos.video_json("tiny.mp4", reading, None, False, reading.unread))
    assert [u["error"] for u in record["utterances"]] == [None, short.error, None]
    assert record["error"] is None and record["warnings"] == reading.unread


def test_a_network_error_on_one_utterance_is_that_utterances(tiny_video: Path):
    def network(clips: list[np.ndarray]) -> list[np.ndarray]:
        if clips[0][0, 0, 0, 0] == 7:
            raise NetworkError("onnxruntime could not read a batch of shape (1, 3, 30, 2, 2): Fail: out of memory")
        return uniform(clips)

    said = [utterance(0.0, 30), utterance(2.0, 30, marker=7), utterance(4.0, 30)]
    reading = lipreader(said, network).read(tiny_video)
    assert [u.error for u in reading.utterances] == [None, "NetworkError: onnxruntime could not read a batch of shape "
                                                     "(1, 3, 30, 2, 2): Fail: out of memory", None]
    assert all(is_grid_sentence(reading.utterances[i].text) for i in (0, 2))


def test_edge_search_skips_trims_too_short_for_the_grammar(tiny_video: Path):
    """Trims that leave fewer frames than the grammar needs rank last instead of failing the utterance."""
    reading = lipreader([utterance(0.0, 22)], uniform, edge_search=10).read(tiny_video)
    (result,) = reading.utterances
    assert result.error is None and is_grid_sentence(result.text) and len(result.log_probs) >= 20
    (result,) = lipreader([utterance(0.0, 18)], uniform, edge_search=4).read(tiny_video).utterances
    assert re.fullmatch(TOO_SHORT.replace(r"(\d+)", "18"), result.error)  # no trim can: the whole one's reason


def test_mxnet_errors_come_as_network_errors(tmp_path: Path):
    from model.mxnet_network import MXNetLipNet
    from tests.reading.test_infer import make_checkpoint

    network = MXNetLipNet.load(make_checkpoint(tmp_path / "best"), 0)
    batch = np.zeros((1, 4, 10, network.height, network.width), np.float32)  # four channels: the net takes three
    with pytest.raises(NetworkError, match=r"MXNet could not read a batch of shape \(1, 4, 10, 32, 64\): .*Shape"):
        network.log_probs(batch)


# ------------------------------------------------------------------------------------------ infer.py

@pytest.fixture(scope="module")
def videos(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.mp4: bbaf2n's sentence, 1.2 s still, then 8 frames of lwbsza's speech and a still end (an utterance
    of about half a second, which no sentence of the grammar fits); b.mp4: lwbsza whole."""
    folder = tmp_path_factory.mktemp("videos")
    first, second = grid_rgb(grid_dir / "bbaf2n.mpg"), grid_rgb(grid_dir / "lwbsza.mpg")
    frames = np.concatenate([first, np.repeat(first[-1:], 30, 0), second[22:30], np.repeat(second[29:30], 20, 0)])
    write_video(folder / "a.mp4", list(frames), 25.0)
    write_video(folder / "b.mp4", list(second), 25.0)
    return folder


def infer(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), "num_gpus=0", "progress=false",
                           "decoder=grammar", "margin=0.1", *argv], capture_output=True, text=True, timeout=600)


def test_an_utterance_too_short_for_the_grammar_is_named_and_the_rest_is_read(real_model: dict, videos: Path,
                                                                             tmp_path: Path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    result = infer(f"model_path={real_model['model']}", f"video={videos}", "format=json", f"subtitles={subs}",
                   f"out={out}")
    assert result.returncode == 1, result.stderr  # some input not read; 2 stays for an unusable checkpoint or input
    a, b = (json.loads(line) for line in result.stdout.splitlines())
    assert (a["file"], b["file"]) == ("a.mp4", "b.mp4") and a["error"] is b["error"] is None
    said, short = a["utterances"]
    assert (said["text"], said["error"]) == ("bin blue at f two now", None)
    assert short["text"] == "" and short["words"] == [] and re.fullmatch(TOO_SHORT, short["error"])
    assert 4.0 <= short["start"] < short["end"] <= a["duration"]  # after the pause
    span = f"utterance {short['start']:.2f}-{short['end']:.2f} s not read: {short['error']}"
    assert a["warnings"] == [span]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {videos / 'a.mp4'}: {span}"]  # the video, the times and the reason
    assert [(u["text"], u["error"]) for u in b["utterances"]] == [("lay white by s zero again", None)]
    assert b["warnings"] == []
    # One cue for each utterance read, none for the one that was not.
    assert [c.text for c in read_subtitles(subs / "a.srt")] == ["bin blue at f two now"]
    assert [c.text for c in read_subtitles(subs / "b.srt")] == ["lay white by s zero again"]
    rows = {r["clip"]: r for r in csv.DictReader((out / "predictions.csv").open())}
    assert rows["a.mp4"]["prediction"] == "bin blue at f two now" and rows["a.mp4"]["warnings"] == span
    assert rows["b.mp4"]["warnings"] == "" and rows["a.mp4"]["error"] == rows["b.mp4"]["error"] == ""
    page = (out / "report.html").read_text()
    assert "2 read (1 with warnings), 0 failed" in page and "not read: UndecodableClip: " in page

    text = infer(f"model_path={real_model['model']}", f"video={videos}")
    assert text.returncode == 1
    assert text.stdout.splitlines() == ["a.mp4\tbin blue at f two now", "b.mp4\tlay white by s zero again"]
    assert [line for line in text.stderr.splitlines() if line.startswith("error:")] == errors


def test_with_face_all_a_face_whose_utterances_all_failed_gets_no_empty_line(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture):
    import argparse

    import infer
    from utils.scoring.report import UtteranceResult
    from utils.video.utterances import StreamSummary

    def said(face: int, start: float, text: str, error: str | None = None) -> UtteranceResult:
        return UtteranceResult(start, start + 1.0, text, [], np.zeros((25, 2, 2, 3), np.uint8),
                               np.zeros((25, GRID.num_classes)), face, error)

    args = argparse.Namespace(face="all", subtitles=None, format="text")
    video = tmp_path / "panel.mp4"
    both = sentence_videos.VideoReading(video, 25.0, StreamSummary(faces=2), [
        said(1, 0.0, "bin blue at f two now"), said(2, 1.0, "", "UndecodableClip: 8 frames cannot hold any")])
    warnings = infer.report_video(args, video, both)
    out, err = capsys.readouterr()
    assert out == "panel.mp4#face1\tbin blue at f two now\n"
    assert "utterance 1.00-2.00 s (face 2) not read: UndecodableClip" in err and len(warnings) == 1
    # Nothing read from any face: the video still gets its one line, as without --face=all.
    none = sentence_videos.VideoReading(video, 25.0, StreamSummary(faces=2), [said(2, 1.0, "", "NetworkError: x")])
    infer.report_video(args, video, none)
    assert capsys.readouterr().out == "panel.mp4\t\n"
