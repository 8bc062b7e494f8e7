"""Why a video yields no mouth crops: one exception with a machine-readable reason, for every reader."""
from __future__ import annotations

from pathlib import Path

REASONS = {
    "missing": "the file does not exist",
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
