"""Command-line parsing shared by every script.

The original example was driven as ``python main.py model_path=...``; argparse only knows
``--model_path=...``. Both spellings are accepted by rewriting bare ``key=value`` words whose
key is a known option before argparse sees them.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence


def normalise_argv(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Turn ``key=value`` into ``--key=value`` for every key the parser defines."""
    known = {
        opt[2:]
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--")
    }
    takes_value = {opt for action in parser._actions if action.nargs != 0 for opt in action.option_strings}
    out = []
    for i, word in enumerate(argv):
        key, sep, _ = word.partition("=")
        if i and argv[i - 1] in takes_value:  # the value of "--override lr=0.1|epochs=2", not an option
            out.append(word)
        elif sep and not word.startswith("-") and key in known:
            out.append("--" + word)
        else:
            out.append(word)
    return out


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) accepting both ``--key=value`` and ``key=value``.

    A parser with ``--config`` and ``--override`` options (``add_config_options``) also takes a YAML
    file of ``key: value`` settings and ``"key=value|key=value"``: the file's settings come first, the
    command line's flags after them and the overrides last, the last one of a key winning, and every
    value goes through its option's type and choices as if typed on the command line.
    """
    parser.allow_abbrev = False  # --epoch=1 must not pass for --epochs=1 (nor --batch for --batch_size)
    args = normalise_argv(parser, sys.argv[1:] if argv is None else list(argv))
    if _known_options(parser) >= {"config", "override"}:
        args = expand_config(parser, args)
    return parser.parse_args(args)


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> set[str]:
    """The destinations of the options ``argv`` sets (on the command line, in its ``--config`` file or its
    overrides), whatever their values: a resume refuses a setting given with another value than its
    run's, and must tell a setting given from one left at its default."""
    args = normalise_argv(parser, sys.argv[1:] if argv is None else list(argv))
    if _known_options(parser) >= {"config", "override"}:
        args = expand_config(parser, args)
    unset = object()
    # argparse fills in a default only where the namespace has no value yet.
    namespace = argparse.Namespace(**{action.dest: unset for action in parser._actions})
    parser.parse_args(args, namespace=namespace)
    return {dest for dest, value in vars(namespace).items() if value is not unset}


def _known_options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt[2:] for action in parser._actions for opt in action.option_strings if opt.startswith("--")}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` and ``--override "key=value|key=value"`` (see ``parse_args``)."""
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="YAML file of option: value settings (e.g. asset/configs/lrw_resnet18_mstcn.yaml); "
                             "command-line flags override it")
    parser.add_argument("--override", default=None, action="append", metavar='"KEY=VALUE|KEY=VALUE"',
                        help="settings applied after the config file and the other flags, separated by |")


def _config_value(value: object) -> str:
    """A YAML value as its command-line spelling: lists comma-separated, booleans true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_config_value(v) for v in value)
    return str(value)


def read_config(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """``--key=value`` words of a YAML config file; parser.error (exit 2) naming the file and the reason
    for a file that is missing, is not UTF-8 YAML (with the line of a syntax error), is not a mapping,
    names an unknown option or gives one a value its option refuses (naming the key)."""
    import yaml  # only scripts with a config option need it

    known = _known_options(parser) - {"config", "override"}
    try:
        with open(path, encoding="utf-8") as f:
            settings = yaml.safe_load(f)
    except OSError as err:
        parser.error(f"--config {path}: cannot be read ({err.strerror or err})")
    except UnicodeDecodeError:
        parser.error(f"--config {path}: not a text file (not UTF-8)")
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        parser.error(f"--config {path}: not valid YAML ({where}{problem})")
    if settings is None:
        return []
    if not isinstance(settings, dict):
        parser.error(f"--config {path}: expected a mapping of option: value, got {type(settings).__name__}")
    actions = {opt[2:]: action for action in parser._actions for opt in action.option_strings}
    words = []
    for key, value in settings.items():
        if key not in known:
            parser.error(f"--config {path}: unknown option {key!r}")
        if value is None:
            continue
        text = _config_value(value)
        try:
            parser._get_values(actions[key], [text])  # the option's type and choices, as on the command line
        except argparse.ArgumentError as err:
            parser.error(f"--config {path}: {key}: {err.message}")
        words.append(f"--{key}={text}")
    return words


def read_overrides(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """``--key=value`` words of ``"key=value|key=value"``; parser.error for a malformed or unknown one."""
    known = _known_options(parser) - {"config", "override"}
    words = []
    for item in text.split("|"):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key:
            parser.error(f"--override: expected key=value, got {item!r}")
        if key not in known:
            parser.error(f"--override: unknown option {key!r}")
        words.append(f"--{key}={value.strip()}")
    return words


def expand_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with its config file's settings put first and its overrides last (see ``parse_args``)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    pre.add_argument("--override", default=None, action="append")
    known, _ = pre.parse_known_args(list(argv))
    config = read_config(parser, known.config) if known.config else []
    overrides = [word for text in known.override or [] for word in read_overrides(parser, text)]
    return config + list(argv) + overrides


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


def _number(value: str, kind: type, what: str) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if kind is float and not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def bounded(kind: type, low: float | None = None, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> Callable[[str], int | float]:
    """An argparse type for an ``int`` or ``float`` in a range: ``low <= x <= high``, ``low < x`` with
    ``low_open`` and ``x < high`` with ``high_open``, either bound optional; the error names the range.
    NaN and infinities are refused.

    Unchecked settings once trained a whole epoch before dividing by ``val_interval=0``, and let
    ``lr=-1`` train; every numeric option of every script goes through one of these.
    """
    limits = []
    if low is not None:
        limits.append(f"above {low:g}" if low_open else f"at least {low:g}")
    if high is not None:
        limits.append(f"below {high:g}" if high_open else f"at most {high:g}")
    if low is not None and high is not None and not (low_open or high_open):
        limits = [f"from {low:g} to {high:g}"]
    elif limits and limits[0].startswith("at "):
        limits[0] = "of " + limits[0]  # "an integer of at least 1", "a number above 0"
    what = ("an integer" if kind is int else "a number") + (" " + " and ".join(limits) if limits else "")

    def parse(value: str) -> int | float:
        number = _number(value, kind, what)
        if low is not None and (number <= low if low_open else number < low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        if high is not None and (number >= high if high_open else number > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        return number

    parse.__name__ = f"{kind.__name__} ({what})"  # argparse names the type in some messages
    return parse


positive_int = bounded(int, 1)  # counts that must be at least 1: batch sizes, epochs, widths
non_negative_int = bounded(int, 0)  # counts where 0 means none or off: workers, retries
positive_float = bounded(float, 0, low_open=True)  # rates, seconds and scales above 0
non_negative_float = bounded(float, 0)  # weights, margins and thresholds where 0 means off
probability = bounded(float, 0, 1)  # augmentation probabilities, dropout rates


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


def positive_ints(value: str) -> list[int]:
    """argparse type for comma-separated positive integers such as ``32,64,96``."""
    numbers = [positive_int(c.strip()) for c in value.split(",") if c.strip()]
    if not numbers:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {value!r}")
    return numbers


def channel_list(value: str) -> str:
    """argparse type: three comma-separated positive channel counts, kept as text for a script that hands
    them on to main.py."""
    counts = positive_ints(value)
    if len(counts) != 3:
        raise argparse.ArgumentTypeError(f"expected three channel counts such as 16,32,48, got {value!r}")
    return ",".join(str(c) for c in counts)
