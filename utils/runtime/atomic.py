"""Atomic file writes: a temporary file in the target's folder, then a rename; and output folders
proven writable before the work that fills them.

A reader (or a rerun after a crash) sees either the old file or the whole new one, never half of
one; every writer in the project goes through here. A failed write names the file being written,
not its temporary name.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def make_readable(path: str | Path) -> None:
    """Give a file or folder made by ``tempfile`` (owner-only) the permissions a plain create would get."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_UMASK)


class NotWritableError(OSError):
    """An output folder that cannot be made or written to; ``str()`` names it and says why."""


def ensure_writable_dir(path: str | Path) -> Path:
    """Make the folder ``path`` (and its parents) if it is missing, and prove this process can write
    there by creating and removing a file in it: for scripts to call before their work, so that a run
    does not read every input and then fail to keep the result. Returns the path; raises
    NotWritableError ("PATH: not a folder (a file is there)", "PATH: cannot be created (...)",
    "PATH: not writable (...)")."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotWritableError(f"{path}: not a folder (a file is there)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
        if blocker is not None and not blocker.is_dir():
            raise NotWritableError(f"{path}: cannot be created ({blocker} is a file, not a folder)") from None
        raise NotWritableError(f"{path}: cannot be created ({err.strerror or err})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=path)
    except OSError as err:
        raise NotWritableError(f"{path}: not writable ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` naming the file being written instead of its temporary name (same class: PermissionError, ...)."""
    return OSError(err.errno, err.strerror, str(path)) if err.errno is not None else err


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _naming(err, path) from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        make_readable(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from err
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def remove_output(target: Path) -> None:
    """Remove an output file or folder, if there is one."""
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
