"""Live reading's outputs and endings without a stream (utils/reading/live_reading.py, infer.py's live
options): a line or JSON object per utterance, flushed; subtitle files valid after every cue; Ctrl-C
caught once; sources and option clashes refused in one line. Streams read end to end with the real
model are in test_live_stream.py."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from utils.reading.live_reading import LiveLipreader, LiveOutput, stop_on_signals
from utils.scoring.report import UtteranceResult
from utils.text.subtitles import read_subtitles
from utils.text.timings import WordTiming

REPO_ROOT = Path(__file__).resolve().parents[2]


def result(start: float, end: float, text: str, error: str | None = None) -> UtteranceResult:
    words = [WordTiming(w, start + i * 0.2, start + i * 0.2 + 0.2, 0.9) for i, w in enumerate(text.split())]
    return UtteranceResult(start, end, text, words, np.zeros((0, 50, 100, 3), np.uint8),
                           np.zeros((0, 28), np.float32), error=error)


def test_each_utterance_is_a_line_and_the_subtitles_are_valid_after_every_cue(tmp_path: Path):
    stream, errors = io.StringIO(), io.StringIO()
    output = LiveOutput("udp://127.0.0.1:5000", "udp_127.0.0.1_5000", subtitles=tmp_path, stream=stream,
                        errors=errors)
    output.start()
    srt, vtt = tmp_path / "udp_127.0.0.1_5000.srt", tmp_path / "udp_127.0.0.1_5000.vtt"
    assert read_subtitles(srt) == [] and read_subtitles(vtt) == []  # there, and valid, before any cue
    output.write(result(0.0, 2.76, "bin blue at f two now"))
    assert [c.text for c in read_subtitles(srt)] == ["bin blue at f two now"]
    output.write(result(3.0, 3.5, ""))  # read as nothing: no line, no cue
    output.write(result(4.0, 4.4, "", error="UndecodableClip: too short"))
    output.write(result(4.24, 7.0, "lay white by s zero again"))
    assert stream.getvalue().splitlines() == ["udp://127.0.0.1:5000\t0.00\t2.76\tbin blue at f two now",
                                              "udp://127.0.0.1:5000\t4.24\t7.00\tlay white by s zero again"]
    assert "utterance 4.00-4.40 s not read: UndecodableClip: too short" in errors.getvalue()
    assert [(c.start, c.end) for c in read_subtitles(vtt)] == [(0.0, 2.76), (4.24, 7.0)]
    assert (output.read, output.unread, list(output.shown)) == (3, 1, ["bin blue at f two now",
                                                                       "lay white by s zero again"])


def test_json_has_the_source_times_words_and_confidence():
    stream = io.StringIO()
    output = LiveOutput("-", "stdin", format="json", stream=stream, errors=io.StringIO())
    output.write(result(1.0, 2.0, "set white"))
    output.write(result(3.0, 3.2, "", error="NetworkError: x"))
    first, second = map(json.loads, stream.getvalue().splitlines())
    assert first == {"source": "-", "start": 1.0, "end": 2.0, "text": "set white", "error": None,
                     "words": [{"word": "set", "start": 1.0, "end": 1.2, "confidence": 0.9},
                               {"word": "white", "start": 1.2, "end": 1.4, "confidence": 0.9}]}
    assert second["error"] == "NetworkError: x" and second["text"] == ""
    assert output._cues == []  # no subtitle files: a read without end keeps no cue


def test_warming_reads_a_blank_utterance_of_every_length_longest_first():
    """Whatever the network builds for a length is built before the source opens, not while it is read."""
    lengths: list[int] = []
    cut = SimpleNamespace(min_frames=10, max_frames=75)
    reader = SimpleNamespace(network=SimpleNamespace(height=50, width=100),
                             utterances=SimpleNamespace(paused_after=lambda pause: cut),
                             log_probs=lambda clips: lengths.extend(len(c) for c in clips))
    LiveLipreader(reader).warm()
    assert lengths == list(range(75, 9, -1))


def test_subtitles_that_cannot_be_written_are_named_once(tmp_path: Path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    errors = io.StringIO()
    output = LiveOutput("-", "stdin", subtitles=blocked, stream=io.StringIO(), errors=errors)
    output.start()
    output.write(result(0.0, 1.0, "bin"))
    assert len(output.failed) == 1 and errors.getvalue().count("cannot write the subtitles of -") == 1


def test_ctrl_c_stops_once_and_interrupts_the_second_time():
    stop, said = threading.Event(), []
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN where started in the background
    with stop_on_signals(stop, said.append):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set() and said[0].startswith("SIGINT: stopping after the utterance in progress")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("argv, message", [
    (["video=gopher://x"], "error: gopher://x: unknown stream type gopher://"),
    (["show=true"], "error: --show, --record and --live=true read a video or stream live"),
    (["video=-", "out=report"], "error: --out reports on files and data sets"),
    (["video=-", "record=x.avi"], "error: --record x.avi: cannot record to a .avi file"),
    (["video=-", "pause=0.1"], "argument --pause: expected a number from 0.2 to 5, got '0.1'"),
    (["video=-", "stall=0"], "argument --stall: expected a number from 0.5 to 3600"),
    (["video=-", "reconnect=-1"], "argument --reconnect: expected a number of at least 0"),
])
def test_live_options_that_cannot_go_together_are_refused_before_the_model_loads(tmp_path: Path, argv: list[str],
                                                                                   message: str):
    done = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={tmp_path / 'none'}", *argv],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert not any(line.startswith("model ") for line in done.stderr.splitlines())  # no model was loaded
    assert done.stdout == ""


def test_a_camera_that_is_not_there_is_one_line_and_exit_2(real_model: dict, tmp_path: Path):
    done = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={real_model['model']}",
                           "video=/dev/video63", "num_gpus=0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert errors == ["error: /dev/video63: no such camera (No such file or directory)"]


def test_a_stream_piped_in_is_read_every_frame_with_live_false(real_model: dict, grid_dir: Path, tmp_path: Path):
    """A recorded stream piped in (here a GRID clip remuxed to MPEG-TS, sent at once): live=false reads every
    frame, dropping none, and prints its utterance in the live format."""
    import av

    ts = tmp_path / "bbaf2n.ts"
    with av.open(str(grid_dir / "bbaf2n.mpg")) as source, av.open(str(ts), "w", format="mpegts") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={real_model['model']}", "video=-",
                           "live=false", "num_gpus=0"], input=ts.read_bytes(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.decode().splitlines()
    name, start, end, text = line.split("\t")
    assert (name, float(start), text) == ("-", 0.0, "bin blue at f two now") and 2.0 < float(end) <= 3.0
    stderr = done.stderr.decode()
    assert "reading - every frame (Ctrl-C ends it)" in stderr
    assert stderr.rstrip().endswith("-: the stream ended; 3.0 s read, 1 utterance")  # no frame dropped


def test_ctrl_c_while_a_stream_is_awaited_ends_cleanly(real_model: dict):
    """A UDP source waits for its sender; Ctrl-C is heard meanwhile (FFmpeg's own wait cannot be interrupted)."""
    import socket
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={real_model['model']}",
                                f"video=udp://127.0.0.1:{port}", "num_gpus=0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if " live (Ctrl-C ends it)" in line:
            break
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and stdout == ""
    assert stderr.rstrip().endswith(f"udp://127.0.0.1:{port}: stopped; 0.0 s read, 0 utterances")
