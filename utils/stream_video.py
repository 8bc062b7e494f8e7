"""Play video files as a live stream, to try live reading without a camera:

    python utils/stream_video.py --video=clip.mp4 --to=udp://127.0.0.1:5000 [--loops=N]
    python infer.py video=udp://127.0.0.1:5000 ...        (in another terminal)

Each file is sent in real time, at the pace of its own timestamps, re-encoded to low-latency H.264 in
MPEG-TS (see utils/video/pacer.py), one file after another and ``--loops`` times over. ``--to`` is a URL
FFmpeg writes (``udp://HOST:PORT``, ``tcp://HOST:PORT``), a path (a named pipe made with ``mkfifo``) or
``-``, standard output: ``python utils/stream_video.py --video=a.mp4 --to=- | python infer.py video=-``.
No ffmpeg program is needed. Progress goes to standard error.

Exit status: 0 when every frame was sent, 1 when the reader closed a pipe before the end, 2 for an
input that cannot be read or a target that cannot be opened (one line naming it), 130 when interrupted
(Ctrl-C or SIGTERM: the stream is closed cleanly first).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import av

from utils.runtime.cli import parse_args, positive_int
from utils.video.errors import ExtractionError
from utils.video.pacer import stream_video

DEFAULT_TARGET = "udp://127.0.0.1:5000"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", action="append", required=True, metavar="FILE[,FILE...]",
                        help="video file to stream; repeat the flag or give a comma-separated list to stream "
                             "several one after another (required, no default)")
    parser.add_argument("--to", default=DEFAULT_TARGET, metavar="URL|PATH|-",
                        help="where to stream: udp://HOST:PORT, tcp://HOST:PORT, a path (e.g. a named pipe) "
                             f"or - for standard output (default: {DEFAULT_TARGET})")
    parser.add_argument("--loops", type=positive_int, default=1,
                        help="stream the file list this many times back to back, timestamps going on "
                             "increasing (default: 1)")
    return parser


def _target_problem(target: str) -> str | None:
    """Why ``target`` cannot be written, checked before the first frame; None when it looks writable."""
    if target == "-":
        return "standard output is a terminal: pipe it into a reader" if sys.stdout.isatty() else None
    if "://" in target:
        return None  # a URL: FFmpeg says what is wrong with it when opening it
    path = Path(target)
    if path.is_dir():
        return f"{target}: is a folder"
    if not path.parent.is_dir():
        return f"{target}: its folder {path.parent} does not exist"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    videos = [Path(v.strip()) for value in args.video for v in value.split(",") if v.strip()]
    if not videos:
        print("error: --video names no file", file=sys.stderr)
        return 2
    problem = _target_problem(args.to)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    target = sys.stdout.buffer if args.to == "-" else args.to
    names = ", ".join(str(v) for v in videos)
    try:
        report = stream_video(videos, target, loops=args.loops, stop=stop,
                              on_start=lambda _: print(f"streaming {names} to {args.to}", file=sys.stderr))
    except ExtractionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except av.FFmpegError as err:
        print(f"error: cannot stream to {args.to}: {err}", file=sys.stderr)
        return 2
    if report.ended == "reader_gone" and args.to == "-":
        # What is left in stdout's buffer cannot be written either: Python would report it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    print(f"{report.ended}: {report.frames} frames, {report.stream_seconds:.1f} s of video in "
          f"{report.wall_seconds:.1f} s", file=sys.stderr)
    return {"done": 0, "reader_gone": 1, "stopped": 130}[report.ended]


if __name__ == "__main__":
    sys.exit(main())
