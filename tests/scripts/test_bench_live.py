"""bench/live.py without streaming anything: the latency arithmetic, the reading of infer.py's last line, the
report and its exit status on a canned run, and the test stream made from the shared clips."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from bench.live import build_parser, latency_figures, make_stream, match_clips, memory_trend, parse_summary, report
from utils.runtime.cli import parse_args
from utils.video.pacer import StreamReport


def test_latency_is_the_arrival_after_the_utterance_end_sent():
    t0 = 1000.0
    lines = [(1004.25, {"end": 4.0}), (1008.5, {"end": 8.0}), (1013.0, {"end": 12.0})]
    figures = latency_figures(t0, lines)
    assert figures["latencies_s"] == [0.25, 0.5, 1.0]
    assert figures["p50_s"] == 0.5 and figures["max_s"] == 1.0
    assert figures["p95_s"] == pytest.approx(0.95)  # numpy's linear interpolation between 0.5 and 1.0
    assert latency_figures(t0, []) == {"latencies_s": [], "p50_s": None, "p95_s": None, "max_s": None}


def test_the_summary_line_gives_the_dropped_frames():
    stderr = ["reading - live (Ctrl-C ends it)",
              "-: the stream ended; 24.0 s read, 6 utterances, 3 of 600 frames dropped"]
    assert parse_summary(stderr) == {"seconds_read": 24.0, "utterances": 6, "dropped": 3, "taken": 600,
                                     "line": stderr[-1]}
    quiet = parse_summary(["udp://127.0.0.1:5000: stopped; 11.8 s read, 1 utterance"])
    assert quiet["dropped"] == 0 and quiet["taken"] is None and quiet["utterances"] == 1
    assert parse_summary(["reading - live (Ctrl-C ends it)", "Traceback ..."]) is None


def test_memory_is_the_medians_of_the_second_and_last_minute_and_the_trend_after_the_first():
    # 10 minutes at 5 s: level at 500 MB but for a reading's bump every 12 s, after a first minute at 400
    samples = [(t, 400.0 if t < 60 else 500.0 + 8.0 * (t % 12 == 0)) for t in np.arange(5.0, 601.0, 5.0)]
    level = memory_trend(samples)
    assert level["rss_mb_minute_2"] == level["rss_mb_last_minute"] == 500.0
    assert level["rss_growth_mb_per_min"] == pytest.approx(0.0, abs=0.1)
    growing = [(t, 500.0 + t / 60) for t in np.arange(5.0, 601.0, 5.0)]  # a megabyte a minute
    figures = memory_trend(growing)
    assert figures["rss_growth_mb_per_min"] == 1.0 and figures["rss_mb_last_minute"] > figures["rss_mb_minute_2"] + 7
    assert memory_trend([(5.0, 400.0), (115.0, 420.0)])["rss_mb_minute_2"] is None  # under 2 minutes


def test_utterances_are_matched_to_the_clips_their_middles_fall_in():
    parts = [("a", 4.0), ("b", 4.0), ("c", 4.0)]
    spans = [(0.2, 3.5), (4.1, 5.0), (5.6, 7.2), (12.3, 15.0), (23.0, 23.9), (24.5, 25.0)]
    # b of the first loop in two pieces; c of the first loop and b of the second unread; the last one past the
    # stream's end belongs to no clip
    assert match_clips(parts, 2, spans) == [[0], [1, 2], [], [3], [], [4]]


PARTS = [("bbaf2n", 4.0), ("lwbsza", 4.0), ("swwp2s", 4.0)]


def canned_run(ends_and_latencies: list[tuple[float, float]], texts: list[str], returncode: int = 0) -> dict:
    t0 = 5000.0
    lines = [(t0 + end + latency, {"start": end - 2.5, "end": end, "text": text, "error": None})
             for (end, latency), text in zip(ends_and_latencies, texts, strict=True)]
    return {"source": "-", "returncode": returncode, "t0": t0, "lines": lines, "bad_lines": [],
            "stderr": [f"-: the stream ended; 24.0 s read, {len(lines)} utterances, 2 of 600 frames dropped"],
            "stream": StreamReport(600, 24.0, 24.1, 0.002, "done"), "cpu_streaming_s": 6.0,
            "samples": [(5.0, 480.0), (24.1, 490.0)], "peak_mb": 495.0}


SENTENCES = ["bin blue at f two now", "lay white by s zero again", "set white with p two soon"]


def args(*argv: str) -> argparse.Namespace:
    return parse_args(build_parser(), ["loops=2", *argv])


@pytest.mark.parametrize(("latencies", "returncode", "status"), [
    ([0.3] * 6, 0, 0),
    ([0.3] * 5 + [0.9], 0, 1),  # the slowest of six is over the target at p95
    ([0.3] * 5, 0, 1),  # the last clip is not read
    ([0.3] * 6, 1, 1),  # infer.py failed
])
def test_the_report_fails_over_the_target_or_short_of_utterances(latencies: list[float], returncode: int, status: int,
                                                                  capsys: pytest.CaptureFixture):
    ends = [4.0, 8.0, 12.0, 16.0, 20.0, 24.0][:len(latencies)]
    run = canned_run(list(zip(ends, latencies, strict=True)), (SENTENCES * 2)[:len(latencies)], returncode)
    assert report(args("model_path=trained"), run, PARTS) == status
    out = capsys.readouterr().out
    figures = json.loads(out.splitlines()[-1])
    assert figures["utterances_read"] == len(latencies) and figures["utterances_expected"] == 6
    assert figures["dropped_frames"] == 2 and figures["frames_taken"] == 600
    assert figures["cpu_per_stream_second"] == 0.25 and figures["peak_mb"] == 495.0
    assert figures["rss_mb_minute_2"] is None and figures["rss_growth_mb_per_min"] is None  # under 2 minutes
    assert figures["texts_match"] == len(latencies) and figures["target_met"] == (status == 0)
    assert figures["clips_unread"] == 6 - len(latencies) and figures["clips_in_pieces"] == 0
    assert f"{len(latencies)} of 6" in out


def test_a_wrong_text_is_counted(capsys: pytest.CaptureFixture):
    run = canned_run([(4.0, 0.2), (8.0, 0.2), (12.0, 0.2)], [SENTENCES[0], "lay white by s zero", SENTENCES[2]])
    assert report(args("loops=1", "model_path=trained"), run, PARTS) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["texts_match"] == 2


def test_a_clip_in_pieces_reads_right_when_its_pieces_join_to_its_sentence(capsys: pytest.CaptureFixture):
    run = canned_run([(4.0, 0.2), (6.0, 0.2), (8.0, 0.2), (12.0, 0.2)],
                     [SENTENCES[0], "lay white by", "s zero again", SENTENCES[2]])
    run["lines"][1][1]["start"], run["lines"][2][1]["start"] = 4.2, 6.2
    assert report(args("loops=1", "model_path=trained"), run, PARTS) == 0
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert figures["utterances_read"] == 4 and figures["clips_in_pieces"] == 1 and figures["clips_unread"] == 0
    assert figures["texts_match"] == 3


def test_the_stream_is_the_three_clips_each_with_its_last_frame_held(grid_dir: Path, tmp_path: Path):
    from utils.video.reader import probe, read_frames

    path, parts = make_stream(grid_dir, tmp_path / "stream.mp4", hold=1.0)
    assert parts == PARTS
    assert probe(path).duration == pytest.approx(12.0, abs=0.05)
    frames = [f.bgr() for f in read_frames(path)]
    assert len(frames) == 300
    def change(a: int, b: int) -> float:
        return float(abs(frames[a].astype(int) - frames[b].astype(int)).mean())

    # each clip's last frame held still for a second (x264 refines it over its first few copies), then the next clip
    for held_end in (100, 200, 300):
        assert max(change(k, k - 1) for k in range(held_end - 18, held_end)) < 0.05
    assert change(100, 99) > 10 and change(200, 199) > 10


def test_a_port_without_udp_is_refused(capsys: pytest.CaptureFixture):
    from bench.live import main

    with pytest.raises(SystemExit) as exit_info:
        main(["port=5000"])
    assert exit_info.value.code == 2 and "--port is for --source=udp" in capsys.readouterr().err
