"""Check that this machine can train LipNet on its GPUs: ``python utils/check_gpu.py [num_gpus=N]``.

Prints the installed MXNet build, the NVIDIA driver, and for each visible GPU its name, compute
capability and memory, whether MXNet 1.9.1 has kernels for it, and how a narrow LipNet's forward
and backward pass went there; then one ``error:`` line per problem, each naming the cause and the
fix (no driver, a CUDA library missing, a GPU generation MXNet cannot run, out of memory, ...).
``main.py`` and ``infer.py`` run the same check when asked for GPUs. Exit status 0 when every GPU
checked works, 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

from utils.runtime.cli import parse_args, positive_int
from utils.runtime.gpu_preflight import check


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_gpus", type=positive_int, default=None,
                        help="check only the first N GPUs, as main.py num_gpus=N would use them (default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    report = check(args.num_gpus)
    for line in report.lines:
        print(line)
    messages = list(dict.fromkeys(str(problem) for problem in report.problems))
    for message in messages:
        print(f"error: {message}")
    if not messages:
        print("ok: MXNet can train on " + ("these GPUs" if len(report.gpus) > 1 else "this GPU"))
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main())
