"""Which GPU code a CUDA library carries: ``python bench/fatbin_archs.py path/to/libmxnet.so``.

Reads the ``.nv_fatbin`` section of the ELF file and counts its entries by kind (SASS machine code or
PTX) and architecture, e.g. ``SASS sm_50: 197 entries``. It is how docs/gpu.md's support table
was checked against ``mxnet-cu117==1.9.1``: machine code for sm_50, 60, 70, 80 and 86, no PTX.
"""
from __future__ import annotations

import argparse
import mmap
import struct
import sys
from collections import Counter

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

from utils.runtime.cli import parse_args

FATBIN_MAGIC = 0xBA55ED50


def fatbin_entries(path: str) -> Counter:
    """(kind, sm) -> how many fat-binary entries of that kind and architecture the library holds; ValueError
    for a file that is not ELF or is cut short."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            raise ValueError(f"{path}: not an ELF file")
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # 900 MB: read only what is looked at
    try:
        return _count_entries(data)
    except struct.error:
        raise ValueError(f"{path}: truncated or malformed ELF file") from None


def _count_entries(data: mmap.mmap) -> Counter:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize) for i in range(shnum)]
    names = sections[shstrndx][4]
    counts: Counter = Counter()
    for section in sections:
        name = data[names + section[0]:data.find(b"\0", names + section[0])]
        if name != b".nv_fatbin":
            continue
        pos, end = section[4], section[4] + section[5]
        while pos < end:
            magic, _, header_size, size = struct.unpack_from("<IHHQ", data, pos)
            if magic != FATBIN_MAGIC:  # padding between fat binaries
                pos += 8
                continue
            entry, stop = pos + header_size, pos + header_size + size
            while entry < stop:
                kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", data, entry)
                arch, = struct.unpack_from("<I", data, entry + 28)
                counts[({1: "PTX", 2: "SASS"}.get(kind, f"kind {kind}"), arch)] += 1
                entry += entry_header + entry_size
            pos = stop
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("library", help="the ELF shared library to read, e.g. .venv/.../mxnet/libmxnet.so")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    try:
        entries = fatbin_entries(args.library)
    except OSError as err:
        print(f"error: {args.library}: cannot be read ({err.strerror or err})", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for (kind, arch), count in sorted(entries.items()):
        print(f"{kind} sm_{arch}: {count} entries")
    if not any(kind == "PTX" for kind, _ in entries):
        print("PTX: none (no code a newer GPU could compile for itself)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
