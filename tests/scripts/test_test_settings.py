"""The test run's own settings (pyproject.toml): the slow test left out by default, a per-test time limit that
fails a hung test by name, and one worker per core."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OPTIONS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def test_the_default_run_leaves_out_only_the_slow_test_and_runs_a_worker_per_core():
    addopts = OPTIONS["addopts"]
    assert addopts[addopts.index("-m") + 1] == "not slow"
    assert addopts[addopts.index("-n") + 1] == "auto"
    assert 0 < OPTIONS["timeout"] <= 600


def test_a_hung_test_fails_by_name_under_the_projects_settings(tmp_path: Path):
    (tmp_path / "test_hangs.py").write_text("import time\n\n\ndef test_that_hangs():\n    time.sleep(60)\n\n\n"
                                            "def test_that_passes():\n    pass\n")
    # the project's settings, with the limit shortened so that the hang is found in two seconds
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(REPO_ROOT / "pyproject.toml"),
                           "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-o", "timeout=2", "-n", "0",
                           str(tmp_path / "test_hangs.py")], capture_output=True, text=True, timeout=50)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "Timeout" in done.stdout and "test_hangs.py::test_that_hangs" in done.stdout
    assert "1 failed, 1 passed" in done.stdout
