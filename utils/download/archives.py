"""Downloaded archives: verified to their end, checked for unsafe members, then unpacked flat.

A zip is read through its central directory, which sits at its very end, and every member's CRC is
checked, so a truncated or corrupt zip is refused. A tar has neither: Python's ``tarfile`` takes a
header cut short, or no more headers at all, for the end of the archive, so an align tar cut at a
member boundary used to unpack as a complete speaker with half its files. Here a tar must hold every
member's data in full and end with its end-of-archive marker (two zero blocks); the padding some
writers add after the marker may be missing, as it holds nothing. Both kinds tell a ``Truncated``
archive (its bytes run out where its structure needs more: a transfer cut short) from a corrupt one,
so that the downloader can resume the first and delete the second.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 16
ZIP_START = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first bytes: a member's local header, or an empty zip's end


class ArchiveError(Exception):
    """An archive that is corrupt, unsafe to unpack or holds none of the wanted files."""


class Truncated(ArchiveError):
    """An archive whose bytes end before its structure does: a transfer cut short."""


class _Reads:
    """A file that notes whether any read came back short: the archive ran out of bytes there."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")
        self.short = False

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if size is not None and size >= 0 and len(data) < size:
            self.short = True
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def _unsafe(name: str) -> str | None:
    """Why a member name could escape the folder it is unpacked into, or None."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    if ".." in norm.split("/"):
        return "'..' in its path"
    return None


def _refuse(archive: Path, name: str, reason: str) -> ArchiveError:
    return ArchiveError(f"{archive.name}: refused member {name!r} ({reason}); nothing was extracted")


def _targets(archive: Path, names: Sequence[str], suffix: str) -> dict[str, str]:
    """Member name -> flat output name for the members with ``suffix``, whatever their folders."""
    targets: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        stem, ext = os.path.splitext(base)
        if not stem or ext.lower() != suffix:
            continue
        target = stem + suffix
        if target in seen:
            raise ArchiveError(f"{archive.name}: members {seen[target]!r} and {name!r} would both "
                               f"be written as {target}")
        seen[target] = name
        targets[name] = target
    if not targets:
        raise ArchiveError(f"{archive.name} holds no {suffix} files")
    return targets


def verify_zip(archive: Path, suffix: str) -> dict[str, str]:
    """The zip's wanted members (see ``_targets``) once every member's CRC is checked."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            infos = zf.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as err:
        with open(archive, "rb") as f:
            start = f.read(4)
        if any(s.startswith(start) for s in ZIP_START) and isinstance(err, zipfile.BadZipFile):
            raise Truncated(f"{archive.name} is truncated: it starts as a zip archive but ends, after "
                            f"{archive.stat().st_size} bytes, before its central directory") from err
        raise ArchiveError(f"{archive.name} is corrupt or not a zip archive: {err}") from err
    if bad is not None:
        raise ArchiveError(f"{archive.name} is corrupt: bad CRC in member {bad!r}")
    for info in infos:
        reason = _unsafe(info.filename)
        if reason is None and stat.S_ISLNK(info.external_attr >> 16):
            reason = "symbolic link"
        if reason:
            raise _refuse(archive, info.filename, reason)
    return _targets(archive, [info.filename for info in infos if not info.is_dir()], suffix)


def verify_tar(archive: Path, suffix: str) -> dict[str, str]:
    """The (uncompressed) tar's wanted members once every member's data and the end-of-archive marker
    are found in full (``Truncated`` where the file runs out before them)."""
    names = []
    source = _Reads(archive)
    try:
        with tarfile.open(fileobj=source, mode="r:") as tf:
            for member in tf:
                reason = _unsafe(member.name)
                if reason is None and (member.issym() or member.islnk()):
                    reason = "link"
                elif reason is None and not (member.isreg() or member.isdir()):
                    reason = "special file"
                if reason:
                    raise _refuse(archive, member.name, reason)
                if member.isreg():
                    with tf.extractfile(member) as src:  # type: ignore[union-attr]
                        while src.read(CHUNK):  # every byte of every member must be there
                            pass
                    names.append(member.name)
            source.seek(tf.offset)  # where tarfile stopped: its end-of-archive marker, or where it gave up
            end = source.read(2 * tarfile.BLOCKSIZE)
    except (tarfile.TarError, EOFError, OSError) as err:
        if source.short:
            raise Truncated(f"{archive.name} is truncated: its {archive.stat().st_size} bytes end inside a "
                            f"member (after {len(names)} whole files)") from err
        raise ArchiveError(f"{archive.name} is corrupt or not a tar archive: {err}") from err
    finally:
        source.close()
    if source.short:
        raise Truncated(f"{archive.name} is truncated: its {archive.stat().st_size} bytes end after {len(names)} "
                        "files without the end-of-archive marker")
    if end.count(0) != len(end):
        raise ArchiveError(f"{archive.name} is corrupt: {len(names)} files, then bytes that are neither a tar "
                           "member nor its end-of-archive marker")
    return _targets(archive, names, suffix)


def verify(archive: Path, suffix: str) -> dict[str, str]:
    """Member name -> flat output name of the ``suffix`` members of a whole, safe archive (a zip by its
    ``.zip`` name, else a tar; a ``.part`` ending is ignored); ArchiveError (or Truncated) otherwise."""
    name = archive.name.removesuffix(".part")
    return verify_zip(archive, suffix) if name.endswith(".zip") else verify_tar(archive, suffix)


def extract(archive: Path, out_dir: Path, suffix: str) -> int:
    """Verify the whole archive, then copy its ``suffix`` members flat into ``out_dir``.

    Verification comes first so that a corrupt or hostile archive leaves nothing behind.
    """
    targets = verify(archive, suffix)
    is_zip = archive.name.endswith(".zip")
    bar = tqdm(total=len(targets), desc=f"unpack {archive.name}", unit="file", leave=False)
    with bar, (zipfile.ZipFile(archive) if is_zip else tarfile.open(archive, "r:")) as arc:
        for name, target in targets.items():
            src = arc.open(name) if is_zip else arc.extractfile(name)
            with src, open(out_dir / target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            bar.update()
    return len(targets)
