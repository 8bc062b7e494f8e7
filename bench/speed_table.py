"""The speed table against the references, in one command: every benchmark that has a reference, each followed by
its reference, one after the other, and a Markdown table of the figures and their ratios.

    python bench/speed_table.py                   # one run of everything; --runs 3 gives ranges over 3 runs
    python bench/speed_table.py --out speed.md    # the same table also written to speed.md

The pairs (``docs/speed.md`` lists their figures): ``bench/preprocess.py``, which times our preprocessing and the
original algorithm itself; ``bench/train.py`` (paper LipNet) against ``bench/reference/lipnet_torch.py``; and
``bench/words.py`` (``lrw_resnet18_mstcn``) against ``bench/reference/tcn_torch.py``. Ours run in this
interpreter's venv, the PyTorch references in a bench-only venv made from ``bench/requirements.txt`` (kept under
``~/.cache/lipnet-bench/venv-<hash of that file>``; torch is never one of the project's requirements). Each is a
subprocess whose last line of output is a JSON object of its figures.

A timing is only worth comparing on an otherwise idle machine: the 1-minute load average must be at most
``--max_load`` before the start (else exit 2, naming the load and the cores), and before each next script the run
waits, up to ``--settle`` seconds, for its own load to die away; a load that stays up is other work, and the run
stops with exit 2. ``--force`` runs anyway, without waiting, and the table says so in bold. A script that fails
(exit status, no JSON line, a figure missing or not a positive number) is named with the tail of its output, the
others still run, the table marks its cells FAILED and the exit status is 1. This script imports no framework.
"""
from __future__ import annotations

import argparse
import datetime
import fcntl
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from time import sleep

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

from utils.runtime.atomic import NotWritableError, ensure_writable_dir, write_text_atomic
from utils.runtime.cli import non_negative_float, parse_args, positive_float, positive_int
from utils.runtime.paths import REPO_ROOT, cache_dir

REQUIREMENTS = REPO_ROOT / "bench" / "requirements.txt"
POLL_S = 5.0  # the kernel updates the load average every 5 seconds


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure of ours and the reference's (the same key when both print it)."""

    what: str
    ours: str
    reference: str
    unit: str  # "s", "ms", or "" for a count (compared for equality, not as a ratio)


@dataclass(frozen=True)
class Benchmark:
    name: str
    ours: str  # module, run with -m from the repository root
    reference: str | None  # None: ``ours`` times the reference too and prints both figures
    reference_label: str
    rows: tuple[Row, ...]

    def script(self, module: str) -> str:
        return module.replace(".", "/") + ".py"


BENCHMARKS = (
    Benchmark("preprocess", "bench.preprocess", None,
              "the original algorithm (`bench/baseline_preprocess.py`, timed by the same script)",
              (Row("preprocessing, one process, wall s per clip (model load excluded)", "ours_s_per_clip",
                   "original_s_per_clip", "s"),)),
    Benchmark("lipnet", "bench.train", "bench.reference.lipnet_torch", "`bench/reference/lipnet_torch.py`",
              (Row("paper LipNet, training step, batch 8 of 3x75x50x100", "train_step_s", "train_step_s", "s"),
               Row("paper LipNet, inference, one clip, batch 1", "infer_ms", "infer_ms", "ms"))),
    Benchmark("words", "bench.words", "bench.reference.tcn_torch", "`bench/reference/tcn_torch.py`",
              (Row("word network `lrw_resnet18_mstcn`, training step, batch 8 of 1x29x88x88, AdamW", "train_step_s",
                   "train_step_s", "s"),
               Row("word network, forward pass, one clip, batch 1", "infer_ms", "infer_ms", "ms"),
               Row("word network, forward pass, one clip, batch 1, its ONNX export on onnxruntime", "onnx_ms",
                   "infer_ms", "ms"),
               Row("word network, trainable parameters", "params", "parameters", ""))),
)
NAMES = tuple(b.name for b in BENCHMARKS)


class Refused(Exception):
    """The machine is not quiet enough to time on; ``str()`` is the one line to print."""


@dataclass
class Outcome:
    """One script's run: its figures or why it has none, and the load average around it."""

    benchmark: str
    role: str  # "ours" or "reference"
    script: str
    figures: dict = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0


def benchmark_list(value: str) -> list[str]:
    """argparse type: comma-separated benchmark names, each known."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected names among {','.join(NAMES)}, got {value!r}")
    return names


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written (its command lines stay lines), every option's default after its help."""


def build_parser() -> argparse.ArgumentParser:
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--runs", type=positive_int, default=1,
                        help="times the whole sequence runs; the table gives ranges over the runs")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed repetitions in bench/train.py, bench/words.py and their references")
    parser.add_argument("--copies", type=positive_int, default=12,
                        help="bench/preprocess.py's --copies (clips timed: the shared clips times this)")
    parser.add_argument("--grid_dir", default=str(REPO_ROOT.parent / "shared" / "grid"),
                        help="GRID .mpg clips bench/preprocess.py times")
    parser.add_argument("--only", type=benchmark_list, default=",".join(NAMES),
                        help=f"benchmarks to run, comma-separated among {','.join(NAMES)}")
    parser.add_argument("--threads", type=positive_int, default=cores,
                        help="threads every benchmark uses (OMP_NUM_THREADS; the references' --threads); "
                             "the default is the cores this process may run on")
    parser.add_argument("--max_load", type=non_negative_float, default=0.5,
                        help="highest 1-minute load average taken for a quiet machine")
    parser.add_argument("--settle", type=non_negative_float, default=300.0,
                        help="seconds to wait after a script for the load average to fall to --max_load "
                             "before the next; still higher then, the run stops (other work is running)")
    parser.add_argument("--force", action="store_true",
                        help="run on a busy machine anyway (no waiting); the table carries a warning")
    parser.add_argument("--timeout", type=positive_float, default=3600.0,
                        help="seconds one script may run before it is stopped and counted as failed")
    parser.add_argument("--torch_python", default=None,
                        help="Python with torch to run the references with, instead of the cached bench venv "
                             "(default: the venv, made from bench/requirements.txt if missing)")
    parser.add_argument("--venv_python", default="python3.11",
                        help="interpreter that makes the bench venv (python -m venv)")
    parser.add_argument("--cache_dir", default=str(cache_dir().with_name("lipnet-bench")),
                        help="folder of the bench venvs")
    parser.add_argument("--out", default=None,
                        help="also write the table to this file (atomically; default: only print it)")
    return parser


def load_average() -> float:
    return os.getloadavg()[0]


def busy_line(load: float, cores: int, max_load: float, when: str) -> str:
    return (f"the 1-minute load average is {load:.2f} on {cores} cores {when} (at most {max_load:.2f} for a quiet "
            f"machine): other work is running on the cores")


def wait_for_quiet(max_load: float, settle: float, cores: int, after: str) -> float:
    """The load average once it is at most ``max_load``; Refused when it stays higher for ``settle`` seconds."""
    waited, load = 0.0, load_average()
    while load > max_load:
        if waited >= settle:
            raise Refused(f"stopped: {busy_line(load, cores, max_load, f'{waited:.0f} s after {after} finished')}; "
                          f"--force runs anyway")
        if not waited:
            print(f"waiting for the load average to fall to {max_load:.2f} (now {load:.2f})", file=sys.stderr)
        sleep(POLL_S)
        waited += POLL_S
        load = load_average()
    return load


def last_json(stdout: str) -> dict:
    """The JSON object a benchmark prints as its last line; ValueError saying what is there instead."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("printed nothing")
    try:
        figures = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise ValueError(f"its last line is not a JSON object: {lines[-1][:200]!r}") from None
    if not isinstance(figures, dict):
        raise ValueError(f"its last line is not a JSON object: {lines[-1][:200]!r}")
    return figures


def check_figures(figures: dict, keys: list[str]) -> None:
    """ValueError naming the first figure that is missing or not a positive finite number."""
    for key in keys:
        value = figures.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"figure {key!r} is {'missing' if key not in figures else repr(value)}, "
                             f"not a positive number")


def tail(text: str, lines: int = 8) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def run_script(python: str, module: str, argv: list[str], env: dict, timeout: float) -> tuple[dict, float]:
    """(figures, seconds) of ``python -m module argv`` from the repository root; RuntimeError saying why not."""
    script = module.replace(".", "/") + ".py"
    start = time.perf_counter()
    try:
        result = subprocess.run([python, "-m", module, *argv], cwd=REPO_ROOT, env=env, capture_output=True,
                                text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{script}: stopped after --timeout {timeout:g} s") from None
    except OSError as err:
        raise RuntimeError(f"{script}: {python} cannot be run ({err.strerror or err})") from None
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{script}: exit status {result.returncode}\n{tail(result.stderr or result.stdout)}")
    try:
        return last_json(result.stdout), seconds
    except ValueError as err:
        raise RuntimeError(f"{script}: {err}") from None


def script_args(bench: Benchmark, role: str, args: argparse.Namespace) -> list[str]:
    if bench.name == "preprocess":
        return [f"--grid_dir={args.grid_dir}", f"--copies={args.copies}"]
    argv = [f"--repeats={args.repeats}"]
    return argv + [f"--threads={args.threads}"] if role == "reference" else argv


def run_sequence(args: argparse.Namespace, torch_python: str | None, cores: int, first: bool) -> list[Outcome]:
    """One run of every chosen benchmark and its reference, one after the other."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    outcomes: list[Outcome] = []
    for bench in (b for b in BENCHMARKS if b.name in args.only):
        steps = [("ours", bench.ours, sys.executable)]
        if bench.reference:
            steps.append(("reference", bench.reference, torch_python))
        for role, module, python in steps:
            outcome = Outcome(bench.name, role, bench.script(module))
            if not first and not args.force:
                wait_for_quiet(args.max_load, args.settle, cores, outcomes[-1].script if outcomes else "the last run")
            first = False
            outcome.load_before = load_average()
            print(f"{outcome.script} ({role}) ...", file=sys.stderr, flush=True)
            keys = [row.ours if role == "ours" else row.reference for row in bench.rows]
            if bench.reference is None:
                keys += [row.reference for row in bench.rows]
            try:
                outcome.figures, outcome.seconds = run_script(python, module, script_args(bench, role, args), env,
                                                              args.timeout)
                check_figures(outcome.figures, keys)
            except (RuntimeError, ValueError) as err:
                outcome.error = str(err) if isinstance(err, RuntimeError) else f"{outcome.script}: {err}"
                print(f"error: {outcome.error}", file=sys.stderr)
            outcome.load_after = load_average()
            if not outcome.error:
                print(f"  {outcome.seconds:.0f} s, load average {outcome.load_before:.2f} before, "
                      f"{outcome.load_after:.2f} after", file=sys.stderr)
            outcomes.append(outcome)
    return outcomes


def bench_venv(args: argparse.Namespace) -> str:
    """The bench venv's Python: cached under --cache_dir by the hash of bench/requirements.txt, made when missing.

    A venv counts as made once its ``.installed`` file is there (written last); a half-made one is removed and
    made again. A lock keeps two runs from making the same one at once."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    root = Path(args.cache_dir)
    venv, log = root / f"venv-{digest}", root / f"venv-{digest}.log"
    python, marker = venv / "bin" / "python", venv / ".installed"
    if marker.is_file():
        return str(python)
    ensure_writable_dir(root)
    with open(root / f"venv-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():
            return str(python)
        if venv.exists():
            shutil.rmtree(venv)
        print(f"making the bench venv {venv} from {REQUIREMENTS} (output in {log})", file=sys.stderr)
        with open(log, "w") as out:
            for command in ([args.venv_python, "-m", "venv", str(venv)],
                            [str(python), "-m", "pip", "install", "-r", str(REQUIREMENTS)],
                            [str(python), "-c", "import torch"]):
                try:
                    done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode == 0
                except OSError as err:
                    done = False
                    out.write(f"{command[0]}: {err.strerror or err}\n")
                if not done:
                    raise RuntimeError(f"making the bench venv failed at `{' '.join(command)}`; see {log}")
        write_text_atomic(marker, digest + "\n")
    return str(python)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def installed_version(*names: str) -> str:
    """The version of the first of ``names`` installed here (read from its metadata: nothing is imported)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def span(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if format(low, fmt) == format(high, fmt) else f"{format(low, fmt)}-{format(high, fmt)}"


def figure_cell(values: list[float], unit: str, failed: int, runs: int) -> str:
    if not values:
        return "FAILED"
    if unit:
        text = span(values, ".3g" if unit == "s" else ".0f") + f" {unit}"
    else:
        text = span(values, ",.0f")
    return text + (f" (FAILED in {failed} of {runs} runs)" if failed else "")


def row_cells(bench: Benchmark, row: Row, runs: list[list[Outcome]]) -> tuple[str, str, str]:
    """The ours, reference and ratio cells of ``row`` over ``runs``; a ratio pairs the two of the same run."""
    ours, ref, ratios = [], [], []
    ours_failed = ref_failed = 0
    for outcomes in runs:
        mine = next(o for o in outcomes if o.benchmark == bench.name and o.role == "ours")
        theirs = mine if bench.reference is None else next(
            o for o in outcomes if o.benchmark == bench.name and o.role == "reference")
        a = None if mine.error else float(mine.figures[row.ours])
        b = None if theirs.error else float(theirs.figures[row.reference])
        ours_failed += a is None
        ref_failed += b is None
        ours += [] if a is None else [a]
        ref += [] if b is None else [b]
        if a is not None and b is not None:
            ratios.append(b / a)
    if not ratios:
        ratio = "FAILED"
    elif row.unit:
        ratio = span(ratios, ".1f" if max(ratios) >= 10 else ".2f") + "x"
    else:
        ratio = "same" if all(r == 1 for r in ratios) else "DIFFERENT"
    return (figure_cell(ours, row.unit, ours_failed, len(runs)), figure_cell(ref, row.unit, ref_failed, len(runs)),
            ratio)


def format_table(runs: list[list[Outcome]], meta: dict) -> str:
    """The Markdown report: what ran where, the figures and ratios, the load around each script, any failures."""
    chosen = [b for b in BENCHMARKS if any(o.benchmark == b.name for o in runs[0])]
    torch_versions = sorted({str(o.figures["torch"]) for run in runs for o in run if "torch" in o.figures})
    lines = ["# Speed against the references", "",
             f"- date: {meta['date']}",
             f"- machine: {meta['cpu']}, {meta['cores']} cores; threads per benchmark: {meta['threads']}",
             f"- versions: Python {meta['python']}, mxnet {meta['mxnet']}, torch {', '.join(torch_versions) or '-'}",
             f"- runs: {len(runs)}, each script after the other in one window; a range is min-max over the runs",
             f"- command: `{meta['command']}`"]
    if meta.get("forced"):
        lines += ["", f"**WARNING: run with --force ({meta['forced']}): these figures are not comparable with a "
                  "quiet run's.**"]
    lines += ["", "| what | ours | reference | ours vs reference | scripts |", "|---|---|---|---|---|"]
    for bench in chosen:
        for row in bench.rows:
            ours, ref, ratio = row_cells(bench, row, runs)
            lines.append(f"| {row.what} | {ours} | {ref} | {ratio} | `{bench.script(bench.ours)}` against "
                         f"{bench.reference_label} |")
    lines += ["", "Ratio: the reference's figure over ours (above 1x ours is faster), each run's pair taken "
              "together.", "", "| run | script | seconds | load before | load after |", "|---|---|---|---|---|"]
    for number, outcomes in enumerate(runs, 1):
        for o in outcomes:
            seconds = "FAILED" if o.error else f"{o.seconds:.0f}"
            lines.append(f"| {number} | `{o.script}` | {seconds} | {o.load_before:.2f} | {o.load_after:.2f} |")
    failures = [f"- run {n}: {o.error}" for n, outcomes in enumerate(runs, 1) for o in outcomes if o.error]
    if failures:
        lines += ["", "## Failures", "", *failures]
    return "\n".join(lines) + "\n"


def check_inputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Settings that would fail a run only after the first benchmarks: refused before any work (exit 2)."""
    if "preprocess" in args.only and not any(Path(args.grid_dir).glob("*.mpg")):
        parser.error(f"--grid_dir {args.grid_dir}: no .mpg clips there (bench/preprocess.py times them)")
    if args.torch_python and not (Path(args.torch_python).is_file() and os.access(args.torch_python, os.X_OK)):
        parser.error(f"--torch_python {args.torch_python}: not an executable file")
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            parser.error(f"--out {out}: a folder, not a file")
        try:
            ensure_writable_dir(out.parent)
        except NotWritableError as err:
            parser.error(f"--out: {err}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    check_inputs(args, parser)
    cores = len(os.sched_getaffinity(0))
    load = load_average()
    forced = "no load check between the scripts" if args.force else None
    if load > args.max_load:
        line = busy_line(load, cores, args.max_load, "before the start")
        if not args.force:
            print(f"refusing to run: {line}; --force runs anyway", file=sys.stderr)
            return 2
        forced = f"{line}; no load check between the scripts"
        print(f"WARNING: {line}; timing anyway (--force)", file=sys.stderr)
    torch_python = None
    if any(b.reference for b in BENCHMARKS if b.name in args.only):
        try:
            torch_python = args.torch_python or bench_venv(args)
        except (RuntimeError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    meta = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_model(), "cores": cores, "threads": args.threads, "python": platform.python_version(),
            "mxnet": installed_version("mxnet", "mxnet-cu117"), "forced": forced,
            "command": " ".join(["python bench/speed_table.py", *(sys.argv[1:] if argv is None else argv)])}
    runs = []
    try:
        for number in range(args.runs):
            runs.append(run_sequence(args, torch_python, cores, first=number == 0))
    except Refused as err:
        print(str(err), file=sys.stderr)
        return 2
    table = format_table(runs, meta)
    print(table, end="")
    if args.out:
        write_text_atomic(args.out, table)
    return 1 if any(o.error for run in runs for o in run) else 0


if __name__ == "__main__":
    sys.exit(main())
