"""A video file played as a live source (utils/video/pacer.py, utils/stream_video.py): paced by its timestamps,
decodable by a receiver as it arrives, looping with increasing timestamps, stopped or cut off cleanly."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from utils.video.errors import ExtractionError
from utils.video.pacer import UDP_PACKET, stream_video
from utils.video.writer import write_video

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "utils" / "stream_video.py"
# What a live receiver opens the stream with: read from the first bytes, not after seconds of probing.
LOW_LATENCY = {"probesize": "32", "analyzeduration": "0"}


def synthetic(path: Path, frames: int, size: tuple[int, int] = (64, 48), fps: int = 25) -> Path:
    """A clip whose frame i is grey level 4 i, so that a decoded frame tells which one it is."""
    width, height = size
    return write_video(path, (np.full((height, width, 3), 4 * i, np.uint8) for i in range(frames)), fps)


def decoding(source: io.RawIOBase) -> Iterator[av.VideoFrame]:
    with av.open(source, format="mpegts", options=LOW_LATENCY) as container:
        yield from container.decode(video=0)


def decode(data: bytes) -> list[av.VideoFrame]:
    return list(decoding(io.BytesIO(data)))


def test_a_stream_into_a_pipe_is_paced_and_decodes_as_it_comes(tmp_path: Path):
    clip = synthetic(tmp_path / "two_seconds.mp4", 50)
    read, write = os.pipe()
    received: list[tuple[float, float]] = []

    def receive() -> None:
        with os.fdopen(read, "rb", buffering=0) as pipe:
            received.extend((frame.time, time.monotonic()) for frame in decoding(pipe))

    receiver = threading.Thread(target=receive)
    receiver.start()
    starts: list[float] = []
    began = time.monotonic()
    with os.fdopen(write, "wb") as pipe:
        report = stream_video(clip, pipe, on_start=starts.append)
    taken = time.monotonic() - began
    receiver.join(timeout=10)

    assert report.ended == "done" and report.frames == 50
    assert report.stream_seconds == pytest.approx(2.0, abs=1e-3)
    assert taken >= 1.8, f"2 s of video sent in {taken:.2f} s: not paced"
    assert len(starts) == 1 and abs(starts[0] - time.time()) < taken + 1
    times = [t for t, _ in received]
    assert len(times) == 50 and times[0] < 0.05
    assert all(b > a for a, b in zip(times, times[1:]))
    # Decoded while streaming: the last frame arrived well after the first, not all at the end.
    assert received[-1][1] - received[0][1] > 1.5


def test_loops_and_several_files_keep_timestamps_increasing_at_the_first_files_size(tmp_path: Path):
    first = synthetic(tmp_path / "a.mp4", 5)
    second = synthetic(tmp_path / "b.mp4", 3, size=(96, 72))
    out = io.BytesIO()
    report = stream_video([first, second], out, loops=2)
    frames = decode(out.getvalue())
    assert report.ended == "done" and report.frames == len(frames) == 16
    times = [f.time for f in frames]
    assert times[0] < 0.01 and all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] == pytest.approx(15 * 0.04, abs=0.005)
    assert report.stream_seconds == pytest.approx(16 * 0.04, abs=0.005)
    assert {(f.width, f.height) for f in frames} == {(64, 48)}
    # Frame order follows the files: a's grey levels 0..16, then b's 0..8, twice over.
    levels = [int(np.median(f.to_ndarray(format="gray"))) for f in frames]
    expected = [4 * i for i in range(5)] + [4 * i for i in range(3)]
    assert all(abs(a - b) <= 3 for a, b in zip(levels, expected * 2, strict=True)), levels


def test_stop_ends_the_stream_early_and_leaves_it_decodable(tmp_path: Path):
    clip = synthetic(tmp_path / "long.mp4", 250)
    stop = threading.Event()
    out = io.BytesIO()
    report = stream_video(clip, out, stop=stop, on_start=lambda _: threading.Timer(0.3, stop.set).start())
    assert report.ended == "stopped"
    assert 3 <= report.frames < 30 and report.wall_seconds < 2
    assert len(decode(out.getvalue())) == report.frames


def test_a_reader_going_away_ends_the_stream_without_an_exception(tmp_path: Path):
    clip = synthetic(tmp_path / "long.mp4", 250)
    read, write = os.pipe()
    # A reader that takes a few frames and leaves: head -c 2000.
    reader = subprocess.Popen([sys.executable, "-c", "import os; os.read(0, 2000)"], stdin=read)
    os.close(read)
    with os.fdopen(write, "wb", buffering=0) as pipe:  # buffered, its close would raise on what it holds
        report = stream_video(clip, pipe)
        reader.wait(timeout=10)
    assert report.ended == "reader_gone" and report.frames < 250


def test_a_udp_stream_arrives_in_whole_ts_packets_and_decodes(tmp_path: Path):
    clip = synthetic(tmp_path / "short.mp4", 10)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        sender = threading.Thread(target=stream_video, args=(clip, f"udp://127.0.0.1:{port}"))
        sender.start()
        datagrams = []
        try:
            while True:
                datagrams.append(receiver.recv(65536))
                receiver.settimeout(1)  # after the first datagram: the stream ends within a second
        except TimeoutError:
            pass
        sender.join(timeout=10)
    assert datagrams and all(len(d) <= UDP_PACKET and len(d) % 188 == 0 for d in datagrams)
    assert len(decode(b"".join(datagrams))) == 10


def test_an_unreadable_input_is_refused_before_anything_is_sent(tmp_path: Path):
    good = synthetic(tmp_path / "good.mp4", 3)
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    out = io.BytesIO()
    with pytest.raises(ExtractionError, match="notes.mp4: no video frame"):
        stream_video([good, bad], out)
    assert out.getvalue() == b""
    with pytest.raises(ValueError, match="loops"):
        stream_video(good, out, loops=0)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          check=False, env=os.environ | {"OMP_NUM_THREADS": "1"})


def test_the_script_streams_files_to_a_path_and_refuses_a_bad_file_in_one_line(tmp_path: Path):
    first, second = synthetic(tmp_path / "a.mp4", 4), synthetic(tmp_path / "b.mp4", 3)
    target = tmp_path / "out.ts"
    done = run_script(f"video={first},{second}", f"to={target}", "loops=2")
    assert done.returncode == 0, done.stderr
    assert "done: 14 frames" in done.stderr
    assert len(decode(target.read_bytes())) == 14

    missing = tmp_path / "missing.mp4"
    failed = run_script(f"--video={first}", f"--video={missing}", f"--to={tmp_path / 'x.ts'}")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"error: {missing}: the file does not exist"]
    assert not (tmp_path / "x.ts").exists()

    bad_loops = run_script(f"--video={first}", "--loops=0")
    assert bad_loops.returncode == 2 and "--loops" in bad_loops.stderr
