"""Own videos: the shared GRID clips transcoded at test time (30 fps 1280x1024 H.264, 60 fps, portrait
with rotation metadata, the three clips in one variable-rate video, two faces) read by infer.py with
the model trained on the original clips (the ``real_model`` fixture), plus the reader's own checks."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import infer
from tests.own_videos import GRID_CLIPS, concatenated, portrait, transcode, two_faces
from utils.reading import sentence_videos
from utils.scoring.report import UtteranceResult
from utils.text.grid_text import sentence_from_clip_name
from utils.text.subtitles import read_subtitles
from utils.video.errors import ExtractionError
from utils.video.reader import probe, read_frames
from utils.video.writer import write_video


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = infer.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def own(clips: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("own")
    videos = {
        "bbaf2n_30fps.mp4": transcode(clips["bbaf2n"], folder / "bbaf2n_30fps.mp4", 30, (1280, 1024)),
        "lwbsza_60fps.mp4": transcode(clips["lwbsza"], folder / "lwbsza_60fps.mp4", 60),
        "swwp2s_portrait.mp4": portrait(clips["swwp2s"], folder / "swwp2s_portrait.mp4"),
        "two_faces.mp4": two_faces(clips["bbaf2n"], clips["swwp2s"], folder / "two_faces.mp4"),
    }
    path, cuts = concatenated([clips[c] for c in GRID_CLIPS], folder / "three.mp4")
    videos["three.mp4"] = path
    return {"folder": folder, "videos": videos, "cuts": cuts}


@pytest.fixture(scope="module")
def json_run(real_model: dict, own: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    subs = tmp_path_factory.mktemp("subs")
    code, stdout, stderr = run(f"model_path={real_model['model']}", f"video={own['folder']}", "num_gpus=0",
                               "progress=false", "format=json", f"subtitles={subs}")
    assert code == 0, stderr
    return {"records": {r["file"]: r for r in map(json.loads, stdout.splitlines())}, "stderr": stderr, "subs": subs}


# ------------------------------------------------------------------------------------------ the reader

def test_frames_are_resampled_by_time_and_turned_upright(own: dict, clips: dict[str, np.ndarray]):
    for name, size in [("bbaf2n_30fps.mp4", (1280, 1024)), ("lwbsza_60fps.mp4", (360, 288)),
                       ("swwp2s_portrait.mp4", (360, 640))]:
        frames = list(read_frames(own["videos"][name]))
        assert len(frames) == 75, name  # 3 s at 25 fps whatever the source rate
        assert [f.index for f in frames] == list(range(75))
        assert frames[0].size == size and frames[0].gray.shape == size[::-1]
    info = probe(own["videos"]["swwp2s_portrait.mp4"])
    assert (info.width, info.height, info.rotation) == (360, 640, 270)
    # Upright: the portrait's middle rows are the GRID frame (grey borders above and below).
    frame = next(iter(read_frames(own["videos"]["swwp2s_portrait.mp4"]))).bgr()[..., ::-1]
    assert np.abs(frame[176:464].astype(int) - clips["swwp2s"][0]).mean() < 8


def test_variable_rate_frames_keep_their_times(own: dict, clips: dict[str, np.ndarray]):
    frames = [np.ascontiguousarray(f.bgr()[..., ::-1]) for f in read_frames(own["videos"]["three.mp4"])]
    assert len(frames) == 225
    whole = np.concatenate([clips[c] for c in GRID_CLIPS])
    # Each output frame shows the source frame of its time (within one 25 fps frame: the source
    # held 20-30 fps frames), so its own GRID frame or a neighbour matches it best (still faces
    # make some far frames match as well); a rate off by 4% would be 9 frames out by the end.
    for k, frame in list(enumerate(frames))[::15]:
        errors = np.array([cv2.norm(frame, source, cv2.NORM_L1) for source in whole]) / frame.size  # mean |a - b|
        assert errors[max(0, k - 1): k + 2].min() <= errors.min() + 0.3, k


def test_too_short_and_unreadable_videos_get_clear_errors(tmp_path: Path, clips: dict[str, np.ndarray]):
    from utils.video.mouth_extractor import MouthExtractor
    from utils.video.utterances import UtteranceReader

    reader = UtteranceReader(MouthExtractor())
    short = write_video(tmp_path / "short.mp4", clips["bbaf2n"][:5], 25)
    with pytest.raises(ExtractionError, match=r"short.mp4: the video lasts 0.20 s, at least 0.40 s") as err:
        list(reader.read(short))
    assert err.value.reason == "too_short"
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01junk" * 300)
    with pytest.raises(ExtractionError) as err:
        list(reader.read(tmp_path / "junk.mp4"))
    assert err.value.reason == "decode_error" and "junk.mp4" in str(err.value)


def test_a_pause_ends_an_utterance_and_silence_is_not_read(tmp_path: Path, clips: dict[str, np.ndarray]):
    from utils.video.mouth_extractor import MouthExtractor
    from utils.video.utterances import UtteranceReader

    # A sentence, 1.6 s of its last frame held (2.4 s of still mouth with its trailing silence), then
    # the sentence played backwards: no scene cut anywhere, the pause alone separates the two.
    clip = clips["bbaf2n"]
    video = write_video(tmp_path / "pause.mp4", np.concatenate([clip, np.repeat(clip[-1:], 40, 0), clip[::-1]]), 25)
    spans = [(u.start, u.end) for u in UtteranceReader(MouthExtractor(), max_seconds=6).read(video)]
    assert len(spans) == 2
    (start1, end1), (start2, end2) = spans
    assert start1 == 0 and 2.3 < end1 < 3.6  # speech ends at 2.2 s; cut within the pause
    assert 3.6 < start2 < 5.3 and end2 == pytest.approx(7.6)  # speech resumes at 5.3 s; a half pause before it


def test_long_speech_is_cut_below_the_maximum_and_faceless_spans_are_named(
        tmp_path: Path, clips: dict[str, np.ndarray], real_model: dict):
    # 3 s of a speaker, 1.2 s of an empty grey frame, 3 s of a speaker: two utterances within 2 s each
    # (max_utterance), nothing read in the gap, which stderr names with its times.
    grey = np.full((30, 288, 360, 3), 128, np.uint8)
    video = write_video(tmp_path / "gap.mp4", np.concatenate([clips["bbaf2n"], grey, clips["lwbsza"]]), 25)
    code, stdout, stderr = run(f"model_path={real_model['model']}", f"video={video}", "num_gpus=0", "progress=false",
                               "format=json", "max_utterance=2")
    assert code == 0, stderr
    record = json.loads(stdout)
    spans = [(u["start"], u["end"]) for u in record["utterances"]]
    assert len(spans) >= 4 and all(end - start <= 2.0 + 1e-6 for start, end in spans)
    assert not any(start < 4.1 and end > 3.1 for start, end in spans)  # nothing read in the faceless gap
    assert "gap.mp4: no face to read from 3.0" in stderr and " to 4.2" in stderr


# ------------------------------------------------------------------------------------------ reading them

@pytest.mark.parametrize("name,clip", [("bbaf2n_30fps.mp4", "bbaf2n"), ("lwbsza_60fps.mp4", "lwbsza"),
                                       ("swwp2s_portrait.mp4", "swwp2s")])
def test_transcoded_clips_read_as_their_originals(json_run: dict, name: str, clip: str):
    record = json_run["records"][name]
    assert record["error"] is None and record["faces"] == 1
    assert [u["text"] for u in record["utterances"]] == [sentence_from_clip_name(clip)]
    assert record["duration"] == pytest.approx(3.0, abs=0.05)
    assert record["fps"] == pytest.approx({"bbaf2n": 30, "lwbsza": 60, "swwp2s": 25}[clip], abs=0.01)
    words = record["utterances"][0]["words"]
    assert [w["word"] for w in words] == sentence_from_clip_name(clip).split()
    assert all(0 <= w["start"] < w["end"] <= 3.0 and 0 <= w["confidence"] <= 1 for w in words)


def test_concatenation_gives_three_utterances_in_order_split_at_the_cuts(json_run: dict, own: dict):
    record = json_run["records"]["three.mp4"]
    assert [u["text"] for u in record["utterances"]] == [sentence_from_clip_name(c) for c in GRID_CLIPS]
    for u in record["utterances"]:
        for cut in own["cuts"]:
            # No utterance reaches more than 0.3 s across a true cut.
            assert u["end"] <= cut + 0.3 or u["start"] >= cut - 0.3, (u, cut)
    assert record["duration"] == pytest.approx(9.0, abs=0.05)


def test_two_faces_read_the_larger_one_and_say_so(json_run: dict, own: dict, real_model: dict):
    record = json_run["records"]["two_faces.mp4"]
    assert record["faces"] == 2
    assert " ".join(u["text"] for u in record["utterances"]) == sentence_from_clip_name("bbaf2n")
    assert "two_faces.mp4: 2 faces seen; reading the largest" in json_run["stderr"]
    code, stdout, _ = run(f"model_path={real_model['model']}", f"video={own['videos']['two_faces.mp4']}",
                          "num_gpus=0", "progress=false", "face=all")
    assert code == 0
    assert stdout.splitlines()[0] == f"two_faces.mp4#face1\t{sentence_from_clip_name('bbaf2n')}"
    assert stdout.splitlines()[1].startswith("two_faces.mp4#face2\t") and len(stdout.splitlines()) == 2


def test_subtitles_parse_back_to_the_utterances(json_run: dict, own: dict):
    for name, record in json_run["records"].items():
        stem = Path(name).stem
        for suffix in (".srt", ".vtt"):
            cues = read_subtitles(json_run["subs"] / f"{stem}{suffix}")
            assert [c.text for c in cues] == [u["text"] for u in record["utterances"]], (name, suffix)
            assert [(round(c.start, 2), round(c.end, 2)) for c in cues] == [
                (round(u["start"], 2), round(u["end"], 2)) for u in record["utterances"]]


def test_default_stdout_is_one_tab_line_per_video_and_failures_go_on(real_model: dict, own: dict, tmp_path: Path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a_three.mp4").symlink_to(own["videos"]["three.mp4"])
    (folder / "b_broken.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "report"
    code, stdout, stderr = run(f"model_path={real_model['model']}", f"video={folder}", "num_gpus=0",
                               "progress=false", f"out={out}")
    assert code == 1
    assert stdout == "a_three.mp4\t" + " ".join(sentence_from_clip_name(c) for c in GRID_CLIPS) + "\n"
    assert "error:" in stderr and "b_broken.mp4" in stderr and "[decode_error]" in stderr
    page = (out / "report.html").read_text()
    for clip in GRID_CLIPS:
        for word in sentence_from_clip_name(clip).split():
            assert f">{word}<" in page  # each word placed on the frame strip


def test_checkpoints_record_the_frame_rate_they_read_at(real_model: dict):
    meta = json.loads((real_model["model"] / "meta.json").read_text())
    assert meta["frame_rate"] == 25.0  # what infer.py resamples every video to


def test_the_network_reads_while_the_video_goes_on_in_order_and_bounded(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path):
    """Utterances are read in a worker thread, at most a few ahead of the video, and come back in order;
    an error in the video still reaches the caller."""
    import threading
    import time

    from utils.video import reader
    from utils.video.utterances import Utterance

    events: list[tuple[str, int]] = []
    lock = threading.Lock()
    fail_after: list[int] = []

    class FakeUtterances:
        def read(self, path, summary, progress=None):
            for n in range(8):
                with lock:
                    events.append(("yield", n))
                yield Utterance(0, float(n), n + 1.0, np.zeros((3, 2, 2, 3), np.uint8), 10.0)
                if fail_after and n == fail_after[0]:
                    raise ExtractionError("few_faces", path, "lost")

    def read_utterance(utterance, keep_frames=False):
        assert threading.current_thread() is not threading.main_thread()
        time.sleep(0.02)
        with lock:
            events.append(("read", int(utterance.start)))
        return UtteranceResult(utterance.start, utterance.end, f"u{int(utterance.start)}", [], None,
                                     np.zeros((3, 28)), 0)

    monkeypatch.setattr(reader, "probe", lambda path: type("Info", (), {"duration": 8.0, "fps": 25.0})())
    lipreader = object.__new__(sentence_videos.VideoLipreader)
    lipreader.fps, lipreader.utterances, lipreader.read_utterance = 25.0, FakeUtterances(), read_utterance
    reading = lipreader.read(tmp_path / "x.mp4")
    assert [u.text for u in reading.utterances] == [f"u{n}" for n in range(8)]
    for n in range(8):  # never more than _IN_FLIGHT + 1 utterances made and not yet read
        made = events.index(("yield", n))
        assert sum(1 for kind, _ in events[:made] if kind == "read") >= n - sentence_videos._IN_FLIGHT - 1
    events.clear()
    fail_after.append(3)
    with pytest.raises(ExtractionError, match="lost"):
        lipreader.read(tmp_path / "x.mp4")


def test_edge_search_finds_the_best_scored_edges_in_few_readings():
    from utils.video.utterances import search_edges

    calls: list[int] = []

    def score(trims: list[tuple[int, int]]) -> list[float]:
        calls.append(len(trims))
        return [-(a - 6) ** 2 - (b - 10) ** 2 for a, b in trims]

    assert search_edges(60, score, max_trim=20) == (6, 10)
    assert sum(calls) < 40  # a coordinate search, not all 121 pairs
    assert search_edges(60, score, max_trim=20, step=4) == (4, 8)  # of two equals, the one keeping more frames
    assert search_edges(20, score, max_trim=20, min_frames=12) == (6, 2)  # never fewer than min_frames left
    assert search_edges(60, lambda trims: [0.0] * len(trims), max_trim=20) == (0, 0)  # ties keep every frame
    assert search_edges(60, score, max_trim=0) == (0, 0)


def test_edge_search_reads_each_utterance_from_its_best_scored_edges():
    """With --edge_search the utterance is read from the edges where the decoder's score per frame is best
    (here: without the frames the network cannot read), and its times and words follow those edges."""
    from utils.text.alphabet import GRID
    from utils.video.utterances import Utterance

    # 6 unreadable frames (every class equally likely), 30 that read "a b", 4 unreadable; a frame's first
    # pixel says whether it is readable (255) and its second which of the 30 it is.
    frames = np.zeros((40, 2, 2, 3), np.uint8)
    frames[6:36, 0, 0, 0] = 255
    frames[6:36, 0, 0, 1] = np.arange(30)
    spoken = np.full(30, GRID.blank)
    spoken[[5, 6, 20]] = GRID.encode("a b")

    def log_probs(clips: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for clip in clips:
            lp = np.full((len(clip), GRID.num_classes), np.log(1 / GRID.num_classes))
            readable = np.flatnonzero(clip[:, 0, 0, 0] == 255)
            whole = {0, 29} <= set(clip[readable, 0, 0, 1])  # a clip cutting into the speech reads worse
            sure = 0.99 if whole else 0.6
            lp[readable] = np.log((1 - sure) / (GRID.num_classes - 1))
            lp[readable, spoken[clip[readable, 0, 0, 1]]] = np.log(sure)
            out.append(lp)
        return out

    for edge_search, expected in ((0.0, (0, 0)), (0.4, (6, 4))):
        lipreader = object.__new__(sentence_videos.VideoLipreader)
        lipreader.network = type("Net", (), {"alphabet": GRID})()
        lipreader.decoder, lipreader.beam_width, lipreader.lm, lipreader.fps = "greedy", 8, None, 25.0
        lipreader.edge_frames = int(round(edge_search * 25))
        lipreader.utterances = type("Reader", (), {"min_frames": 10})()
        lipreader.log_probs = log_probs
        result = lipreader.read_utterance(Utterance(0, 2.0, 3.6, frames, 10.0), keep_frames=True)
        a, b = expected
        assert (result.start, result.end) == pytest.approx((2.0 + a / 25, 3.6 - b / 25))
        assert len(result.frames) == len(result.log_probs) == 40 - a - b
        assert (result.text == "a b") == (edge_search > 0)  # the unreadable edges spell noise untrimmed


@pytest.mark.parametrize("flag", ["edge_search=-0.1", "--margin=-1"])
def test_negative_margins_are_refused(flag: str, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_:
        infer.main(["video=talk.mp4", flag])
    assert exit_.value.code == 2 and "expected a number of at least 0" in capsys.readouterr().err
