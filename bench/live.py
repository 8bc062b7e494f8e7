"""Live reading latency: a stream of the GRID clips read live by infer.py, each utterance's line timed.

The stream goes at its own pace into ``infer.py video=-`` (a pipe, the default) or
``video=udp://127.0.0.1:PORT``; each utterance's line is timed from the moment its end was sent to the
moment it arrived on stdout.

    python bench/live.py [--loops=N] [--source=pipe|udp] [--model_path=checkpoint] [--work=folder]

The stream is the three clips, each followed by its last frame held for ``--hold`` seconds (a still mouth
that ends the utterance), 12 s a pass with 3 utterances; ``--loops=50`` is a 10-minute stream. It is
re-encoded to H.264 MPEG-TS and written at the pace of its timestamps (``utils.video.pacer``), T0 being
the wall time of its first frame: an utterance that ends at stream time ``end`` is complete at
T0 + end, so its latency is its line's arrival time minus that (infer.py counts stream time from the
first frame it reads: frames lost before it, as UDP may lose them, would only overstate latency).

Also reported: utterances read against those streamed (each matched to the clip its middle falls in: clips
unread, clips read in pieces), the frames infer.py dropped (its last stderr line), its CPU time (all
threads) per stream second while streaming, its peak resident memory (VmHWM as it exits) and its resident
memory sampled every ``--sample_every`` seconds: the medians in the second and the last minute and the
trend in between, in MB a minute (level on a long stream). Without
``--model_path`` a freshly initialised paper LipNet reads (its texts are meaningless; speed does not depend
on the weights); with a trained one the texts are checked against the clips' sentences. infer.py's stderr
and stdout lines are kept in ``--work`` (live.log, live.jsonl).

Exit status 1 when the 95th percentile latency is over the target, a clip streamed was not read or
infer.py did not exit 0; the last line printed is a JSON object with every figure.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import numpy as np

from bench.own_video import _PEAK_WRAPPER, DEFAULT_CLIPS_DIR, fresh_checkpoint
from utils.runtime.atomic import write_text_atomic
from utils.runtime.cli import bounded, parse_args, positive_float, positive_int
from utils.runtime.paths import REPO_ROOT

TARGET_P95_S = 0.5
FPS = 25  # the GRID clips' rate
READY = re.compile(r"^reading .* live \(Ctrl-C ends it\)$")
SUMMARY = re.compile(r"; ([\d.]+) s read, (\d+) utterances?(?:, (\d+) of (\d+) frames dropped)?$")
UTTERANCES_PER_LOOP = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", default=None, help="checkpoint (default: a fresh paper LipNet)")
    parser.add_argument("--clips_dir", default=str(DEFAULT_CLIPS_DIR),
                        help="folder of the three GRID clips (*.mpg) (default: %(default)s)")
    parser.add_argument("--loops", type=positive_int, default=2,
                        help="passes of the stream (12 s each with --hold=1: 50 is 10 minutes) (default: %(default)s)")
    parser.add_argument("--source", default="pipe", choices=("pipe", "udp"),
                        help="pipe: infer.py video=- reads its stdin; udp: video=udp://127.0.0.1:PORT "
                             "(default: %(default)s)")
    parser.add_argument("--port", type=bounded(int, 1, 65535), default=None,
                        help="UDP port with --source=udp (default: a free one)")
    parser.add_argument("--hold", type=bounded(float, 0.6, 10.0), default=1.0,
                        help="seconds each clip's last frame is held after it, ending its utterance "
                             "(default: %(default)s)")
    parser.add_argument("--sample_every", type=positive_float, default=5.0,
                        help="seconds between samples of infer.py's resident memory (default: %(default)s)")
    parser.add_argument("--work", default=None,
                        help="folder to keep the stream, the fresh checkpoint and infer.py's stderr and stdout "
                             "(live.log, live.jsonl) in (default: a temporary one, removed)")
    return parser


def make_stream(clips_dir: Path, path: Path, hold: float) -> tuple[Path, list[tuple[str, float]]]:
    """The clips in name order, each followed by its last frame held ``hold`` seconds, as an H.264 file at
    25 fps; returns it and each clip's name (an utterance each) and seconds in it, the held ones included."""
    from utils.video.reader import read_frames
    from utils.video.writer import write_video

    clips = sorted(clips_dir.glob("*.mpg"))
    if len(clips) != UTTERANCES_PER_LOOP:
        raise SystemExit(f"error: {clips_dir}: {len(clips)} GRID clips (*.mpg), expected "
                         f"{UTTERANCES_PER_LOOP} (the shared clips, ../shared/grid)")
    frames: list[np.ndarray] = []
    parts = []
    for clip in clips:
        images = [f.bgr()[..., ::-1] for f in read_frames(clip, FPS)]
        images += [images[-1]] * round(hold * FPS)
        frames += images
        parts.append((clip.stem, len(images) / FPS))
    return write_video(path, frames, FPS), parts


def match_clips(parts: list[tuple[str, float]], loops: int, spans: list[tuple[float, float]]) -> list[list[int]]:
    """For each clip streamed (loop after loop), the indices of the utterances read from it: those whose
    middle lies in its stretch of the stream. None: the clip was not read; two or more: it was read in pieces."""
    bounds = np.cumsum([0.0] + [seconds for _, seconds in parts] * loops)
    matched: list[list[int]] = [[] for _ in range(len(bounds) - 1)]
    for i, (start, end) in enumerate(spans):
        clip = int(np.searchsorted(bounds, (start + end) / 2, side="right")) - 1
        if 0 <= clip < len(matched):
            matched[clip].append(i)
    return matched


def latency_figures(t0: float, lines: list[tuple[float, dict]]) -> dict:
    """Each utterance's latency (its line's arrival wall time minus T0 + its end in stream seconds) and
    their 50th and 95th percentiles and maximum, in seconds."""
    latencies = [arrival - (t0 + record["end"]) for arrival, record in lines]
    if not latencies:
        return {"latencies_s": [], "p50_s": None, "p95_s": None, "max_s": None}
    return {"latencies_s": [round(x, 3) for x in latencies],
            "p50_s": round(float(np.percentile(latencies, 50)), 3),
            "p95_s": round(float(np.percentile(latencies, 95)), 3), "max_s": round(max(latencies), 3)}


def parse_summary(stderr_lines: list[str]) -> dict | None:
    """infer.py's last line (``SOURCE: REASON; N s read, K utterances[, D of T frames dropped]``) as
    numbers; None when it is missing."""
    for line in reversed(stderr_lines):
        match = SUMMARY.search(line)
        if match:
            seconds, utterances, dropped, taken = match.groups()
            return {"seconds_read": float(seconds), "utterances": int(utterances),
                    "dropped": int(dropped or 0), "taken": int(taken) if taken else None, "line": line}
    return None


def memory_trend(samples: list[tuple[float, float]]) -> dict:
    """The resident memory (MB) over the stream, from (stream second, MB) samples: the median in its second
    minute and in its last (a single sample is no level: reading an utterance holds some memory for a moment)
    and the least-squares slope in MB a minute from the second minute on; None for a stream under 2 minutes."""
    if not samples or samples[-1][0] < 120:
        return {"rss_mb_minute_2": None, "rss_mb_last_minute": None, "rss_growth_mb_per_min": None}
    end = samples[-1][0]
    times, mbs = np.array([t for t, _ in samples if t >= 60]), np.array([mb for t, mb in samples if t >= 60])
    return {"rss_mb_minute_2": round(float(np.median(mbs[times < 120])), 1),
            "rss_mb_last_minute": round(float(np.median(mbs[times >= end - 60])), 1),
            "rss_growth_mb_per_min": round(float(np.polyfit(times / 60, mbs, 1)[0]), 2)}


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user and system, all threads) process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError, StopIteration), open(f"/proc/{pid}/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmRSS:"))) / 1024
    return None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_live(video: Path, model: str, args: argparse.Namespace, work: Path, expected: int) -> dict:
    """infer.py reading ``video`` streamed live: every line's arrival, its stderr, CPU and memory."""
    from utils.video.pacer import stream_video

    source = "-" if args.source == "pipe" else f"udp://127.0.0.1:{args.port or _free_udp_port()}"
    hwm = work / "live.hwm"
    hwm.unlink(missing_ok=True)
    command = [sys.executable, "-c", _PEAK_WRAPPER, str(hwm), str(REPO_ROOT / "infer.py"), f"model_path={model}",
               f"video={source}", "num_gpus=0", "format=json"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE if args.source == "pipe" else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, finished = threading.Event(), threading.Event()
    stderr_lines: list[str] = []
    lines: list[tuple[float, dict]] = []
    bad_lines: list[str] = []
    samples: list[tuple[float, float]] = []
    t0: list[float] = []

    def read_stderr() -> None:
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            stderr_lines.append(line)
            if READY.match(line):
                ready.set()
        ready.set()  # it ended before reading: the wait below must not hang

    def read_stdout() -> None:
        for raw in process.stdout:
            arrival = time.time()
            try:
                lines.append((arrival, json.loads(raw)))
            except json.JSONDecodeError:
                bad_lines.append(raw.decode(errors="replace").rstrip("\n"))

    def sample() -> None:
        while not finished.wait(args.sample_every):
            mb = _proc_rss_mb(process.pid)
            if mb is not None and t0:
                samples.append((round(time.time() - t0[0], 1), round(mb, 1)))

    readers = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
    for thread in readers:
        thread.start()
    stream_report = None
    try:
        ready.wait(300)
        if process.poll() is not None or not ready.is_set():
            raise RuntimeError("infer.py did not start reading:\n" + "\n".join(stderr_lines[-30:]))
        if args.source == "udp":
            time.sleep(0.5)  # its socket bound before the first datagram
        target = process.stdin if args.source == "pipe" else source
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu_before = _proc_cpu(process.pid)
        stream_report = stream_video(video, target, loops=args.loops, on_start=t0.append)
        cpu_streaming = _proc_cpu(process.pid) - cpu_before
        end_rss = _proc_rss_mb(process.pid)
        if end_rss is not None:
            samples.append((round(time.time() - t0[0], 1), round(end_rss, 1)))
        finished.set()
        if args.source == "pipe":
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        else:  # Ctrl-C once the last frames sent are taken and the last line is out (within its 5 s stall)
            sent, deadline = time.monotonic(), time.monotonic() + 3.0
            while (time.monotonic() < sent + 1.0 or len(lines) + len(bad_lines) < expected) \
                    and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=120)
    finally:
        finished.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        for thread in readers:
            thread.join(timeout=10)
    write_text_atomic(work / "live.log", "\n".join(stderr_lines) + "\n")
    write_text_atomic(work / "live.jsonl", "".join(json.dumps(record) + "\n" for _, record in lines))
    return {"source": source, "returncode": returncode, "t0": t0[0], "lines": lines, "bad_lines": bad_lines,
            "stderr": stderr_lines, "stream": stream_report, "cpu_streaming_s": cpu_streaming, "samples": samples,
            "peak_mb": round(int(hwm.read_text()) / 1024, 1) if hwm.exists() else None}


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.port is not None and args.source != "udp":
        parser.error("--port is for --source=udp")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model = args.model_path or str(fresh_checkpoint(work / "fresh-lipnet"))
        video, parts = make_stream(Path(args.clips_dir), work / f"live_hold{args.hold:g}.mp4", args.hold)
        run = run_live(video, model, args, work, UTTERANCES_PER_LOOP * args.loops)
    return report(args, run, parts)


def report(args: argparse.Namespace, run: dict, parts: list[tuple[str, float]]) -> int:
    """The table for a person, the JSON line for a script, and the exit status."""
    from utils.text.grid_text import sentence_from_clip_name

    stream = run["stream"]
    expected = len(parts) * args.loops
    matched = match_clips(parts, args.loops, [(record["start"], record["end"]) for _, record in run["lines"]])
    figures = {"source": run["source"], "loops": args.loops, "model": args.model_path or "fresh paper LipNet",
               "stream_s": round(stream.stream_seconds, 2), "frames_sent": stream.frames, "stream_ended": stream.ended,
               "stream_worst_lateness_s": round(stream.worst_lateness, 3),
               "utterances_expected": expected, "utterances_read": len(run["lines"]),
               "clips_unread": sum(1 for found in matched if not found),
               "clips_in_pieces": sum(1 for found in matched if len(found) > 1),
               "utterances_outside_clips": len(run["lines"]) - sum(len(found) for found in matched),
               "utterance_errors": sum(1 for _, record in run["lines"] if record.get("error")),
               "unparsed_lines": len(run["bad_lines"]), "returncode": run["returncode"]}
    figures.update(latency_figures(run["t0"], run["lines"]))
    summary = parse_summary(run["stderr"])
    figures["dropped_frames"] = summary["dropped"] if summary else None
    figures["frames_taken"] = summary["taken"] if summary else None
    figures["summary_line"] = summary["line"] if summary else None
    figures["cpu_per_stream_second"] = round(run["cpu_streaming_s"] / max(stream.stream_seconds, 1e-9), 3)
    figures["peak_mb"] = run["peak_mb"]
    figures.update(memory_trend(run["samples"]))
    figures["rss_samples"] = run["samples"]
    if args.model_path:  # a clip read in pieces counts as read right when its pieces' texts join to its sentence
        sentences = [sentence_from_clip_name(name) for name, _ in parts] * args.loops
        texts = [" ".join(run["lines"][i][1].get("text", "") for i in found) for found in matched]
        figures["texts_match"] = sum(text == sentence for text, sentence in zip(texts, sentences, strict=True))
    complete = not figures["clips_unread"] and not figures["unparsed_lines"]
    met = figures["p95_s"] is not None and figures["p95_s"] <= TARGET_P95_S
    figures["target_p95_s"] = TARGET_P95_S
    figures["target_met"] = bool(met and complete and run["returncode"] == 0)

    def show(value: object, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    rows = [("stream", f"{figures['stream_s']} s, {stream.frames} frames into {run['source']} ({stream.ended}; "
                       f"worst lateness {figures['stream_worst_lateness_s']} s)"),
            ("utterances read", f"{figures['utterances_read']} of {expected} streamed ({figures['clips_unread']} "
                                f"clips unread, {figures['clips_in_pieces']} read in pieces, "
                                f"{figures['utterances_outside_clips']} outside the clips; "
                                f"{figures['utterance_errors']} with an error, {figures['unparsed_lines']} lines "
                                f"not JSON)"),
            ("latency p50 / p95 / max", f"{show(figures['p50_s'], ' s')} / {show(figures['p95_s'], ' s')} / "
                                        f"{show(figures['max_s'], ' s')} (target p95 <= {TARGET_P95_S} s)"),
            ("dropped frames", show(figures["dropped_frames"]) + (f" of {figures['frames_taken']}" if figures[
                "frames_taken"] is not None else "")),
            ("CPU per stream second", f"{figures['cpu_per_stream_second']} s (all threads)"),
            ("peak memory", show(figures["peak_mb"], " MB")),
            ("resident memory, 2nd / last minute", f"{show(figures['rss_mb_minute_2'], ' MB')} / "
                                                    f"{show(figures['rss_mb_last_minute'], ' MB')} (medians; "
                                                    f"trend {show(figures['rss_growth_mb_per_min'], ' MB/min')})"),
            ("infer.py exit status", str(run["returncode"]))]
    if "texts_match" in figures:
        rows.append(("clips read as their sentences", f"{figures['texts_match']} of {expected}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if run["returncode"]:
        print(f"infer.py exited {run['returncode']}:\n" + "\n".join(run["stderr"][-20:]), file=sys.stderr)
    print(json.dumps(figures))
    return 0 if figures["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
