"""A live source's parts without a model: what ``video=`` names (utils/video/sources.py), frames taken at
the source's pace into a bounded queue and dropped whole when the reader falls behind (utils/video/live.py),
and utterances cut from frames with gaps (UtteranceCutter)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from utils.video.live import DropNotes, LiveFrames
from utils.video.sources import Source, SourceError, open_live, parse_source
from utils.video.writer import write_video


def synthetic(path: Path, frames: int, fps: int = 25) -> Path:
    """A clip whose frame i is grey level 3 i, so that a frame read back tells which one it is."""
    return write_video(path, (np.full((48, 64, 3), 3 * i, np.uint8) for i in range(frames)), fps)


def drain(frames: LiveFrames, timeout: float = 10.0) -> list:
    got = []
    while (frame := frames.get(timeout=timeout)) is not None:
        got.append(frame)
    return got


# ------------------------------------------------------------------------------------------- sources

@pytest.mark.parametrize("text, kind, url", [
    ("-", "stdin", "pipe:0"),
    ("udp://127.0.0.1:5000", "network", "udp://127.0.0.1:5000"),
    ("rtsp://camera.local/stream", "network", "rtsp://camera.local/stream"),
    ("RTMP://host/live/key", "network", "RTMP://host/live/key"),
    ("srt://127.0.0.1:9000?mode=listener", "network", "srt://127.0.0.1:9000?mode=listener"),
    ("/dev/video0", "camera", "/dev/video0"),
    ("clip.mp4", "file", "clip.mp4"),
])
def test_a_source_is_named_as_a_user_types_it(text: str, kind: str, url: str):
    source = parse_source(text)
    assert (source.kind, source.url) == (kind, url)
    assert source.live == (kind != "file")


def test_a_camera_index_is_the_systems_camera(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert parse_source("2") == Source("2", "camera", "/dev/video2", "v4l2")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert parse_source("0") == Source("0", "camera", "0", "avfoundation")
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(SourceError, match="camera 0: a camera index is read on Linux and macOS"):
        parse_source("0")


def test_a_named_pipe_is_a_live_source_and_an_unknown_scheme_is_refused(tmp_path: Path):
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    assert parse_source(str(fifo)).kind == "pipe"
    with pytest.raises(SourceError, match=r"gopher://x: unknown stream type gopher://"):
        parse_source("gopher://x")


def test_outputs_are_named_after_the_source():
    assert [parse_source(t).stem for t in ("-", "/dev/video0", "udp://127.0.0.1:5000?timeout=1", "a/talk.mp4")] == [
        "stdin", "video0", "udp_127.0.0.1_5000", "talk"]


def test_live_sources_open_without_long_probing_or_a_large_udp_ring():
    assert int(parse_source("udp://127.0.0.1:5000").options()["analyzeduration"]) <= 100_000
    udp = parse_source("udp://127.0.0.1:5000").options()
    assert int(udp["fifo_size"]) * 188 <= 8 * 2**20  # its ring is kept whole: a few seconds, not minutes
    assert parse_source("clip.mp4").options() == {}


def test_a_camera_that_is_not_there_is_one_line():
    with pytest.raises(SourceError) as caught:
        open_live(parse_source("/dev/video63"), 2.0)
    assert str(caught.value).startswith("/dev/video63: no such camera")
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------------- frames

def test_frames_the_reader_has_no_room_for_are_dropped_whole_and_counted(tmp_path: Path):
    video = synthetic(tmp_path / "a.mp4", 60)
    frames = LiveFrames(parse_source(str(video)), queue_frames=4).start()
    deadline = time.monotonic() + 20
    while frames.ending is None and time.monotonic() < deadline:  # the reader takes nothing meanwhile
        time.sleep(0.05)
    got = drain(frames)
    assert frames.taken == 60
    assert len(got) <= 4 and frames.dropped == 60 - len(got)
    assert [f.index for f in got] == sorted(f.index for f in got)
    assert frames.ending is not None and not frames.ending.lost and frames.ending.reason == "the video ended"


def test_reading_every_frame_drops_none(tmp_path: Path):
    video = synthetic(tmp_path / "a.mp4", 30)
    frames = LiveFrames(parse_source(str(video)), drop=False, queue_frames=2).start()
    time.sleep(0.3)  # the queue is full long before the reader comes
    got = drain(frames)
    assert [f.index for f in got] == list(range(30)) and frames.dropped == 0
    levels = [float(f.luma.mean()) for f in got]
    assert all(b > a for a, b in zip(levels, levels[1:]))  # each frame once, in order


def test_a_file_read_live_is_paced_by_its_timestamps(tmp_path: Path):
    video = synthetic(tmp_path / "a.mp4", 20)
    frames = LiveFrames(parse_source(str(video)), paced=True)
    started = time.monotonic()
    got = []
    frames.start()
    while (frame := frames.get(timeout=10)) is not None:
        got.append((frame.time, time.monotonic() - started))
    assert len(got) == 20
    assert all(arrived >= at - 0.02 for at, arrived in got)  # never ahead of the video's clock


def test_stopping_ends_the_frames(tmp_path: Path):
    video = synthetic(tmp_path / "a.mp4", 100)
    frames = LiveFrames(parse_source(str(video)), paced=True).start()
    assert frames.get(timeout=10) is not None
    frames.stop()
    drain(frames)
    assert frames.ending.reason == "stopped" and frames.taken < 100


def test_a_file_that_is_not_a_video_fails_before_reading(tmp_path: Path):
    from utils.video.errors import ExtractionError

    (tmp_path / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(ExtractionError, match="x.mp4"):
        LiveFrames(parse_source(str(tmp_path / "x.mp4")))


def test_a_pipe_is_read_as_it_is_written(tmp_path: Path):
    import threading

    from utils.video.pacer import stream_video

    video = synthetic(tmp_path / "a.mp4", 25)
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    sender = threading.Thread(target=stream_video, args=(video, str(fifo)), daemon=True)
    sender.start()
    frames = LiveFrames(parse_source(str(fifo))).start()
    got = drain(frames)
    sender.join(10)
    assert len(got) + frames.dropped == frames.taken >= 24
    assert got[0].time == 0.0 and frames.ending.reason == "the stream ended"


def test_drop_warnings_come_at_most_once_a_minute():
    said: list[str] = []
    notes = DropNotes(said.append, every=60)
    notes.check(0, 25)
    notes.check(5, 25)
    notes.check(9, 25)
    assert said == ["warning: reading fell behind the source: 5 frames (0.2 s) dropped since the last note, 5 in all"]
    notes.every = 0  # a minute later: what was held back is told, then each new drop
    notes.check(9, 25)
    notes.check(9, 25)
    notes.check(12, 25)
    assert [line.split(": ", 2)[2] for line in said[1:]] == ["4 frames (0.2 s) dropped since the last note, 9 in all",
                                                             "3 frames (0.1 s) dropped since the last note, 12 in all"]


def test_utterances_cut_from_frames_with_gaps_keep_the_decoders_times(grid_dir: Path):
    """Frames a live reader dropped (every third one here) leave gaps in the indices: the utterance still
    spans the clip in its own seconds, each missing frame stood in for by the one before it."""
    from utils.video.mouth_extractor import MouthExtractor
    from utils.video.reader import read_frames
    from utils.video.utterances import UtteranceCutter, UtteranceReader

    cutter = UtteranceCutter(UtteranceReader(MouthExtractor()))
    utterances = []
    for frame in read_frames(grid_dir / "bbaf2n.mpg"):
        if frame.index % 3 != 1:
            utterances += cutter.feed(frame)
    utterances += cutter.close()
    whole = list(UtteranceReader(MouthExtractor()).read(grid_dir / "bbaf2n.mpg"))
    assert len(utterances) == len(whole) == 1
    (cut,), (read,) = utterances, whole
    assert (cut.start, len(cut.frames)) == (read.start, len(read.frames))
    assert cut.end == pytest.approx(read.end, abs=0.05)
    assert np.array_equal(cut.frames[0], read.frames[0])


def test_a_long_stream_keeps_the_cutters_records_short(grid_dir: Path):
    """One face talking on (the three clips twice, one after another, as a live reader cuts them): the spans
    with a face are joined as they come, so a second pass adds none, and an open utterance keeps the face's
    widths of its own frames only, not of every frame since the face appeared."""
    from tests.own_videos import GRID_CLIPS
    from utils.video.mouth_extractor import MouthExtractor
    from utils.video.reader import read_frames
    from utils.video.utterances import UtteranceCutter, UtteranceReader

    cutter = UtteranceCutter(UtteranceReader(MouthExtractor()).paused_after(0.5))
    utterances, spans = [], []
    for _ in range(2):
        for name in GRID_CLIPS:
            offset = cutter.frames
            for frame in read_frames(grid_dir / f"{name}.mpg"):
                frame.index += offset
                frame.time += offset / 25
                utterances += cutter.feed(frame)
                for segment in cutter.segments.values():
                    assert set(segment.faces) == set(segment.marks)
                    assert all(segment.start <= k < segment.end for k in segment.faces)
        spans.append(list(cutter.covered))
    utterances += cutter.close()
    assert len(utterances) >= 6
    assert len(spans[1]) == len(spans[0]) and spans[1][-1][1] > spans[0][-1][1]
    assert all(u.face_width > 0 for u in utterances)
