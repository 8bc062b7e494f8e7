"""Reading your own video end to end: a 60-second 30 fps 1280x720 H.264 video made from the shared GRID
clips, read by infer.py to subtitles (SRT and WebVTT) and JSON word timings.

    python bench/own_video.py [--long] [--model_path=checkpoint] [--work=folder]

The video is the three clips over and over, each upscaled to 900x720 on a 1280x720 canvas (a scene
cut every 3 s). ``--long`` also makes a 10-minute version (the 60-second file's packets remuxed ten
times, so no re-encoding) and reads it. Each reading is one ``python infer.py`` process; its wall
time over the video's length is the real-time factor (model and dlib loading included; the figure
without them subtracts the time of the same command on a 3-second clip, minus that clip's length
times the long run's factor), its peak resident memory is the process's VmHWM as it exits. CPU
time (all threads) per second of video is printed too: other load on a shared machine inflates it
less than wall time. Without
``--model_path`` a freshly initialised paper LipNet reads (speed does not depend on the weights).
The last line printed is a JSON object with every figure.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import json
import resource
import subprocess
import tempfile
import time

import numpy as np

from utils.runtime.cli import parse_args, positive_int
from utils.runtime.paths import REPO_ROOT

DEFAULT_CLIPS_DIR = REPO_ROOT.parent / "shared" / "grid"
TARGET_RTF = 0.3
TARGET_PEAK_MB = 1500
TARGET_LONG_RATIO = 1.2
SIZE = (1280, 720)
FPS = 30


# Runs infer.py and writes its peak resident memory (VmHWM, kB) to argv[1] as it exits. Not
# getrusage: a child's ru_maxrss starts from its parent's size at the fork and survives exec.
_PEAK_WRAPPER = """
import atexit, runpy, sys
out = sys.argv[1]
def peak():
    with open("/proc/self/status") as status, open(out, "w") as f:
        f.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(peak)
sys.argv = sys.argv[2:]
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", default=None, help="checkpoint (default: a fresh paper LipNet)")
    parser.add_argument("--clips_dir", default=str(DEFAULT_CLIPS_DIR), help="GRID clips (default: %(default)s)")
    parser.add_argument("--seconds", type=positive_int, default=60, help="length of the video (default: %(default)s)")
    parser.add_argument("--long", action="store_true", help="also read a version ten times as long (default: off)")
    parser.add_argument("--work", default=None,
                        help="folder for the videos and outputs, kept and reused (default: a temporary one)")
    return parser


def make_video(clips_dir: Path, path: Path, seconds: int) -> Path:
    """The GRID clips in turn, at 30 fps on a 1280x720 canvas, ``seconds`` long."""
    import cv2

    from utils.video.reader import read_frames
    from utils.video.writer import write_video

    grid = np.concatenate([np.stack([f.bgr()[..., ::-1] for f in read_frames(clip)])
                           for clip in sorted(clips_dir.glob("*.mpg"))])
    canvas = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)

    def frames():
        for i in range(seconds * FPS):
            canvas[:, 190:1090] = cv2.resize(grid[int(round(i * 25 / FPS)) % len(grid)], (900, 720),
                                             interpolation=cv2.INTER_LINEAR)
            yield canvas

    return write_video(path, frames(), FPS)


def repeat_video(source: Path, path: Path, times: int) -> Path:
    """``source`` played ``times`` times in a row, its packets remuxed (no re-encoding)."""
    import av

    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(source)) as inp, av.open(str(tmp), "w") as out:
        stream_in = inp.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        length = None
        for n in range(times):
            inp.seek(0)
            last = 0
            for packet in inp.demux(stream_in):
                if packet.pts is None:
                    continue
                if length is None or n == 0:
                    last = max(last, packet.pts + (packet.duration or 0))
                shift = n * (length or 0)
                packet.pts += shift
                packet.dts = (packet.dts or 0) + shift
                packet.stream = stream_out
                out.mux(packet)
            if length is None:
                length = last
    tmp.replace(path)
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_checkpoint(folder: Path) -> Path:
    from model.backend import mx
    from model.checkpoint import save_checkpoint
    from model.lipnet import LipNet, LipNetConfig

    net = LipNet(LipNetConfig())
    net.initialize(mx.init.Xavier())
    return save_checkpoint(folder, net, None, {"normalisation": {"mean": [0.5] * 3, "std": [0.2] * 3}})


def read(video: Path, model: str, out: Path) -> dict:
    """One ``infer.py`` process reading ``video`` to subtitles: wall time and peak memory."""
    hwm = out.parent / f"{video.stem}.hwm"
    command = [sys.executable, "-c", _PEAK_WRAPPER, str(hwm), str(REPO_ROOT / "infer.py"), f"model_path={model}",
               f"video={video}", "num_gpus=0", "progress=false", "format=json", f"subtitles={out}"]
    log = out.parent / f"{video.stem}.log"
    out.mkdir(parents=True, exist_ok=True)
    start, used = time.perf_counter(), _children_cpu()
    with open(log, "w") as stderr, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                                   text=True) as process:
        stdout = process.stdout.read()
    wall, cpu = time.perf_counter() - start, _children_cpu() - used
    if process.returncode:
        raise RuntimeError(f"infer.py failed on {video}:\n{log.read_text()[-3000:]}")
    record = json.loads(stdout.splitlines()[-1])
    return {"video": video.name, "duration_s": record["duration"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "utterances": len(record["utterances"]), "peak_mb": round(int(hwm.read_text()) / 1024, 1)}


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model = args.model_path or str(fresh_checkpoint(work / "fresh-lipnet"))
        video = work / f"own_{args.seconds}s.mp4"
        if not video.exists():
            started = time.perf_counter()
            make_video(Path(args.clips_dir), video, args.seconds)
            print(f"made {video} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        short = work / "own_3s.mp4"
        if not short.exists():
            make_video(Path(args.clips_dir), short, 3)
        figures = {"startup": read(short, model, work / "subtitles"), "main": read(video, model, work / "subtitles")}
        if args.long:
            long_video = work / f"own_{args.seconds * 10}s.mp4"
            if not long_video.exists():
                repeat_video(video, long_video, 10)
            figures["long"] = read(long_video, model, work / "subtitles")
    main_run = figures["main"]
    rtf = main_run["wall_s"] / main_run["duration_s"]
    startup = max(0.0, figures["startup"]["wall_s"] - figures["startup"]["duration_s"] * rtf)
    figures["real_time_factor"] = round(rtf, 3)
    figures["cpu_per_video_second"] = round(main_run["cpu_s"] / main_run["duration_s"], 3)
    figures["real_time_factor_without_startup"] = round((main_run["wall_s"] - startup) / main_run["duration_s"], 3)
    print(f"{main_run['duration_s']:.0f} s of 1280x720 30 fps video read in {main_run['wall_s']:.1f} s: real-time "
          f"factor {rtf:.3f} ({figures['real_time_factor_without_startup']:.3f} without the {startup:.1f} s start-up; "
          f"target <= {TARGET_RTF}; CPU time {figures['cpu_per_video_second']:.3f} s per video second, all "
          f"threads), peak memory {main_run['peak_mb']:.0f} MB (target <= {TARGET_PEAK_MB}), "
          f"{main_run['utterances']} utterances")
    if args.long:
        ratio = figures["long"]["peak_mb"] / main_run["peak_mb"]
        figures["long_peak_ratio"] = round(ratio, 3)
        print(f"{figures['long']['duration_s']:.0f} s version: {figures['long']['wall_s']:.1f} s, peak memory "
              f"{figures['long']['peak_mb']:.0f} MB, {ratio:.2f}x the short one's (target <= {TARGET_LONG_RATIO})")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
