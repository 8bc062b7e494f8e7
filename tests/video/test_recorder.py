"""The live read's recording (utils/video/recorder.py): frames and cues in, a video with a soft subtitle
track out, read back with PyAV; frames dropped (not queued) when the encoder falls behind; the file
only under its name once it is whole; recording paths checked before the work."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from utils.video import recorder as recorder_module
from utils.video.recorder import Recorder, check_record_path

FPS = 25
REPO = Path(__file__).resolve().parents[2]


def _frame(i: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    image[:, : (i * 3) % size[1] + 1] = (200, 40 + i, 90)
    return image


def _read_back(path: Path) -> tuple[list[str], list[float], list[tuple[float, float, str]]]:
    """Stream types, the video frames' times and the subtitle cues (start, end, text) as decoded."""
    with av.open(str(path)) as container:
        types = [s.type for s in container.streams]
        times = [float(f.time) for f in container.decode(video=0)]
    cues = []
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.subtitles[0]):
            for sub in packet.decode():
                text = sub.ass.decode("utf-8").split(",", 8)[8]  # ASS dialogue: text after 8 fields
                start = float(packet.pts * packet.time_base)
                cues.append((start, start + float(packet.duration * packet.time_base), text))
    return types, times, cues


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_round_trip_keeps_frames_their_times_and_the_cues(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"read{suffix}"
    recorder = Recorder(path, FPS, queue_frames=64)
    times = [i / FPS for i in range(20)] + [1.2 + i / FPS for i in range(20)]  # 0.4 s skipped by the reader
    for i, time in enumerate(times):
        recorder.add(_frame(i), time)
        if i == 25:  # cues come seconds after their frames
            recorder.cue(0.2, 0.987, "BIN BLUE AT F TWO NOW")
    recorder.add(_frame(40), times[-1])  # the same time again: not a second frame
    recorder.cue(1.25, 1.5, "LAY GRÜN")
    assert recorder.close() == path
    assert (recorder.dropped, recorder.frames) == (0, 40)

    types, decoded, cues = _read_back(path)
    assert sorted(types) == ["subtitle", "video"]
    assert decoded == pytest.approx(times, abs=1e-3)
    assert cues == [pytest.approx((0.2, 0.987, "BIN BLUE AT F TWO NOW"), abs=1e-6),
                    pytest.approx((1.25, 1.5, "LAY GRÜN"), abs=1e-6)]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    if suffix == ".mp4":  # faststart: the index before the media, for playing while downloading
        data = path.read_bytes()
        assert data.index(b"moov") < data.index(b"mdat")


def test_closing_after_ctrl_c_keeps_what_was_recorded(tmp_path: Path) -> None:
    """A real SIGINT in the middle of a read, and close() in a finally, as infer.py does."""
    script = textwrap.dedent("""
        import os, signal, sys
        import numpy as np
        from utils.video.recorder import Recorder
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if started in the background
        recorder = Recorder(sys.argv[1], 25, queue_frames=64)
        try:
            for i in range(1000):
                recorder.add(np.full((48, 64, 3), i % 256, np.uint8), i / 25)
                if i == 30:
                    recorder.cue(0.1, 0.9, "INTERRUPTED")
                    os.kill(os.getpid(), signal.SIGINT)
        finally:
            print("closed", recorder.close(), recorder.frames + recorder.dropped, flush=True)
    """)
    path = tmp_path / "interrupted.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode != 0 and "KeyboardInterrupt" in run.stderr
    assert f"closed {path} 31" in run.stdout
    types, decoded, cues = _read_back(path)
    assert sorted(types) == ["subtitle", "video"] and len(decoded) == 31
    assert [c[2] for c in cues] == ["INTERRUPTED"]


def test_recording_starts_at_its_first_frame_and_overlapping_cues_follow_each_other(tmp_path: Path) -> None:
    path = tmp_path / "late.mp4"
    recorder = Recorder(path, FPS, queue_frames=64)
    for i in range(30):
        recorder.add(_frame(i), 10 + i / FPS)
    recorder.cue(9.0, 9.5, "BEFORE THE RECORDING")
    recorder.cue(9.8, 10.5, "ACROSS ITS START")
    recorder.cue(10.4, 11.0, "OVERLAPPING")
    recorder.close()
    _, decoded, cues = _read_back(path)
    assert decoded[0] == pytest.approx(0) and decoded[-1] == pytest.approx(29 / FPS)
    assert cues == [pytest.approx((0.0, 0.5, "ACROSS ITS START"), abs=1e-6),
                    pytest.approx((0.5, 1.0, "OVERLAPPING"), abs=1e-6)]


def test_a_slow_encoder_drops_frames_instead_of_queueing_them(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The encoder is held after its first frame: the queue fills, then every further frame is
    dropped at once (add() never waits), and the file still holds the frames that were queued."""
    busy, release = threading.Event(), threading.Event()
    mux_cues = Recorder._mux_cues

    def held(self: Recorder, *args: object) -> None:
        busy.set()
        release.wait(10)
        mux_cues(self, *args)

    monkeypatch.setattr(Recorder, "_mux_cues", held)
    path = tmp_path / "slow.mp4"
    recorder = Recorder(path, FPS, queue_frames=3)
    recorder.add(_frame(0), 0.0)
    assert busy.wait(10)
    for i in range(1, 11):
        recorder.add(_frame(i), i / FPS)
    assert recorder.dropped == 7
    recorder.cue(0.0, 0.3, "STILL KEPT")
    release.set()
    assert recorder.close() == path
    assert recorder.frames == 4
    types, decoded, cues = _read_back(path)
    assert sorted(types) == ["subtitle", "video"]
    assert decoded == pytest.approx([0, 1 / FPS, 2 / FPS, 3 / FPS], abs=1e-3)
    assert [c[2] for c in cues] == ["STILL KEPT"]


def test_the_file_gets_its_name_only_when_closed(tmp_path: Path) -> None:
    path = tmp_path / "whole.mp4"
    recorder = Recorder(path, FPS)
    for i in range(5):
        recorder.add(_frame(i), i / FPS)
    assert not path.exists()
    hidden = [p.name for p in tmp_path.iterdir()]
    assert len(hidden) == 1 and hidden[0].startswith(".whole.mp4.") and hidden[0].endswith(".mp4")
    recorder.close()
    assert [p.name for p in tmp_path.iterdir()] == ["whole.mp4"]
    with pytest.raises(ValueError, match="recorder is closed"):
        recorder.add(_frame(5), 5 / FPS)


def test_closing_before_any_frame_leaves_no_file(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "empty.mp4", FPS)
    recorder.cue(0, 1, "NOTHING TO SHOW IT ON")
    assert recorder.close() is None
    assert list(tmp_path.iterdir()) == []


def test_a_failed_encode_is_reported_by_close_naming_the_file(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> bytes:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder_module, "_subtitle_payload", broken)
    path = tmp_path / "full.mp4"
    recorder = Recorder(path, FPS)
    recorder.cue(0, 0.5, "A")
    for i in range(10):
        recorder.add(_frame(i), i / FPS)
    with pytest.raises(OSError, match=r"full\.mp4: cannot record: No space left on device"):
        recorder.close()
    assert list(tmp_path.iterdir()) == []


def test_frames_must_keep_their_size(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "sizes.mp4", FPS)
    recorder.add(_frame(0, (49, 65)), 0.0)  # odd sides are cut to even ones for yuv420p
    recorder.add(_frame(1, (48, 64)), 1 / FPS)
    with pytest.raises(ValueError, match=r"sizes\.mp4: frame size changed from 64x48 to 80x48"):
        recorder.add(_frame(2, (48, 80)), 2 / FPS)
    with pytest.raises(ValueError, match="RGB uint8"):
        recorder.add(np.zeros((48, 64), np.uint8), 2 / FPS)
    recorder.close()
    _, decoded, _ = _read_back(tmp_path / "sizes.mp4")
    assert len(decoded) == 2


def test_check_record_path(tmp_path: Path) -> None:
    check_record_path(tmp_path / "new" / "folder" / "read.mp4")  # folders are made
    check_record_path(tmp_path / "read.MKV")
    with pytest.raises(ValueError, match=r"read\.avi: cannot record to a \.avi file \(expected \.mp4 or \.mkv\)"):
        check_record_path(tmp_path / "read.avi")
    (tmp_path / "taken.mp4").mkdir()
    with pytest.raises(ValueError, match=r"taken\.mp4: is a folder"):
        check_record_path(tmp_path / "taken.mp4")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"read\.mp4: cannot record there: .*file: not a folder"):
        check_record_path(tmp_path / "file" / "read.mp4")
    with pytest.raises(ValueError, match=r"read\.mov: cannot record"):
        Recorder(tmp_path / "read.mov", FPS)
    with pytest.raises(ValueError, match="at least 1 frame"):
        Recorder(tmp_path / "read.mp4", FPS, queue_frames=0)


def test_cues_need_times_in_order(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "cues.mp4", FPS)
    with pytest.raises(ValueError, match=r"cues\.mp4: a cue needs 0 <= start < end"):
        recorder.cue(2.0, 1.0, "BACKWARDS")
    recorder.cue(2.0, 2.0, "")  # no text: nothing to show, no error
    recorder.close()
