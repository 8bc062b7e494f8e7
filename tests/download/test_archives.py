"""Downloaded archives are whole or refused (utils/download/archives.py): every cut of a tar or a zip."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from utils.download.archives import ArchiveError, Truncated, extract, verify

SIZES = (10, 600, 0, 1500, 512)  # data that ends inside a block, empty, and that fills whole blocks


def small_tar(padded: bool) -> tuple[bytes, int]:
    """A tar of five .align members (with a long GNU name and a folder), and where its end-of-archive
    marker ends; ``padded`` keeps tarfile's zeros up to a 10240-byte record, else the tar ends at its marker."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        folder = tarfile.TarInfo("align")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
        for i, size in enumerate(SIZES):
            info = tarfile.TarInfo(f"align/{'long_' * 25 if i == 1 else ''}c{i}.align")
            info.size = size
            tf.addfile(info, io.BytesIO(bytes([65 + i]) * size))
    data = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        last = tf.getmembers()[-1]
    marker_end = last.offset_data + -(-last.size // 512) * 512 + 1024
    return (data if padded else data[:marker_end]), marker_end


def boundaries(data: bytes) -> set[int]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.offset for m in tf} | {m.offset_data for m in tf}


def test_every_cut_of_a_tar_is_refused_and_the_whole_tar_unpacks(tmp_path: Path):
    data, marker_end = small_tar(padded=False)
    assert len(data) == marker_end
    path = tmp_path / "s1.tar"
    path.write_bytes(data)
    refused = set()
    for cut in reversed(range(len(data))):  # every cut point, member boundaries among them
        os.truncate(path, cut)
        with pytest.raises(Truncated, match="s1.tar is truncated"):
            verify(path, ".align")
        refused.add(cut)
    assert boundaries(data) <= refused and len(refused) == len(data)
    path.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    assert extract(path, out, ".align") == len(SIZES)
    for i, size in enumerate(SIZES):
        assert (out / f"{'long_' * 25 if i == 1 else ''}c{i}.align").read_bytes() == bytes([65 + i]) * size


def test_a_tar_missing_only_padding_after_its_marker_is_whole(tmp_path: Path):
    """Writers pad a tar with zeros after its marker to their record size (tarfile and GNU tar: 10240 bytes);
    those zeros hold nothing, so a tar cut among them unpacks every member, as tar itself does."""
    data, marker_end = small_tar(padded=True)
    assert len(data) == 10240 > marker_end
    path = tmp_path / "s1.tar"
    path.write_bytes(data)
    for cut in reversed(range(marker_end, len(data) + 1)):
        os.truncate(path, cut)
        assert len(verify(path, ".align")) == len(SIZES)


def test_bytes_after_the_members_that_are_no_marker_are_corrupt_not_truncated(tmp_path: Path):
    data, marker_end = small_tar(padded=False)
    path = tmp_path / "s1.tar"
    path.write_bytes(data[:marker_end - 1024] + b"<html>not a tar header</html>".ljust(2048, b"!"))
    with pytest.raises(ArchiveError, match="corrupt") as exc:
        verify(path, ".align")
    assert not isinstance(exc.value, Truncated)
    path.write_bytes(b"<html>" + b"Service unavailable " * 100 + b"</html>")
    with pytest.raises(ArchiveError, match="not a tar archive") as exc:
        verify(path, ".align")
    assert not isinstance(exc.value, Truncated)


def test_every_cut_of_a_zip_is_refused_as_truncated(tmp_path: Path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, size in enumerate((10, 600, 1500)):
            zf.writestr(f"s1/c{i}.mpg", bytes([65 + i]) * size)
    data = buf.getvalue()
    path = tmp_path / "s1.mpg_vcd.zip.part"  # a partial download is checked under its .part name
    path.write_bytes(data)
    for cut in reversed(range(len(data))):
        os.truncate(path, cut)
        with pytest.raises(Truncated, match="s1.mpg_vcd.zip.part is truncated"):
            verify(path, ".mpg")
    path.write_bytes(data)
    assert sorted(verify(path, ".mpg").values()) == ["c0.mpg", "c1.mpg", "c2.mpg"]
