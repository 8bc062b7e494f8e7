"""utils/download_data.py against a real HTTP server on 127.0.0.1 that serves GRID-shaped archives."""
from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from utils import download_data as dd

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIPS = ("bbaf2n", "lwbsza", "swwp2s")  # the same clip names for every speaker, as in GRID


def mpg_bytes(speaker: int, clip: str) -> bytes:
    """About 75 kB, so that half a video archive spans more than one of the downloader's chunks:
    a transfer cut in the middle of a chunk loses that chunk, and the resume asks for the rest."""
    return f"MPEG s{speaker} {clip} ".encode() * 4000


def align_bytes(speaker: int, clip: str) -> str:
    return f"0 23750 sil\n23750 29500 s{speaker}{clip}\n"


def video_zip(speaker: int, extra: dict[str, bytes] | None = None) -> bytes:
    """GRID's s{i}.mpg_vcd.zip: an inner s{i}/ folder of .mpg files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"s{speaker}/", b"")
        for clip in CLIPS:
            zf.writestr(f"s{speaker}/{clip}.mpg", mpg_bytes(speaker, clip))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def add_tar_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def align_tar(speaker: int, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """GRID's s{i}.tar: align/{clip}.align files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for clip in CLIPS:
            add_tar_file(tf, f"align/{clip}.align", align_bytes(speaker, clip).encode())
        for info in extra or []:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buf.getvalue()


def video_path(speaker: int) -> str:
    return f"/grid/s{speaker}/video/s{speaker}.mpg_vcd.zip"


def align_path(speaker: int) -> str:
    return f"/grid/s{speaker}/align/s{speaker}.tar"


class GridServer:
    """A tiny GRID mirror whose misbehaviour each test chooses; it records every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        for speaker in range(1, 35):
            self.files[align_path(speaker)] = align_tar(speaker)
            if speaker not in dd.NO_VIDEO:
                self.files[video_path(speaker)] = video_zip(speaker)
        self.requests: list[tuple[str, str | None]] = []
        self.cut_once: set[str] = set()  # first response sends half the body, then drops the connection
        self.cut_at: dict[str, int] = {}  # first response ends (connection closed) at this byte of the file
        self.no_length: set[str] = set()  # sent without Content-Length, and Content-Range says bytes a-b/*
        self.failures: dict[str, list[int]] = {}  # the next responses are these HTTP errors
        self.ignore_range = False
        self.range_from_zero = False  # answer a Range request with 206 for the whole file
        self.on_half: dict[str, object] = {}  # called after half the body, before the rest
        self.silent: set[str] = set()  # read the request, then send nothing at all
        self.stall: dict[str, int] = {}  # send the headers and this many bytes, then nothing
        self.trickle: dict[str, int] = {}  # send the body at this many bytes a second
        self.sent: dict[str, int] = {}  # body bytes flushed to the client so far, per path
        self.release = threading.Event()  # ends every silence, stall and trickle (at teardown)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                with server.lock:
                    server.requests.append((self.path, rng))
                    queued = server.failures.get(self.path)
                    failure = queued.pop(0) if queued else None
                    cut = self.path in server.cut_once
                    server.cut_once.discard(self.path)
                    cut_at = server.cut_at.pop(self.path, None)
                    no_length = self.path in server.no_length
                body = server.files.get(self.path)
                if self.path in server.silent:
                    server.release.wait()
                    return
                if failure or body is None:
                    self.send_error(failure or 404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = 0 if server.range_from_zero else int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    total = "*" if no_length else len(body)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{total}")
                else:
                    self.send_response(200)
                payload = body[start:]
                if not no_length:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if cut_at is not None:
                    self.wfile.write(payload[:max(cut_at - start, 0)])
                    return  # HTTP/1.0: the connection closes, which is the end of a body without a length
                if self.path in server.stall:
                    self.send_slowly(payload[: server.stall[self.path]])
                    server.release.wait()
                    return
                if self.path in server.trickle:
                    self.send_slowly(payload, server.trickle[self.path])
                    return
                half = len(payload) // 2
                self.wfile.write(payload[:half])
                self.wfile.flush()
                if cut:
                    return  # HTTP/1.0: the connection closes after the handler returns
                hook = server.on_half.get(self.path)
                if hook:
                    hook()
                self.wfile.write(payload[half:])

            def send_slowly(self, data: bytes, rate: int | None = None) -> None:
                """``data`` at once, or in pieces of a tenth of ``rate`` every 0.1 s; counted in ``sent``."""
                step = max(rate // 10, 1) if rate else len(data)
                for at in range(0, len(data), step):
                    if rate and server.release.wait(0.1):
                        return
                    try:
                        self.wfile.write(data[at:at + step])
                        self.wfile.flush()
                    except OSError:  # the client went away
                        return
                    with server.lock:
                        server.sent[self.path] = server.sent.get(self.path, 0) + len(data[at:at + step])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/grid"

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    grid = GridServer()
    thread = threading.Thread(target=grid.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield grid
    grid.release.set()
    grid.httpd.shutdown()
    grid.httpd.server_close()


def run(server: GridServer, tmp_path: Path, *extra: str) -> int:
    return dd.main([f"--src_path={tmp_path / 'mp4s'}", f"--align_path={tmp_path / 'align'}",
                    f"--base_url={server.url}", "--backoff=0", *extra])


def assert_speaker_complete(tmp_path: Path, speaker: int, video: bool = True) -> None:
    aligns = tmp_path / "align" / f"s{speaker}"
    assert sorted(p.name for p in aligns.glob("*.align")) == [f"{c}.align" for c in CLIPS]
    for clip in CLIPS:
        assert (aligns / f"{clip}.align").read_text() == align_bytes(speaker, clip)
    videos = tmp_path / "mp4s" / f"s{speaker}"
    if video:
        assert sorted(p.name for p in videos.glob("*.mpg")) == [f"{c}.mpg" for c in CLIPS]
        for clip in CLIPS:
            assert (videos / f"{clip}.mpg").read_bytes() == mpg_bytes(speaker, clip)
        assert dd.read_marker(videos)["files"] == len(CLIPS)
    else:
        assert not videos.exists()


def leftovers(tmp_path: Path) -> list[str]:
    """Staging folders and partial or kept archives anywhere under the output roots."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.name.endswith((".extracting", ".replaced", ".part", ".zip", ".tar")))


def test_success_one_folder_per_speaker(server: GridServer, tmp_path: Path, capsys) -> None:
    assert run(server, tmp_path, "--speakers=1-3", "--n_process=3") == 0
    for speaker in (1, 2, 3):  # same clip names in every speaker: nothing overwritten
        assert_speaker_complete(tmp_path, speaker)
    assert leftovers(tmp_path) == []  # archives deleted after unpacking
    out = capsys.readouterr().out
    assert re.search(r"^s2\s+align\s+ok\s+3 files", out, re.M)
    assert "6 ok, 0 skipped, 0 failed" in out


def test_rerun_downloads_nothing(server: GridServer, tmp_path: Path, capsys) -> None:
    assert run(server, tmp_path, "--speakers=1,2") == 0
    assert len(server.requests) == 4
    capsys.readouterr()
    assert run(server, tmp_path, "--speakers=1,2") == 0
    assert len(server.requests) == 4
    out = capsys.readouterr().out
    assert "0 ok, 4 skipped, 0 failed" in out and "already complete (3 files" in out


def test_cut_transfer_resumes_with_range(server: GridServer, tmp_path: Path) -> None:
    server.cut_once.add(video_path(1))
    assert run(server, tmp_path, "--speakers=1", "--retries=2") == 0
    assert_speaker_complete(tmp_path, 1)
    video = [rng for path, rng in server.requests if path == video_path(1)]
    assert len(video) == 2 and video[0] is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", video[1]).group(1))
    assert 0 < resumed_at <= len(server.files[video_path(1)]) // 2


def test_partial_file_survives_failed_run_and_resumes(server: GridServer, tmp_path: Path, capsys) -> None:
    server.cut_once.add(video_path(4))
    assert run(server, tmp_path, "--speakers=4", "--retries=0") == 1
    assert re.search(r"^s4\s+video\s+failed\s+network error: connection broken during the transfer "
                     r"\(gave up after 1 attempts\)$", capsys.readouterr().out, re.M)
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s4.mpg_vcd.zip.part"
    size = part.stat().st_size
    assert 0 < size <= len(server.files[video_path(4)]) // 2
    assert not (tmp_path / "mp4s" / "s4").exists()
    assert run(server, tmp_path, "--speakers=4", "--retries=0") == 0
    assert server.requests[-1] == (video_path(4), f"bytes={size}-")
    assert_speaker_complete(tmp_path, 4)
    assert leftovers(tmp_path) == []


def test_server_ignoring_range_restarts_from_zero(server: GridServer, tmp_path: Path) -> None:
    server.ignore_range = True
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s5.mpg_vcd.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that must not stay at the front")
    assert run(server, tmp_path, "--speakers=5") == 0
    assert (video_path(5), "bytes=39-") in server.requests
    assert_speaker_complete(tmp_path, 5)


def test_server_sending_another_range_restarts_from_zero(server: GridServer, tmp_path: Path) -> None:
    server.range_from_zero = True
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s5.mpg_vcd.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes")
    assert run(server, tmp_path, "--speakers=5", "--retries=0") == 0
    assert [rng for path, rng in server.requests if path == video_path(5)] == ["bytes=11-", None]
    assert_speaker_complete(tmp_path, 5)


def test_complete_part_file_is_not_downloaded_again(server: GridServer, tmp_path: Path) -> None:
    """A run stopped between the last byte and the rename: the server answers 416."""
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s6.mpg_vcd.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(server.files[video_path(6)])
    assert run(server, tmp_path, "--speakers=6", "--retries=0") == 0
    assert server.paths().count(video_path(6)) == 1
    assert_speaker_complete(tmp_path, 6)


def test_part_file_longer_than_the_server_file_restarts(server: GridServer, tmp_path: Path) -> None:
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s6.mpg_vcd.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(server.files[video_path(6)] + b"trailing junk")
    assert run(server, tmp_path, "--speakers=6", "--retries=0") == 0
    assert [rng for path, rng in server.requests if path == video_path(6)][1] is None
    assert_speaker_complete(tmp_path, 6)


def test_unexpected_status_fails_without_retry(server: GridServer, tmp_path: Path, capsys) -> None:
    server.failures[align_path(6)] = [204]
    assert run(server, tmp_path, "--speakers=6", "--retries=3") == 1
    assert re.search(r"^s6\s+align\s+failed\s+unexpected HTTP 204", capsys.readouterr().out, re.M)
    assert server.paths().count(align_path(6)) == 1
    assert leftovers(tmp_path) == []


def test_unreachable_server_is_retried_then_reported(tmp_path: Path, capsys) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [f"--src_path={tmp_path / 'v'}", f"--align_path={tmp_path / 'a'}", "--speakers=1", "--retries=1",
            "--backoff=0", f"--base_url=http://127.0.0.1:{port}/grid"]
    assert dd.main(argv) == 1
    out = capsys.readouterr().out
    assert re.search(rf"^s1\s+video\s+failed\s+network error: connection refused by 127.0.0.1:{port} "
                     r"\(gave up after 2 attempts\)$", out, re.M)


def test_unsupported_url_fails_without_retry(tmp_path: Path, capsys) -> None:
    argv = [f"--src_path={tmp_path / 'v'}", f"--align_path={tmp_path / 'a'}", "--speakers=1", "--retries=3",
            "--base_url=ftp://example.invalid/grid"]
    assert dd.main(argv) == 1
    out = capsys.readouterr().out
    assert re.search(r"^s1\s+align\s+failed\s+cannot fetch ftp://example.invalid/grid/s1/align/s1.tar", out, re.M)
    assert "retry" not in out


def test_unwritable_output_is_reported_and_the_rest_goes_on(server: GridServer, tmp_path: Path, capsys) -> None:
    (tmp_path / "mp4s").write_text("a file where the video folder should be")
    assert run(server, tmp_path, "--speakers=1") == 1
    out = capsys.readouterr().out
    assert re.search(r"^s1\s+video\s+failed\s+\w+Error: .*mp4s", out, re.M)
    assert re.search(r"^s1\s+align\s+ok", out, re.M)


def test_404_fails_that_speaker_only(server: GridServer, tmp_path: Path, capsys) -> None:
    del server.files[video_path(2)]
    assert run(server, tmp_path, "--speakers=1-3", "--retries=3") == 1
    out = capsys.readouterr().out
    assert re.search(rf"^s2\s+video\s+failed\s+HTTP 404 .*{re.escape(video_path(2))}", out, re.M)
    assert "5 ok, 0 skipped, 1 failed" in out
    assert server.paths().count(video_path(2)) == 1  # a 404 is not retried
    assert_speaker_complete(tmp_path, 1)
    assert_speaker_complete(tmp_path, 3)
    assert_speaker_complete(tmp_path, 2, video=False)
    assert leftovers(tmp_path) == []  # the error page was saved nowhere


def test_server_errors_are_retried_with_exponential_backoff(server: GridServer, tmp_path: Path, capsys) -> None:
    server.failures[align_path(7)] = [503, 500, 429]
    assert run(server, tmp_path, "--speakers=7", "--retries=3", "--backoff=0.05") == 0
    assert server.paths().count(align_path(7)) == 4
    assert_speaker_complete(tmp_path, 7)
    delays = re.findall(r"retry (\d)/3 in ([\d.]+) s", capsys.readouterr().out)
    assert delays == [("1", "0.05"), ("2", "0.10"), ("3", "0.20")]


def test_retries_are_bounded(server: GridServer, tmp_path: Path, capsys) -> None:
    server.failures[align_path(8)] = [503, 503]
    assert run(server, tmp_path, "--speakers=8", "--retries=1") == 1
    assert re.search(r"^s8\s+align\s+failed\s+HTTP 503 .*gave up after 2 attempts", capsys.readouterr().out, re.M)
    assert server.paths().count(align_path(8)) == 2


def corrupt_crc(data: bytes) -> bytes:
    """Flip one byte of a stored member's content: the zip still opens, its CRC no longer matches."""
    at = data.index(b"MPEG s") + 3
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("make_bad", [
    pytest.param(lambda v, a: (corrupt_crc(v), a), id="zip-bad-crc"),
    pytest.param(lambda v, a: (b"<html>Service unavailable</html>", a), id="zip-html-page"),
    pytest.param(lambda v, a: (v, a[: 3 * 512 + 20]), id="tar-truncated"),  # inside the 2nd member
])
def test_corrupt_archive_is_detected_and_nothing_extracted(server, tmp_path, capsys, make_bad) -> None:
    video, align = make_bad(server.files[video_path(9)], server.files[align_path(9)])
    server.files[video_path(9)], server.files[align_path(9)] = video, align
    assert run(server, tmp_path, "--speakers=9") == 1
    out = capsys.readouterr().out
    assert re.search(r"^s9\s+\w+\s+failed\s+s9\.(mpg_vcd\.zip|tar) is (corrupt|truncated)", out, re.M)
    assert "1 ok, 0 skipped, 1 failed" in out
    assert sum(p.is_file() for p in tmp_path.rglob("*")) == 4  # the intact kind's 3 files + marker
    assert leftovers(tmp_path) == []  # the bad archive is deleted so that a rerun fetches it afresh


def symlink_zip_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, (3 if kind == tarfile.REGTYPE else 0)
    return info


@pytest.mark.parametrize("member", ["../evil.mpg", "s10/../../evil.mpg", "/tmp/evil.mpg", "..\\evil.mpg"])
def test_zip_member_outside_target_is_refused(server, tmp_path, capsys, member) -> None:
    server.files[video_path(10)] = video_zip(10, extra={member: b"evil"})
    assert run(server, tmp_path, "--speakers=10") == 1
    out = capsys.readouterr().out
    assert f"refused member {member!r}" in out
    assert not (tmp_path / "mp4s" / "s10").exists()
    assert not any(p.name == "evil.mpg" for p in tmp_path.rglob("*"))
    assert not Path("/tmp/evil.mpg").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(symlink_zip_member("s1/link.mpg"), "/etc/passwd")
    archive = tmp_path / "s1.mpg_vcd.zip"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(dd.ArchiveError, match=r"refused member 's1/link.mpg' \(symbolic link\)"):
        dd.extract(archive, tmp_path, ".mpg")


@pytest.mark.parametrize("member,reason", [
    (tar_member("../x.align"), "'..' in its path"),
    (tar_member("/abs/x.align"), "absolute path"),
    (tar_member("align/link.align", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    (tar_member("align/hard.align", tarfile.LNKTYPE, "align/bbaf2n.align"), "link"),
    (tar_member("align/fifo.align", tarfile.FIFOTYPE), "special file"),
])
def test_tar_unsafe_members_are_refused(server, tmp_path, capsys, member, reason) -> None:
    server.files[align_path(11)] = align_tar(11, extra=[member])
    assert run(server, tmp_path, "--speakers=11") == 1
    assert f"refused member {member.name!r} ({reason})" in capsys.readouterr().out
    assert not (tmp_path / "align" / "s11").exists()
    assert sorted(p.name for p in (tmp_path / "align").iterdir()) == [dd.ARCHIVE_DIR]


def test_archive_without_wanted_files_fails(tmp_path: Path) -> None:
    archive = tmp_path / "s1.tar"
    with tarfile.open(archive, "w") as tf:
        add_tar_file(tf, "align/readme.txt", b"hi")
    with pytest.raises(dd.ArchiveError, match=r"s1\.tar holds no \.align files"):
        dd.extract(archive, tmp_path, ".align")


def test_duplicate_clip_names_in_one_archive_fail(tmp_path: Path) -> None:
    archive = tmp_path / "s1.tar"
    with tarfile.open(archive, "w") as tf:
        add_tar_file(tf, "a/x.align", b"1")
        add_tar_file(tf, "b/x.align", b"2")
    with pytest.raises(dd.ArchiveError, match="would both be written as x.align"):
        dd.extract(archive, tmp_path, ".align")


def test_speaker_21_has_no_video(server: GridServer, tmp_path: Path, capsys) -> None:
    assert run(server, tmp_path, "--speakers=21") == 0
    assert server.paths() == [align_path(21)]
    assert_speaker_complete(tmp_path, 21, video=False)
    out = capsys.readouterr().out
    assert re.search(r"^s21\s+video\s+skipped\s+GRID has no video for speaker 21", out, re.M)


def test_key_value_and_dashed_options_agree(server: GridServer, tmp_path: Path) -> None:
    common = {"base_url": server.url, "speakers": "12,13", "n_process": "2", "retries": "1", "backoff": "0"}
    dashed = [f"--{k}={v}" for k, v in common.items()]
    bare = [f"{k}={v}" for k, v in common.items()]
    a, b = tmp_path / "a", tmp_path / "b"
    assert dd.main([*dashed, f"--src_path={a / 'mp4s'}", f"--align_path={a / 'align'}"]) == 0
    assert dd.main([*bare, f"src_path={b / 'mp4s'}", f"align_path={b / 'align'}"]) == 0
    for root in (a, b):
        for speaker in (12, 13):
            assert_speaker_complete(root, speaker)
    assert len(server.requests) == 8


def test_keep_archives_and_reuse_them(server: GridServer, tmp_path: Path) -> None:
    assert run(server, tmp_path, "--speakers=14", "keep_archives=true") == 0
    assert leftovers(tmp_path) == ["align/.archives/s14.tar", "mp4s/.archives/s14.mpg_vcd.zip"]
    for kind in ("mp4s", "align"):  # the user removes the output: the kept archives refill it
        shutil.rmtree(tmp_path / kind / "s14")
    assert run(server, tmp_path, "--speakers=14") == 0
    assert len(server.requests) == 2
    assert_speaker_complete(tmp_path, 14)
    assert leftovers(tmp_path) == []


def test_unmarked_folder_is_left_alone_and_reported(server: GridServer, tmp_path: Path, capsys) -> None:
    """The user's own files in a speaker folder the downloader did not write survive, byte for byte."""
    mine = tmp_path / "mp4s" / "s15"
    mine.mkdir(parents=True)
    (mine / "swwp2s.mpg").write_bytes(b"the user's own recording")
    (mine / "NOTES.txt").write_text("my notes")
    staging = tmp_path / "align" / ".s15.extracting"  # the downloader's own leftover: cleaned up
    staging.mkdir(parents=True)
    (staging / "half.align").write_text("")
    assert run(server, tmp_path, "--speakers=15") == 1
    assert sorted(p.name for p in mine.iterdir()) == ["NOTES.txt", "swwp2s.mpg"]
    assert (mine / "swwp2s.mpg").read_bytes() == b"the user's own recording"
    assert (mine / "NOTES.txt").read_text() == "my notes"
    out = capsys.readouterr().out
    assert re.search(rf"^s15\s+video\s+failed\s+{re.escape(str(mine))} exists without a \.download_complete "
                     r"marker.*left as it is\. Move it aside \(or delete it\) and rerun to download s15$", out, re.M)
    assert video_path(15) not in server.paths()  # nothing downloaded for it
    assert dd.read_marker(tmp_path / "align" / "s15")["files"] == len(CLIPS)
    assert leftovers(tmp_path) == []


def test_folder_appearing_during_the_download_is_not_replaced(tmp_path: Path) -> None:
    archive = tmp_path / "s1.tar"
    archive.write_bytes(align_tar(1))
    final = tmp_path / "align" / "s1"
    final.mkdir(parents=True)
    (final / "mine.align").write_text("mine")
    with pytest.raises(dd.ForeignFolder, match="left as it is"):
        dd.install(archive, final, ".align", "test")
    assert [p.name for p in final.iterdir()] == ["mine.align"]
    assert sorted(p.name for p in final.parent.iterdir()) == ["s1"]  # the staging folder is gone


def test_ctrl_c_keeps_the_partial_download(server: GridServer, tmp_path: Path, capsys) -> None:
    noise = os.urandom(3 * dd.CHUNK)
    big = video_zip(16, extra={"s16/big.mpg": noise})
    server.files[video_path(16)] = big
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s16.mpg_vcd.zip.part"

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while not (part.exists() and part.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.01)  # let the client store its first chunk
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)  # the main thread stops the worker before the rest arrives

    server.on_half[video_path(16)] = interrupt
    # Python's Ctrl-C handler, even where the tests run as a background job, which starts with SIGINT
    # ignored (a non-interactive shell's `cmd &`) so that Python never installs it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = run(server, tmp_path, "--speakers=16", "--n_process=1")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert status == dd.INTERRUPTED_EXIT
    out = capsys.readouterr().out
    assert "interrupted; the partial download is kept" in out and "rerun the same command" in out
    assert re.search(r"^s16\s+align\s+failed\s+interrupted before it started", out, re.M)
    size = part.stat().st_size
    assert 0 < size < len(big)
    server.on_half.clear()
    assert run(server, tmp_path, "--speakers=16") == 0
    assert (video_path(16), f"bytes={size}-") in server.requests
    assert (tmp_path / "mp4s" / "s16" / "big.mpg").read_bytes() == noise


def member_ends(tar: bytes) -> list[int]:
    """Where each member of a tar ends (its padded data), the cuts ``tarfile`` once took for the archive's end."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return [m.offset_data + -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE for m in tf]


def run_script(server: GridServer, tmp_path: Path, *extra: str, base_url: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """utils/download_data.py as a user runs it, to its end."""
    return subprocess.run(
        [sys.executable, "utils/download_data.py", f"--src_path={tmp_path / 'mp4s'}",
         f"--align_path={tmp_path / 'align'}", f"--base_url={base_url or server.url}", "--backoff=0", *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_a_tar_cut_at_a_member_boundary_without_a_length_is_not_ok_and_resumes(server: GridServer,
                                                                               tmp_path: Path) -> None:
    """Served without Content-Length, a body cut when the connection drops looks whole to HTTP: the
    archive's own end decides, the .part stays and the rerun resumes it."""
    tar = server.files[align_path(1)]
    cut = member_ends(tar)[1]  # after two of the three aligns
    server.no_length.add(align_path(1))
    server.cut_at[align_path(1)] = cut
    proc = run_script(server, tmp_path, "--speakers=1", "--retries=0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(rf"^s1\s+align\s+failed\s+transfer of {re.escape(server.url + '/s1/align/s1.tar')} stopped "
                     rf"at {cut} bytes, before the end of the archive \(the server sent no length\) "
                     r"\(gave up after 1 attempts\)$", proc.stdout, re.M), proc.stdout
    part = tmp_path / "align" / dd.ARCHIVE_DIR / "s1.tar.part"
    assert part.read_bytes() == tar[:cut]
    assert not (tmp_path / "align" / "s1").exists()  # nothing unpacked, nothing a rerun would skip
    proc = run_script(server, tmp_path, "--speakers=1", "--retries=0")
    assert proc.returncode == 0, proc.stdout
    assert (align_path(1), f"bytes={cut}-") in server.requests
    assert_speaker_complete(tmp_path, 1)
    assert leftovers(tmp_path) == []


def test_a_cut_without_a_length_is_resumed_by_the_next_attempt(server: GridServer, tmp_path: Path) -> None:
    for path in (align_path(2), video_path(2)):
        server.no_length.add(path)
        server.cut_at[path] = len(server.files[path]) // 3
    assert run(server, tmp_path, "--speakers=2", "--retries=1") == 0
    assert_speaker_complete(tmp_path, 2)
    for path in (align_path(2), video_path(2)):
        assert [rng for p, rng in server.requests if p == path] == [None, f"bytes={len(server.files[path]) // 3}-"]


def test_an_unknown_host_is_named_in_a_few_words(server: GridServer, tmp_path: Path) -> None:
    proc = run_script(server, tmp_path, "--speakers=1", "--retries=0", base_url="http://grid.invalid/grid",
                      env={"NO_PROXY": "*", "no_proxy": "*"})
    assert proc.returncode == 1
    rows = [line for line in proc.stdout.splitlines() if line.startswith("s1 ")]
    assert [re.sub(r"\s+", " ", row) for row in rows] == [
        f"s1 {kind} failed network error: host not found (grid.invalid) (gave up after 1 attempts)"
        for kind in ("video", "align")]
    assert "HTTPConnectionPool" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("argv,message", [
    (["--speakers=35"], "GRID speakers are 1-34"),
    (["--speakers=x"], "expected speakers like"),
    (["--n_process=0"], "--n_process: expected an integer of at least 1, got '0'"),
    (["--retries=-1"], "--retries: expected an integer of at least 0, got '-1'"),
    (["--retries=1.5"], "--retries: expected an integer of at least 0, got '1.5'"),
    (["--backoff=-0.5"], "--backoff: expected a number of at least 0, got '-0.5'"),
    (["--timeout=0"], "--timeout: expected a number above 0, got '0'"),
    (["--timeout=nan"], "--timeout: expected a number above 0, got 'nan'"),
    (["--keep_archives=maybe"], "--keep_archives: expected a boolean"),
    (["--src_path=same", "--align_path=same"], "must differ"),
])
def test_bad_options_are_rejected(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        dd.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_every_option_says_its_default() -> None:
    for action in dd.build_parser()._actions:
        if action.dest != "help":
            assert "(default" in (action.help or ""), action.option_strings


@pytest.mark.parametrize("cwd,script", [(REPO_ROOT, "utils/download_data.py"),
                                        (REPO_ROOT / "utils", "download_data.py")])
def test_help_runs_as_a_script(cwd: Path, script: str) -> None:
    proc = subprocess.run([sys.executable, script, "--help"], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--src_path", "--align_path", "--n_process", "--speakers", "--base_url", "--retries",
                 "--backoff", "--timeout", "--keep_archives"):
        assert flag in proc.stdout


# ------------------------------------------------------------------ timeouts and Ctrl-C against a bad server


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def start_script(server: GridServer, tmp_path: Path, *extra: str) -> subprocess.Popen:
    """The downloader as a user runs it, with Python's Ctrl-C handler even where the tests run as a
    background job (started with SIGINT ignored, which a child inherits)."""
    return subprocess.Popen(
        [sys.executable, "utils/download_data.py", f"--src_path={tmp_path / 'mp4s'}",
         f"--align_path={tmp_path / 'align'}", f"--base_url={server.url}", "--backoff=0", *extra],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def interrupt(proc: subprocess.Popen, times: int = 1, within: float = 2.0) -> tuple[str, str]:
    """Send Ctrl-C (``times`` of them, 0.2 s apart) and require the exit within ``within`` s of the first."""
    started = time.monotonic()
    for n in range(times):
        if n:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=max(within - (time.monotonic() - started), 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running {within} s after Ctrl-C")
    assert proc.returncode == dd.INTERRUPTED_EXIT, err
    assert "Traceback" not in err, err
    assert "Interrupted: rerun the same command to resume." in out
    return out, err


def test_ctrl_c_against_a_stalled_server_keeps_what_arrived(server: GridServer, tmp_path: Path) -> None:
    server.stall[video_path(17)] = 20_000  # headers and 20 kB, then nothing
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s17.mpg_vcd.zip.part"
    proc = start_script(server, tmp_path, "--speakers=17")
    assert wait_for(lambda: server.sent.get(video_path(17)) == 20_000, 60), "the client never asked"
    wait_for(lambda: part.exists() and part.stat().st_size == 20_000, 3)
    out, _ = interrupt(proc)
    assert re.search(r"^s17\s+video\s+failed\s+interrupted; the partial download is kept", out, re.M)
    assert re.search(r"^s17\s+align\s+ok", out, re.M)
    assert part.stat().st_size == 20_000  # every byte received is kept
    server.stall.clear()
    assert run(server, tmp_path, "--speakers=17") == 0
    assert (video_path(17), "bytes=20000-") in server.requests
    assert_speaker_complete(tmp_path, 17)


def test_ctrl_c_against_a_trickling_server_keeps_what_arrived(server: GridServer, tmp_path: Path) -> None:
    server.trickle[video_path(18)] = 1000  # 1 kB/s
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s18.mpg_vcd.zip.part"
    proc = start_script(server, tmp_path, "--speakers=18")
    assert wait_for(lambda: server.sent.get(video_path(18), 0) >= 2000, 60), "the client never asked"
    wait_for(lambda: part.exists() and part.stat().st_size >= 2000, 3)
    interrupt(proc)
    size = part.stat().st_size
    assert 2000 <= size <= server.sent[video_path(18)]
    server.trickle.clear()
    assert run(server, tmp_path, "--speakers=18") == 0
    assert (video_path(18), f"bytes={size}-") in server.requests
    assert_speaker_complete(tmp_path, 18)


def test_ctrl_c_against_a_silent_server_exits_with_the_summary(server: GridServer, tmp_path: Path) -> None:
    """A request the server never answers cannot be woken: the exit does not wait for it."""
    server.silent.add(video_path(19))
    proc = start_script(server, tmp_path, "--speakers=19")
    assert wait_for(lambda: video_path(19) in server.paths(), 60), "the client never asked"
    out, _ = interrupt(proc)
    assert re.search(r"^s19\s+video\s+failed\s+interrupted while it ran", out, re.M)
    assert not (tmp_path / "mp4s" / "s19").exists()


def test_second_ctrl_c_exits_at_once_with_the_summary(server: GridServer, tmp_path: Path) -> None:
    server.silent.add(video_path(19))
    server.stall[video_path(20)] = 5000
    proc = start_script(server, tmp_path, "--speakers=19,20")
    assert wait_for(lambda: {video_path(19), video_path(20)} <= set(server.paths()), 60), "the client never asked"
    out, err = interrupt(proc, times=2)
    assert "KeyboardInterrupt" not in err
    assert re.search(r"^s19\s+video\s+failed\s+interrupted", out, re.M)
    assert re.search(r"^s20\s+video\s+failed\s+interrupted", out, re.M)
    assert re.search(r"^\d ok, 0 skipped, \d failed$", out, re.M)


def test_read_timeout_is_a_network_error_and_keeps_what_arrived(server: GridServer, tmp_path: Path, capsys) -> None:
    server.stall[video_path(22)] = 3000
    started = time.monotonic()
    assert run(server, tmp_path, "--speakers=22", "--retries=1", "--timeout=0.5") == 1
    assert time.monotonic() - started < 20
    out = capsys.readouterr().out
    assert re.search(r"^s22\s+video\s+failed\s+network error: timed out \(gave up after 2 attempts\)$", out, re.M)
    part = tmp_path / "mp4s" / dd.ARCHIVE_DIR / "s22.mpg_vcd.zip.part"
    assert part.stat().st_size == 6000  # 3000 bytes from each attempt, the second a Range resume
    assert [rng for path, rng in server.requests if path == video_path(22)] == [None, "bytes=3000-"]
