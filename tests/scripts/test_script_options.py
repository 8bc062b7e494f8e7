"""Every entry script's options: help that states the default, numbers range-checked when parsed, no abbreviations.

An entry script is main.py, infer.py, or a file of utils/ or bench/ with a ``__main__`` block; each has a
``build_parser()``, which this file imports (importing a script runs nothing).
"""
from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# (script, option) pairs another branch is fixing in the scripts it owns; skipped here until it is merged.
PENDING_ELSEWHERE: set[tuple[str, str]] = set()


def entry_scripts() -> list[str]:
    scripts = ["main.py", "infer.py"]
    for folder in ("utils", "bench"):
        scripts += sorted(f"{folder}/{path.name}" for path in (REPO_ROOT / folder).glob("*.py")
                          if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8"))
    return scripts


SCRIPTS = entry_scripts()


def _parser(script: str) -> argparse.ArgumentParser:
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    assert hasattr(module, "build_parser"), f"{script}: an entry script needs a build_parser()"
    return module.build_parser()


def _name(action: argparse.Action) -> str:
    return max(action.option_strings, key=len) if action.option_strings else action.dest


def option_problems(script: str) -> dict[str, str]:
    """Option -> what is wrong with it: no help, help without its default, or a type that checks no range."""
    parser = _parser(script)
    states_defaults = issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    problems = {}
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        name, text = _name(action), action.help or ""
        if not text.strip() or text == argparse.SUPPRESS:
            problems[name] = "no help text"
        elif not (states_defaults or action.required or "default" in text.lower()):
            problems[name] = f"help does not state the default: {text!r}"
        if action.type in (int, float):
            problems[name] = f"type is plain {action.type.__name__}: use a range-checked type from utils.runtime.cli"
    return problems


def test_the_entry_scripts_are_all_found():
    assert {"main.py", "infer.py", "utils/launch.py", "utils/export_onnx.py", "bench/train.py",
            "bench/fatbin_archs.py", "bench/captions.py"} <= set(SCRIPTS)
    assert "utils/runtime/cli.py" not in SCRIPTS and "bench/baseline_preprocess.py" not in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_has_help_with_its_default_and_a_range_checked_number_type(script: str):
    problems = {name: why for name, why in option_problems(script).items()
                if (script, name) not in PENDING_ELSEWHERE}
    assert not problems, f"{script}: " + "; ".join(f"{name}: {why}" for name, why in problems.items())


def test_pending_pairs_are_still_real_problems():
    """A pair fixed in the meantime must leave the list, so that the list never hides a new problem."""
    fixed = {(script, name) for script, name in PENDING_ELSEWHERE if name not in option_problems(script)}
    assert not fixed, f"fixed, take them out of PENDING_ELSEWHERE: {sorted(fixed)}"


def test_the_structural_check_catches_each_kind_of_problem(monkeypatch: pytest.MonkeyPatch):
    def bad_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser()
        parser.add_argument("--epochs", type=int, default=3, help="epochs (default: %(default)s)")
        parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
        parser.add_argument("--out", default="x", help="where to write")
        parser.add_argument("--quiet", action="store_true")
        parser.add_argument("--src", required=True, help="input folder")
        return parser

    import bench.fatbin_archs

    monkeypatch.setattr(bench.fatbin_archs, "build_parser", bad_parser)
    problems = option_problems("bench/fatbin_archs.py")
    assert set(problems) == {"--epochs", "--lr", "--out", "--quiet"}
    assert "plain int" in problems["--epochs"] and "plain float" in problems["--lr"]
    assert "does not state the default" in problems["--out"] and problems["--quiet"] == "no help text"


def run(script: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *argv], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120, check=False)


@pytest.mark.parametrize(("script", "argv", "refused"), [
    ("utils/launch.py", ["-n", "1", "--time", "1", "--", sys.executable, "-c", "pass"], "--time"),
    ("utils/build_lm.py", ["--ord=2", "text=/nonexistent"], "--ord=2"),
    ("bench/captions.py", ["--epoch=1"], "--epoch=1"),
])
def test_an_abbreviated_option_is_refused(script: str, argv: list[str], refused: str):
    result = run(script, *argv)
    assert result.returncode == 2, result.stderr
    assert f"unrecognized arguments: {refused}" in result.stderr


def test_launch_passes_the_command_on_as_typed():
    """``timeout=5`` and ``--time`` after ``--`` belong to the command, not to the launcher."""
    from utils.launch import build_parser

    args = build_parser().parse_args(["-n", "2", "--", "python", "main.py", "timeout=5", "--time", "3"])
    assert args.timeout == 0.0 and args.command == ["--", "python", "main.py", "timeout=5", "--time", "3"]


@pytest.mark.parametrize(("script", "argv", "option"), [
    ("utils/build_lm.py", ["order=0", "text=/nonexistent"], "--order"),
    ("utils/estimate_aligns.py", ["src_path=/nonexistent", "tgt_path=/nonexistent", "n_process=0"], "--n_process"),
    ("utils/launch.py", ["-n", "1", "--port", "65536", "--", "true"], "--port"),
    ("utils/launch.py", ["-n", "1", "--grace", "-1", "--", "true"], "--grace"),
    ("utils/launch.py", ["-n", "1", "--timeout", "nan", "--", "true"], "--timeout"),
    ("utils/check_gpu.py", ["num_gpus=0"], "--num_gpus"),
    ("utils/captions_quickstart.py", ["lr=0"], "--lr"),
    ("utils/captions_quickstart.py", ["seed=-1"], "--seed"),
    ("utils/captions_quickstart.py", ["size=0x24"], "--size"),
    ("utils/captions_quickstart.py", ["channels=16,32"], "--channels"),
    ("bench/captions.py", ["batch_size=0"], "--batch_size"),
    ("bench/captions.py", ["seeds=0,-1"], "--seeds"),
    ("bench/captions.py", ["seeds=1,1"], "--seeds"),
    ("bench/decoders.py", ["--beam-width", "0"], "--beam-width/--beam_width"),
    ("bench/infer.py", ["num_workers=-1"], "--num_workers"),
    ("bench/onnx.py", ["batch_sizes=1,0"], "--batch_sizes"),
    ("bench/own_video.py", ["seconds=0"], "--seconds"),
    ("bench/live.py", ["loops=0"], "--loops"),
    ("bench/live.py", ["hold=0.5"], "--hold"),
    ("bench/live.py", ["source=udp", "port=70000"], "--port"),
    ("bench/preprocess.py", ["decode_repeats=0"], "--decode_repeats"),
    ("bench/scale.py", ["epochs=1"], "--epochs"),
    ("bench/scale.py", ["workers=1,0"], "--workers"),
    ("bench/scale.py", ["timeout=0"], "--timeout"),
    ("bench/lengths.py", ["min_frames=29"], "--min_frames"),
    ("bench/loader.py", ["copies=0"], "--copies"),
    ("bench/train.py", ["repeats=0"], "--repeats"),
    ("bench/words.py", ["num_classes=0"], "--num_classes"),
])
def test_an_out_of_range_setting_exits_2_naming_the_option(script: str, argv: list[str], option: str):
    result = run(script, *argv)
    assert result.returncode == 2, result.stderr
    assert re.search(rf"error: argument {re.escape(option)}: (expected|size must be)", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
