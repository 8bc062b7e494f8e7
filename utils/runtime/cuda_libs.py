"""Load the CUDA libraries of NVIDIA's pip packages before MXNet's CUDA build loads.

``mxnet-cu117`` bundles no CUDA library: ``libmxnet.so`` links ``libcudart.so.11.0``, ``libcudnn.so.8``,
``libcublas.so.11`` ... and searches only its own folder, so on a machine without a system-wide CUDA 11
``import mxnet`` fails. requirements-gpu.txt installs those libraries as ``nvidia-*-cu11`` packages
(``site-packages/nvidia/*/lib/``); ``preload_cuda_libraries()`` loads the ones ``libmxnet.so`` needs,
dependencies first, with ``RTLD_GLOBAL``, so the dynamic linker finds them already loaded when MXNet's
library loads. No ``LD_LIBRARY_PATH`` is needed.

Which libraries to load is read from the ``DT_NEEDED`` entries of ``libmxnet.so`` itself (and of each
library loaded), not from a list: the CPU build needs none of them, so nothing is loaded there, and
MXNet is never imported to find out. Where no ``nvidia`` package is installed the whole call is one
import-system lookup (``find_spec``, 0.2 ms here); otherwise it reads a few kilobytes of
``libmxnet.so``'s headers (0.05 ms from the page cache, 18 ms for the CUDA build's 900 MB file read
cold), against seconds for ``import mxnet``.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

_loaded: list[Path] | None = None  # what preload_cuda_libraries loaded, once it has run
_failed: dict[str, str] = {}  # soname -> why it could not be loaded


def elf_needed(path: str | os.PathLike) -> list[str]:
    """The ``DT_NEEDED`` sonames of a 64-bit little-endian ELF shared library, in link order.

    Read from the section headers (``.dynamic`` and the string table it links to), a few kilobytes
    of even a 900 MB ``libmxnet.so``; ``[]`` for a file that is not such an ELF library.
    """
    with open(path, "rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:6] != b"\x7fELF\x02\x01":
            return []
        shoff, = struct.unpack_from("<Q", header, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQII", table, i * shentsize) for i in range(shnum)]
        dynamic = next((s for s in sections if s[1] == 6), None)  # SHT_DYNAMIC
        if dynamic is None:
            return []
        f.seek(dynamic[4])
        entries = f.read(dynamic[5])
        strtab = sections[dynamic[6]][4]
        names = []
        for tag, value in struct.iter_unpack("<qQ", entries):
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                f.seek(strtab + value)
                names.append(f.read(256).split(b"\0", 1)[0].decode())
        return names


def mxnet_library() -> Path | None:
    """Where the installed MXNet's ``libmxnet.so`` is, found without importing MXNet."""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        library = Path(folder) / "libmxnet.so"
        if library.is_file():
            return library
    return None


def is_cuda_build(library: Path | None = None) -> bool:
    """Whether the installed MXNet is a CUDA build (its library links the CUDA runtime)."""
    library = library or mxnet_library()
    return library is not None and any(name.startswith("libcudart.") for name in elf_needed(library))


def nvidia_libraries() -> dict[str, Path]:
    """soname -> file of every library in the installed ``nvidia-*`` packages (``nvidia/*/lib/``)."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return {}
    found: dict[str, Path] = {}
    for folder in spec.submodule_search_locations:
        for library in sorted(Path(folder).glob("*/lib/*.so*")):
            found.setdefault(library.name, library)  # the wheels name each file by its soname
    return found


def load_order(roots: Iterable[str], available: dict[str, Path],
               needed: Callable[[Path], list[str]] = elf_needed) -> list[Path]:
    """The files of ``available`` that ``roots`` need, directly or through each other, dependencies first.

    Sonames not in ``available`` (the C library, the driver's ``libcuda.so.1``) are left to the system.
    """
    order: list[Path] = []
    seen: set[str] = set()

    def visit(soname: str) -> None:
        if soname in seen or soname not in available:
            return
        seen.add(soname)
        for dependency in needed(available[soname]):
            visit(dependency)
        order.append(available[soname])

    for root in roots:
        visit(root)
    return order


def preload_cuda_libraries() -> list[Path]:
    """Load the pip-installed CUDA libraries the installed MXNet needs; call before ``import mxnet``.

    Returns the files loaded (none for the CPU build, or where no ``nvidia-*`` package is installed).
    Runs once per process and never raises: a library that fails to load is recorded
    (``failed_libraries``) and MXNet's own import then names what is missing.
    """
    global _loaded
    if _loaded is not None:
        return list(_loaded)
    _loaded = []
    if importlib.util.find_spec("nvidia") is None:
        return []
    library = mxnet_library()
    if library is None:
        return []
    for path in load_order(elf_needed(library), nvidia_libraries()):
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            _failed[path.name] = str(err)
        else:
            _loaded.append(path)
    return list(_loaded)


def failed_libraries() -> dict[str, str]:
    """soname -> why it failed, for pip-installed libraries ``preload_cuda_libraries`` could not load."""
    return dict(_failed)


def missing_libraries(library: Path | None = None) -> dict[str, str]:
    """soname -> the loader's error, for each library ``libmxnet.so`` needs that cannot be loaded now.

    Call after ``preload_cuda_libraries``: a soname it loaded resolves to the loaded file. Libraries
    shipped beside ``libmxnet.so`` (OpenBLAS, gfortran) count as found: its RPATH is its own folder.
    """
    library = library or mxnet_library()
    missing = {}
    for soname in elf_needed(library) if library else []:
        if (library.parent / soname).exists():
            continue
        try:
            ctypes.CDLL(soname)
        except OSError as err:
            missing[soname] = str(err)
    return missing
