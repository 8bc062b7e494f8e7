"""Live reading end to end: the three shared GRID clips, each followed by a second of pause, streamed at
their own pace (utils/video/pacer.py: H.264 in MPEG-TS, as a camera's software or FFmpeg would send
them) into infer.py through a pipe (stdin) or local UDP, read by the model trained on the clips.

Checked: one utterance per clip, in order, with the texts and the stream-second times that reading
the file gives; each printed before the source has sent half a second past its end; the subtitle
files and the recording valid; Ctrl-C reading the utterance in progress and exiting 0; a source that
stops sending counted as lost (exit 1) after ``--stall``; memory level over 4 minutes of stream read as
fast as it goes. Slow: the others stream in real time.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tests.own_videos import GRID_CLIPS
from utils.text.subtitles import read_subtitles
from utils.video.pacer import stream_video
from utils.video.writer import write_video

# realtime: the lines are timed against the stream, so CI runs these alone on the cores (-n 0), after the
# other slow tests: sharing 2 cores with a training test made the first line 0.6 s late.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]
REPO_ROOT = Path(__file__).resolve().parents[2]
PAUSE_FRAMES = 25  # a second of the clip's last frame after each clip
LATENCY = 0.5  # seconds of stream past an utterance's end by which its line must be out


@pytest.fixture(scope="module")
def paused(clips: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three clips one after another, each followed by a second of its last frame (12 s)."""
    parts = [part for name in GRID_CLIPS for part in (clips[name], np.repeat(clips[name][-1:], PAUSE_FRAMES, 0))]
    return write_video(tmp_path_factory.mktemp("live") / "three_paused.mp4", np.concatenate(parts), 25)


@pytest.fixture(scope="module")
def file_reading(real_model: dict, paused: Path) -> list[dict]:
    """The utterances reading the same video as a file gives."""
    done = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={real_model['model']}",
                           f"video={paused}", "num_gpus=0", "progress=false", "format=json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["utterances"]


class LiveRun:
    """infer.py reading a live source in a subprocess; stdout lines kept with the wall time they came."""

    def __init__(self, model: Path, *argv: str, stdin: bool = False, env: dict | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={model}", "num_gpus=0", "format=json", *argv],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env)
        self.lines: list[tuple[float, dict]] = []
        self.errors: list[str] = []
        self.ready = threading.Event()
        self.started: float | None = None  # time.time() when the stream sent its stream time 0
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()
        assert self.ready.wait(120), self.errors

    def _out(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.time(), json.loads(line)))

    def _err(self) -> None:
        for line in self.process.stderr:
            self.errors.append(line.decode().rstrip("\n"))
            if " live (Ctrl-C ends it)" in self.errors[-1]:
                self.ready.set()

    def stream(self, video: Path, target, stop: threading.Event | None = None) -> threading.Thread:
        def send() -> None:
            stream_video(video, target, on_start=lambda t0: setattr(self, "started", t0), stop=stop)
            if target is self.process.stdin:
                try:
                    self.process.stdin.close()
                except BrokenPipeError:
                    pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        return sender

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        time.sleep(0.2)  # the reader threads take the last lines
        return code

    def sent(self, seconds: float, timeout: float = 60) -> None:
        """Wait until the stream has sent ``seconds`` of itself."""
        deadline = time.monotonic() + timeout
        while (self.started is None or time.time() < self.started + seconds) and time.monotonic() < deadline:
            time.sleep(0.02)


def assert_valid_subtitles(folder: Path, stem: str, texts: list[str]) -> None:
    for suffix in (".srt", ".vtt"):
        assert [c.text for c in read_subtitles(folder / f"{stem}{suffix}")] == texts


def test_a_piped_stream_is_read_as_it_happens_with_the_files_texts_and_times(
        real_model: dict, paused: Path, file_reading: list[dict], tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    run = LiveRun(real_model["model"], "video=-", f"subtitles={tmp_path}", f"record={tmp_path / 'read.mp4'}",
                  "show=true", stdin=True, env=env)
    run.stream(paused, run.process.stdin)
    assert run.wait() == 0, run.errors
    utterances = [u for _, u in run.lines]
    assert [u["text"] for u in utterances] == [u["text"] for u in file_reading] == [
        "bin blue at f two now", "lay white by s zero again", "set white with p two soon"]
    for live, whole in zip(utterances, file_reading):
        # Stream seconds, as the file's: the words where the file reading has them. The utterances' edges
        # lie in the silence around the speech, half a second after it live (--pause), where a file's
        # longer pause rule or its longest length put them.
        assert [w["word"] for w in live["words"]] == [w["word"] for w in whole["words"]]
        for said, heard in zip(live["words"], whole["words"]):
            assert said["start"] == pytest.approx(heard["start"], abs=0.13), (live, whole)
        assert live["start"] == pytest.approx(whole["start"], abs=0.5)
        assert live["end"] == pytest.approx(whole["end"], abs=0.5)
    late = [arrived - (run.started + u["end"]) for arrived, u in run.lines]
    assert max(late) < LATENCY, late
    assert any(line.startswith("--show: no display") for line in run.errors)
    assert run.errors[-1].startswith("-: the stream ended; 12.0 s read, 3 utterances")
    texts = [u["text"] for u in utterances]
    assert_valid_subtitles(tmp_path, "stdin", texts)
    with av.open(str(tmp_path / "read.mp4")) as recording:
        assert len(recording.streams.video) == 1 and recording.streams.subtitles[0].codec_context.name == "mov_text"
        cues = [bytes(p)[2:].decode() for p in recording.demux(recording.streams.subtitles[0]) if bytes(p)[2:]]
    assert cues == texts


def test_ctrl_c_reads_the_utterance_in_progress_and_exits_0(real_model: dict, paused: Path, tmp_path: Path):
    run = LiveRun(real_model["model"], "video=-", f"subtitles={tmp_path}", stdin=True)
    run.stream(paused, run.process.stdin)
    run.sent(9.6)  # the third clip's speech is under way
    run.process.send_signal(signal.SIGINT)
    assert run.wait() == 0, run.errors
    utterances = [u for _, u in run.lines]
    assert [u["text"] for u in utterances[:2]] == ["bin blue at f two now", "lay white by s zero again"]
    assert len(utterances) == 3 and utterances[2]["start"] == pytest.approx(8.0, abs=0.13)
    assert utterances[2]["end"] < 10.5
    assert run.errors[-1].startswith("-: stopped;")
    assert_valid_subtitles(tmp_path, "stdin", [u["text"] for u in utterances if u["text"]])


def test_a_udp_stream_that_stops_sending_is_lost_after_the_stall(real_model: dict, paused: Path, tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"udp://127.0.0.1:{port}"
    run = LiveRun(real_model["model"], f"video={url}", "stall=1", f"subtitles={tmp_path}")
    time.sleep(0.5)  # its socket is bound
    stop = threading.Event()
    run.stream(paused, url, stop)
    run.sent(5.0)  # the first utterance is out, the second under way
    stop.set()
    assert run.wait() == 1, run.errors
    utterances = [u for _, u in run.lines]
    assert utterances[0]["text"] == "bin blue at f two now"
    lost = [line for line in run.errors if "lost" in line]
    assert len(lost) == 1 and lost[0].startswith(f"{url}: the stream was lost") and lost == run.errors[-1:]
    assert_valid_subtitles(tmp_path, f"udp_127.0.0.1_{port}", [u["text"] for u in utterances if u["text"]])


def test_a_lost_udp_stream_is_reconnected_and_its_times_go_on(real_model: dict, paused: Path, tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"udp://127.0.0.1:{port}"
    run = LiveRun(real_model["model"], f"video={url}", "stall=1", "reconnect=30")
    time.sleep(0.5)
    stop = threading.Event()
    run.stream(paused, url, stop)
    run.sent(3.5)  # the first utterance is out
    stop.set()
    time.sleep(2.5)  # lost after 1 s without data, then reconnecting
    second = LiveRun.stream(run, paused, url)
    second.join(30)
    time.sleep(1.0)
    run.process.send_signal(signal.SIGINT)
    assert run.wait() == 0, run.errors
    utterances = [u for _, u in run.lines]
    assert [u["text"] for u in utterances] == ["bin blue at f two now", "bin blue at f two now",
                                               "lay white by s zero again", "set white with p two soon"]
    # the stream's time went on through the 2-3 s without it: the second "bin blue" starts after them
    assert utterances[0]["end"] + 2.0 < utterances[1]["start"] < 9.0
    assert utterances[3]["end"] - utterances[1]["start"] > 10
    assert any("reconnecting for up to 30 s" in line for line in run.errors)
    assert any(line.startswith(f"{url}: reconnected after") for line in run.errors)


def test_a_file_read_live_is_paced_and_printed_utterance_by_utterance(real_model: dict, paused: Path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={real_model['model']}",
                           f"video={paused}", "live=true", "num_gpus=0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started > 12.0  # the 12 s video took its own time
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(name, text) for name, _, _, text in lines] == [(str(paused), "bin blue at f two now"), (
        str(paused), "lay white by s zero again"), (str(paused), "set white with p two soon")]
    assert [float(start) for _, start, _, _ in lines] == sorted(float(start) for _, start, _, _ in lines)
    assert f"{paused}: the video ended; 12.0 s read, 3 utterances" in done.stderr


def test_the_largest_face_is_read_live_and_every_face_with_face_all(real_model: dict, clips: dict, tmp_path: Path):
    from tests.own_videos import two_faces

    video = two_faces(clips["bbaf2n"], clips["swwp2s"], tmp_path / "two_faces.mp4")
    texts = {}
    for faces in ("largest", "all"):
        done = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={real_model['model']}",
                               f"video={video}", "live=true", f"face={faces}", "num_gpus=0"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        texts[faces] = [line.split("\t")[3] for line in done.stdout.splitlines()]
    assert texts["largest"] == ["bin blue at f two now"]
    assert sorted(texts["all"]) == ["[face 1] bin blue at f two now", "[face 2] set white with p two soon"]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmRSS:"))) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_memory_stays_level_over_a_long_stream(real_model: dict, clips: dict[str, np.ndarray], tmp_path: Path):
    """Twenty passes of the three clips with their pauses (4 minutes of stream) piped in and read every frame,
    as fast as it goes: the resident memory while the last 20 utterances come out is what it was for the 20
    before the last 30, within 25 MB (6-10 MB more here: the allocator settles slowly). Keeping anything of
    each utterance, even its crops alone (1.1 MB), would add over 40 MB."""
    one_pass = [part for name in GRID_CLIPS for part in (clips[name], np.repeat(clips[name][-1:], PAUSE_FRAMES, 0))]
    stream = write_video(tmp_path / "twenty_passes.ts", np.concatenate(one_pass * 20), 25)
    with open(stream, "rb") as source:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={real_model['model']}",
                                    "video=-", "live=false", "num_gpus=0", "format=json"],
                                   stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        samples = [_rss_mb(process.pid) for _ in process.stdout]  # as each utterance's line comes
        _, errors = process.communicate(timeout=180)
    assert process.returncode == 0, errors.decode()
    assert len(samples) >= 60
    before, last = np.median(samples[10:30]), np.median(samples[-20:])
    assert last - before < 25, (before, last, samples)
