"""Outputs checked before the work: ``utils.atomic.ensure_writable_dir`` and infer.py's ``--out`` and
``--subtitles`` (exit 2 with one line, before any model loads or video is read); a write failing during
the run is the output's, named by its file, with one JSON record per video and exit status 1.

Tests run as root here, which writes into read-only folders: unwritable outputs are made with a file
where a folder is needed; the read-only folder case runs only as another user."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from utils.atomic import NotWritableError, ensure_writable_dir, write_text_atomic

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
