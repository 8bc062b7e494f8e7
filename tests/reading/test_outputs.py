"""Outputs checked before the work: ``utils.runtime.atomic.ensure_writable_dir`` and infer.py's ``--out`` and
``--subtitles`` (exit 2 with one line, before any model loads or video is read); a write failing during
the run is the output's, named by its file, with one JSON record per video and exit status 1.

Tests run as root here, which writes into read-only folders: unwritable outputs are made with a file
where a folder is needed; the read-only folder case runs only as another user."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils.runtime.atomic import NotWritableError, ensure_writable_dir, write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------------------------------ the helper

def test_a_missing_folder_is_made_with_its_parents_and_left_clean(tmp_path: Path):
    folder = tmp_path / "a" / "b"
    assert ensure_writable_dir(folder) == folder and folder.is_dir()
    assert list(folder.iterdir()) == []  # the file that proved it writable is gone
    assert ensure_writable_dir(str(folder)) == folder  # an existing folder is fine


def test_a_file_in_the_way_is_named(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotWritableError, match=r"file: not a folder \(a file is there\)$"):
        ensure_writable_dir(tmp_path / "file")
    with pytest.raises(NotWritableError, match=r"file/sub/dir: cannot be created \(.*file is a file, not a folder\)$"):
        ensure_writable_dir(tmp_path / "file" / "sub" / "dir")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(AS_ROOT or not hasattr(os, "geteuid"), reason="root writes into read-only folders")
def test_a_read_only_folder_is_not_writable(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(NotWritableError, match=r"ro: not writable \(Permission denied\)"):
            ensure_writable_dir(folder)
        with pytest.raises(NotWritableError, match=r"ro/sub: cannot be created \(Permission denied\)"):
            ensure_writable_dir(folder / "sub")
    finally:
        folder.chmod(0o755)


def test_a_failed_atomic_write_names_the_file_not_its_temporary_name(tmp_path: Path):
    (tmp_path / "out.txt").mkdir()  # a folder where the file goes: the rename fails, even as root
    with pytest.raises(IsADirectoryError) as err:
        write_text_atomic(tmp_path / "out.txt", "text")
    assert err.value.filename == str(tmp_path / "out.txt") and ".tmp" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary file left


# ------------------------------------------------------------------------------------------ infer.py

def infer(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), "num_gpus=0", "progress=false", *argv],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def lipnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LipNet saved as a checkpoint: it reads noise, which is all these tests need."""
    from tests.reading.test_infer import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("lipnet") / "best", {"method": "greedy"})


@pytest.mark.parametrize("flag", ["subtitles", "out"])
def test_an_output_that_is_a_file_stops_the_run_before_any_work(flag: str, grid_dir: Path, tmp_path: Path):
    (tmp_path / "taken").write_text("keep me")
    # No model at all: the outputs are checked before one is loaded.
    result = infer(f"model_path={tmp_path / 'no_model'}", f"video={grid_dir}", f"{flag}={tmp_path / 'taken'}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: --{flag} {tmp_path / 'taken'}: not a folder (a file is there)\n"
    assert (tmp_path / "taken").read_text() == "keep me"


def test_an_output_under_a_file_stops_the_run_before_any_video_is_read(grid_dir: Path, lipnet: Path, tmp_path: Path):
    (tmp_path / "taken").write_text("")
    result = infer(f"model_path={lipnet}", f"video={grid_dir}", f"out={tmp_path / 'taken' / 'report'}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: --out {tmp_path / 'taken' / 'report'}: cannot be created "
                             f"({tmp_path / 'taken'} is a file, not a folder)\n")


@pytest.mark.skipif(AS_ROOT or not hasattr(os, "geteuid"), reason="root writes into read-only folders")
def test_a_read_only_subtitles_folder_stops_the_run(grid_dir: Path, lipnet: Path, tmp_path: Path):
    folder = tmp_path / "subs"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = infer(f"model_path={lipnet}", f"video={grid_dir}", f"subtitles={folder}")
    finally:
        folder.chmod(0o755)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: --subtitles {folder}: not writable (Permission denied)\n"


def test_missing_output_folders_are_made(grid_dir: Path, lipnet: Path, tmp_path: Path):
    result = infer(f"model_path={lipnet}", f"video={grid_dir / 'swwp2s.mpg'}", f"out={tmp_path / 'a' / 'out'}",
                   f"subtitles={tmp_path / 'b' / 'subs'}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "a" / "out").iterdir()) == ["predictions.csv", "report.html"]
    assert sorted(p.name for p in (tmp_path / "b" / "subs").iterdir()) == ["swwp2s.srt", "swwp2s.vtt"]


def test_a_subtitle_write_failing_mid_run_is_the_outputs_error(grid_dir: Path, lipnet: Path, tmp_path: Path):
    subs = tmp_path / "subs"
    (subs / "lwbsza.srt").mkdir(parents=True)  # a folder where one video's subtitles go: that write fails
    out = tmp_path / "out"
    result = infer(f"model_path={lipnet}", f"video={grid_dir}", "format=json", f"subtitles={subs}", f"out={out}")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == ["bbaf2n.mpg", "lwbsza.mpg", "swwp2s.mpg"]  # one record per video
    assert all(r["error"] is None and r["utterances"] for r in records)  # every video was read
    failed = str(subs / "lwbsza.srt")
    assert [len(r["warnings"]) for r in records] == [0, 1, 0] and failed in records[1]["warnings"][0]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and failed in errors[0] and "subtitles" in errors[0]
    assert sorted(p.name for p in subs.iterdir()) == ["bbaf2n.srt", "bbaf2n.vtt", "lwbsza.srt", "swwp2s.srt",
                                                      "swwp2s.vtt"]
    page = (out / "report.html").read_text()
    assert "3 read (1 with warnings), 0 failed" in page and 'class="clip failed"' not in page
    assert failed in (out / "predictions.csv").read_text()
