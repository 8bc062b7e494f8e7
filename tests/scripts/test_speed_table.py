"""bench/speed_table.py: the load check, the last-JSON-line protocol, the table, a failing benchmark, the bench venv.

Nothing here needs torch or times anything: the benchmarks are small stand-in scripts that print canned figures.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import speed_table
from bench.speed_table import Benchmark, Outcome, Row, check_figures, format_table, last_json
from tests.scripts.test_script_options import option_problems

REPO_ROOT = Path(__file__).resolve().parents[2]
CORES = len(os.sched_getaffinity(0))


def fake_benchmarks(folder: Path, monkeypatch: pytest.MonkeyPatch, exit_status: dict | None = None) -> None:
    """Two pairs of stand-in scripts (modules on PYTHONPATH) printing canned figures; ``exit_status``: module ->
    the status it exits with instead, after printing to stderr."""
    figures = {"fake_train": {"train_step_s": 2.0, "infer_ms": 100.0},
               "fake_train_ref": {"train_step_s": 3.0, "infer_ms": 80.0, "torch": "2.13.0+cpu", "threads": 2},
               "fake_words": {"params": 36361396, "train_step_s": 7.5, "infer_ms": 260.0},
               "fake_words_ref": {"parameters": 36361396, "train_step_s": 3.3, "infer_ms": 130.0,
                                  "torch": "2.13.0+cpu"}}
    for module, values in figures.items():
        status = (exit_status or {}).get(module)
        failing = f"print('Traceback: it broke', file=sys.stderr)\nsys.exit({status})\n" if status else ""
        (folder / f"{module}.py").write_text(
            "import json, os, sys\n"
            "print('argv', sys.argv[1:], 'threads', os.environ.get('OMP_NUM_THREADS'))\n"
            f"{failing}print(json.dumps({values!r}))\n")
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.setattr(speed_table, "BENCHMARKS", (
        Benchmark("lipnet", "fake_train", "fake_train_ref", "the LipNet stand-in",
                  (Row("training step", "train_step_s", "train_step_s", "s"),
                   Row("inference", "infer_ms", "infer_ms", "ms"))),
        Benchmark("words", "fake_words", "fake_words_ref", "the word stand-in",
                  (Row("word training step", "train_step_s", "train_step_s", "s"),
                   Row("word parameters", "params", "parameters", ""))),
    ))


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A machine whose 1-minute load average is whatever the test appends (0.1 once the list runs out)."""
    loads: list[float] = []
    monkeypatch.setattr(os, "getloadavg", lambda: (loads.pop(0) if loads else 0.1, 0.0, 0.0))
    monkeypatch.setattr(speed_table, "sleep", lambda seconds: None)
    return loads


def run_main(argv: list[str]) -> int:
    return speed_table.main(["--torch_python", sys.executable, "--only=lipnet,words", *argv])


def test_a_busy_machine_is_refused_before_anything_runs(quiet, monkeypatch, capsys):
    quiet.append(1.87)
    monkeypatch.setattr(speed_table.subprocess, "run", lambda *a, **k: pytest.fail("a benchmark ran"))
    assert run_main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"refusing to run: the 1-minute load average is 1.87 on {CORES} cores before the start "
                   "(at most 0.50 for a quiet machine): other work is running on the cores; --force runs anyway"]


def test_max_load_sets_the_threshold(quiet, tmp_path, monkeypatch, capsys):
    fake_benchmarks(tmp_path, monkeypatch)
    quiet.append(1.87)
    assert run_main(["--max_load=2"]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_force_runs_on_a_busy_machine_and_says_so_in_the_table(quiet, tmp_path, monkeypatch, capsys):
    fake_benchmarks(tmp_path, monkeypatch)
    quiet.extend([3.5] * 20)
    assert run_main(["--force"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\*\*WARNING: run with --force \(the 1-minute load average is 3\.50 on \d+ cores before the "
                     r"start .*not comparable with a quiet run's\.\*\*", out)


def test_the_run_waits_for_its_own_load_to_die_away_and_stops_when_it_does_not(quiet, tmp_path, monkeypatch, capsys):
    fake_benchmarks(tmp_path, monkeypatch)
    slept: list[float] = []
    monkeypatch.setattr(speed_table, "sleep", slept.append)
    # start 0.1; first script: before 0.1, after 1.5; then 1.5, 0.9, 0.4 (quiet again) before the second.
    quiet.extend([0.1, 0.1, 1.5, 1.5, 0.9, 0.4])
    assert run_main([]) == 0
    assert slept == [5.0, 5.0]
    assert "waiting for the load average to fall to 0.50 (now 1.50)" in capsys.readouterr().err

    slept.clear()
    quiet.extend([0.1, 0.1, 1.5] + [1.2] * 100)
    assert run_main(["--settle=20"]) == 2
    err = capsys.readouterr().err
    assert (f"stopped: the 1-minute load average is 1.20 on {CORES} cores 20 s after fake_train.py finished (at "
            "most 0.50 for a quiet machine): other work is running on the cores; --force runs anyway") in err
    assert len(slept) == 4


def test_the_table_from_the_scripts_json_lines(quiet, tmp_path, monkeypatch, capsys):
    fake_benchmarks(tmp_path, monkeypatch)
    out_file = tmp_path / "tables" / "speed.md"
    assert run_main(["--runs=2", "--threads=1", "--repeats=3", f"--out={out_file}"]) == 0
    out = capsys.readouterr().out
    assert out_file.read_text() == out
    lines = out.splitlines()
    assert lines[0] == "# Speed against the references"
    assert re.fullmatch(r"- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", lines[2])
    assert re.fullmatch(rf"- machine: .+, {CORES} cores; threads per benchmark: 1", lines[3])
    assert re.fullmatch(r"- versions: Python 3\.\d+\.\d+, mxnet [\d.]+, torch 2\.13\.0\+cpu", lines[4])
    assert "| training step | 2 s | 3 s | 1.50x | `fake_train.py` against the LipNet stand-in |" in lines
    assert "| inference | 100 ms | 80 ms | 0.80x | `fake_train.py` against the LipNet stand-in |" in lines
    assert "| word training step | 7.5 s | 3.3 s | 0.44x | `fake_words.py` against the word stand-in |" in lines
    assert "| word parameters | 36,361,396 | 36,361,396 | same | `fake_words.py` against the word stand-in |" in lines
    loads = [line for line in lines if re.match(r"\| [12] \| `fake", line)]
    assert len(loads) == 8 and loads[0].startswith("| 1 | `fake_train.py` |")
    assert "WARNING" not in out and "Failures" not in out


def test_the_settings_reach_the_scripts(tmp_path, monkeypatch):
    fake_benchmarks(tmp_path, monkeypatch)
    seen = []
    real_run = subprocess.run

    def spy(command, **kwargs):
        seen.append((command[1:], kwargs["env"]["OMP_NUM_THREADS"]))
        return real_run(command, **kwargs)

    monkeypatch.setattr(speed_table.subprocess, "run", spy)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert run_main(["--threads=1", "--repeats=3", "--only=lipnet"]) == 0
    assert seen == [(["-m", "fake_train", "--repeats=3"], "1"),
                    (["-m", "fake_train_ref", "--repeats=3", "--threads=1"], "1")]


def test_ranges_over_runs_and_a_parameter_mismatch(monkeypatch):
    bench = Benchmark("b", "bench.ours", "bench.ref", "ref", (Row("step", "t", "t", "s"), Row("n", "p", "q", "")))

    def run(ours_t: float, ref_t: float, ref_q: int) -> list[Outcome]:
        return [Outcome("b", "ours", "bench/ours.py", {"t": ours_t, "p": 10}),
                Outcome("b", "reference", "bench/ref.py", {"t": ref_t, "q": ref_q})]

    runs = [run(2.0, 3.0, 10), run(2.5, 3.0, 11)]
    ten_fold = Benchmark("c", "bench.c", None, "itself", (Row("clip", "ours_s", "orig_s", "s"),))
    runs = [outcomes + [Outcome("c", "ours", "bench/c.py", {"ours_s": 0.2, "orig_s": orig})]
            for outcomes, orig in zip(runs, (5.1, 5.6))]
    meta = {"date": "d", "cpu": "c", "cores": 2, "threads": 2, "python": "3.11.9", "mxnet": "1.9.1", "command": "x"}
    monkeypatch.setattr(speed_table, "BENCHMARKS", (bench, ten_fold))
    lines = format_table(runs, meta).splitlines()
    assert "| clip | 0.2 s | 5.1-5.6 s | 25.5-28.0x | `bench/c.py` against itself |" in lines
    assert "| step | 2-2.5 s | 3 s | 1.20-1.50x | `bench/ours.py` against ref |" in lines
    assert "| n | 10 | 10-11 | DIFFERENT | `bench/ours.py` against ref |" in lines
    assert "- versions: Python 3.11.9, mxnet 1.9.1, torch -" in lines


def test_a_failing_benchmark_is_named_and_the_others_still_run(quiet, tmp_path, monkeypatch, capsys):
    fake_benchmarks(tmp_path, monkeypatch, exit_status={"fake_train_ref": 3})
    out_file = tmp_path / "speed.md"
    assert run_main([f"--out={out_file}"]) == 1
    captured = capsys.readouterr()
    assert "error: fake_train_ref.py: exit status 3\n    Traceback: it broke" in captured.err
    lines = captured.out.splitlines()
    assert "| training step | 2 s | FAILED | FAILED | `fake_train.py` against the LipNet stand-in |" in lines
    assert "| word training step | 7.5 s | 3.3 s | 0.44x | `fake_words.py` against the word stand-in |" in lines
    assert "| 1 | `fake_train_ref.py` | FAILED | 0.10 | 0.10 |" in lines
    assert lines[lines.index("## Failures") + 2] == "- run 1: fake_train_ref.py: exit status 3"
    assert "FAILED" in out_file.read_text()


def test_a_benchmark_without_its_figures_fails(quiet, tmp_path, monkeypatch, capsys):
    fake_benchmarks(tmp_path, monkeypatch)
    (tmp_path / "fake_words_ref.py").write_text("print('all done')\n")
    (tmp_path / "fake_train.py").write_text("import json\nprint(json.dumps({'train_step_s': float('nan')}))\n")
    assert run_main([]) == 1
    err = capsys.readouterr().err
    assert "error: fake_words_ref.py: its last line is not a JSON object: 'all done'" in err
    assert "error: fake_train.py: figure 'train_step_s' is nan, not a positive number" in err


def test_last_json_line():
    assert last_json('warming up\n{"a": 1}\n\n') == {"a": 1}
    for stdout, message in [("", "printed nothing"), ('{"a": 1}\ndone\n', "not a JSON object: 'done'"),
                            ("[1, 2]\n", "not a JSON object: '[1, 2]'")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            last_json(stdout)


def test_figures_must_be_positive_numbers():
    check_figures({"a": 1, "b": 0.5}, ["a", "b"])
    for figures, message in [({}, "'a' is missing"), ({"a": 0}, "'a' is 0"), ({"a": True}, "'a' is True"),
                             ({"a": "1"}, "'a' is '1'"), ({"a": float("inf")}, "'a' is inf")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_figures(figures, ["a"])


def test_a_made_venv_is_reused_and_a_half_made_one_is_made_again(tmp_path, monkeypatch):
    if shutil.which("python3.11") is None:
        pytest.skip("python3.11 is not on PATH")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("")  # nothing to install: "import torch" then fails, so the venv is never complete
    monkeypatch.setattr(speed_table, "REQUIREMENTS", requirements)
    args = speed_table.build_parser().parse_args([f"--cache_dir={tmp_path / 'cache'}"])
    digest = hashlib.sha256(b"").hexdigest()[:12]
    venv = tmp_path / "cache" / f"venv-{digest}"
    (venv / "bin").mkdir(parents=True)
    (venv / "leftover").write_text("half made")
    with pytest.raises(RuntimeError, match=r"making the bench venv failed at `\S+/bin/python -c import torch`; "
                                           rf"see {re.escape(str(venv))}\.log"):
        speed_table.bench_venv(args)
    assert not (venv / "leftover").exists() and not (venv / ".installed").exists()
    assert "No module named 'torch'" in Path(f"{venv}.log").read_text()

    (venv / ".installed").write_text(digest + "\n")
    monkeypatch.setattr(speed_table.subprocess, "run", lambda *a, **k: pytest.fail("a made venv was made again"))
    assert speed_table.bench_venv(args) == str(venv / "bin" / "python")


def script(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "speed_table.py"), *argv], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120, check=False)


@pytest.mark.parametrize(("argv", "message"), [
    (["--runs=0"], "argument --runs: expected an integer of at least 1, got '0'"),
    (["--only=words,lipnet2"], "argument --only: expected names among preprocess,lipnet,words, got 'words,lipnet2'"),
    (["--max_load=-1"], "argument --max_load: expected a number of at least 0, got '-1'"),
    (["--only=preprocess", "--grid_dir=/nonexistent"], "--grid_dir /nonexistent: no .mpg clips there"),
    (["--only=words", "--torch_python=/nonexistent/python"], "--torch_python /nonexistent/python: not an executable"),
    (["--only=words", f"--torch_python={sys.executable}", f"--out={REPO_ROOT}"], f"--out {REPO_ROOT}: a folder"),
])
def test_bad_settings_exit_2_before_any_work(argv: list[str], message: str):
    result = script(*argv)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_the_runner_and_the_references_import_no_framework():
    code = ("import sys, bench.speed_table, bench.reference.tcn_torch; "
            "print(sorted({'mxnet', 'torch'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_the_tcn_reference_options():
    assert option_problems("bench/reference/tcn_torch.py") == {}
    from bench.reference.tcn_torch import build_parser

    args = build_parser().parse_args([])
    assert (args.batch_size, args.num_classes, args.repeats, args.relu_type) == (8, 500, 5, "swish")
    assert args.threads == CORES


def test_the_bench_requirements_pin_torch_for_the_references_only():
    bench = (REPO_ROOT / "bench" / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", bench, re.M)
    for name in ("requirements.txt", "requirements-gpu.txt", "requirements-dev.txt", "requirements-infer.txt"):
        assert not re.search(r"^torch\b", (REPO_ROOT / name).read_text(), re.M), name


def test_the_benchmarks_run_exist():
    """Every script of ours, and the word reference (the LipNet reference comes with its own branch)."""
    for bench in speed_table.BENCHMARKS:
        assert (REPO_ROOT / bench.script(bench.ours)).is_file(), bench.ours
    assert (REPO_ROOT / "bench" / "reference" / "tcn_torch.py").is_file()
    assert speed_table.NAMES == ("preprocess", "lipnet", "words")
