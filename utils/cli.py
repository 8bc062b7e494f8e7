"""Command-line parsing shared by every script.

The original example was driven as ``python main.py model_path=...``; argparse only knows
``--model_path=...``. Both spellings are accepted by rewriting bare ``key=value`` words whose
key is a known option before argparse sees them.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def normalise_argv(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Turn ``key=value`` into ``--key=value`` for every key the parser defines."""
    known = {
        opt[2:]
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--")
    }
    out = []
    for word in argv:
        key, sep, _ = word.partition("=")
        if sep and not word.startswith("-") and key in known:
            out.append("--" + word)
        else:
            out.append(word)
    return out


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) accepting both ``--key=value`` and ``key=value``."""
    args = sys.argv[1:] if argv is None else list(argv)
    return parser.parse_args(normalise_argv(parser, args))


def str2bool(value: str | bool) -> bool:
    """argparse type for ``--flag=true/false`` style options."""
    if isinstance(value, bool):
        return value
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "y", "on"}:
        return True
    if lowered in {"0", "false", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def positive_int(value: str) -> int:
    """argparse type for counts that must be at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def parse_size(value: str) -> tuple[int, int]:
    """argparse type for ``WIDTHxHEIGHT`` (e.g. ``100x50``)."""
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 100x50, got {value!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {value!r}")
    return w, h


def parse_speakers(value: str) -> list[int]:
    """argparse type for speaker sets such as ``1-34``, ``1,2,20`` or ``1-3,7``."""
    speakers: list[int] = []
    try:
        for part in value.split(","):
            part = part.strip().lstrip("s")
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(v.strip().lstrip("s")) for v in part.split("-"))
                if lo > hi:
                    raise ValueError
                speakers.extend(range(lo, hi + 1))
            else:
                speakers.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected speakers like 1-34 or 1,2,20, got {value!r}"
        ) from None
    if not speakers:
        raise argparse.ArgumentTypeError(f"no speakers in {value!r}")
    return sorted(set(speakers))
