"""Why a video yields no mouth crops: one exception with a machine-readable reason, for every reader."""
from __future__ import annotations

from pathlib import Path

REASONS = {
    "missing": "the file does not exist",
    "permission_denied": "permission denied: this user may not read the file",
    "read_error": "the file cannot be read",
    "empty_file": "the file is empty",
    "decode_error": "no video frame can be decoded from the file",
    "too_short": "too few frames decoded (a very short or truncated video)",
    "no_face": "no face found in any examined frame",
    "few_faces": "a face found in too few of the examined frames",
}


class ExtractionError(Exception):
    """A clip that yields no mouth crops: ``reason`` is a key of ``REASONS``, ``str()`` names the file."""

    def __init__(self, reason: str, path: str | Path, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown extraction failure reason {reason!r}")
        self.reason = reason
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{path}: {detail}")


def check_readable(path: Path) -> None:
    """ExtractionError with the OS's reason when ``path`` is missing, unreadable or empty, before a
    decoder hides it: a decoder reports an unreadable file only as one it cannot decode, so a file of
    mode 000 was called "not a video"."""
    if not path.is_file():
        raise ExtractionError("missing", path, REASONS["missing"])
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except PermissionError:
        raise ExtractionError("permission_denied", path, REASONS["permission_denied"]) from None
    except OSError as err:
        raise ExtractionError("read_error", path, f"{REASONS['read_error']} ({err.strerror or err})") from None
    if empty:
        raise ExtractionError("empty_file", path, REASONS["empty_file"])
