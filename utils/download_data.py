"""Download the GRID corpus (videos and word alignments) speaker by speaker.

The original example shelled out to curl without checking the result, so HTTP error pages were
saved as archives and every speaker was reported as a success, and it unpacked the aligns of
all speakers into one folder where clip names repeated across speakers overwrote each other.
Here every speaker gets its own folder (``{src_path}/s{i}/{clip}.mpg``,
``{align_path}/s{i}/{clip}.align``), downloads resume, archives are verified to their end and
checked for unsafe members before anything is unpacked (utils/download/archives.py), and the run
ends with a table of what happened, each failure's cause in a few words (utils/download/causes.py).

Life of one (speaker, kind) job, each step safe to interrupt:
1. ``{root}/.archives/{archive}.part`` grows while downloading (resumed with an HTTP Range
   request next time) and is renamed to ``{archive}`` once complete: at the server's length, or
   where the server gives none, once the archive reaches its own end.
2. The archive is verified, then its ``.mpg``/``.align`` members are unpacked, flat and
   whatever their inner folders, into ``{root}/.s{i}.extracting`` together with a
   ``.download_complete`` marker; that folder is renamed to ``{root}/s{i}`` as the last step,
   so a speaker folder holding the marker is complete and a rerun skips it.
3. The archive is deleted (``--keep_archives`` keeps it; a kept archive is reused, not
   downloaded again, if the speaker folder is removed later).

Nothing of the user's is deleted or overwritten: a speaker folder without the marker was not
written here (or not finished), so that speaker fails with the way out (move the folder aside)
and the folder stays as it is.

Ctrl-C is answered within a second whatever the server does. Each read takes whatever bytes have
arrived and appends them to the ``.part`` file at once (a 64 KB read from a server trickling 1 KB/s
held 64 s of data in memory, lost on Ctrl-C), the sockets of running transfers are shut down on
Ctrl-C, and the downloads run in daemon threads, so a thread still waiting for a silent server's
first byte does not hold the exit back (it has written nothing yet). A second Ctrl-C stops the short
wait for the running jobs' reports; the summary is printed either way.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

from utils.download.archives import CHUNK, ArchiveError, Truncated, extract, verify
from utils.download.causes import cause
from utils.runtime.cli import (
    non_negative_float,
    non_negative_int,
    parse_args,
    parse_speakers,
    positive_float,
    positive_int,
    str2bool,
)
from utils.runtime.paths import ALIGN_DIR, VIDEO_DIR

DEFAULT_BASE_URL = "http://spandh.dcs.shef.ac.uk/gridcorpus"
SPEAKERS = range(1, 35)
NO_VIDEO = frozenset({21})  # GRID never published speaker 21's video; its aligns exist
MARKER = ".download_complete"
ARCHIVE_DIR = ".archives"
DEFAULT_TIMEOUT = 30.0  # seconds to connect, and without a byte while reading
GRACE = 1.0  # seconds the running jobs get to report after Ctrl-C
MAX_BACKOFF = 60.0
RETRY_STATUS = frozenset({408, 425, 429})  # 4xx codes that mean "try later"; every 5xx does too
INTERRUPTED_EXIT = 130
NOT_STARTED = "interrupted before it started; rerun to fetch it"


@dataclass(frozen=True)
class Kind:
    name: str
    suffix: str  # the member extension to extract
    url_path: str  # relative to --base_url, ``{i}`` is the speaker number


KINDS = (
    Kind("video", ".mpg", "s{i}/video/s{i}.mpg_vcd.zip"),
    Kind("align", ".align", "s{i}/align/s{i}.tar"),
)


@dataclass(frozen=True)
class Result:
    speaker: int
    kind: str
    status: str  # ok / skipped / failed
    detail: str


class DownloadError(Exception):
    """A failed transfer; ``retry`` says whether trying again may help (network, 5xx) or not (404)."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Interrupted(Exception):
    """The user stopped the run; partial downloads are kept for the next one."""


class Transfers:
    """The responses being read, so that Ctrl-C can shut their sockets down and wake blocked reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[requests.Response] = set()
        self.stop = threading.Event()

    def add(self, resp: requests.Response) -> None:
        with self._lock:
            self._open.add(resp)
            if self.stop.is_set():  # stopped between the request and here
                self.abort(resp)

    def discard(self, resp: requests.Response) -> None:
        with self._lock:
            self._open.discard(resp)

    @staticmethod
    def abort(resp: requests.Response) -> None:
        """Shut the socket down: a read blocked on it returns at once (an end of data or an error).

        Through a duplicate of its descriptor: urllib3 hands out no socket object once http.client
        has detached it from the connection (every HTTP/1.0 or ``Connection: close`` response).
        """
        try:
            with socket.socket(fileno=os.dup(resp.raw.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError, AttributeError):  # already closed (http.client drops fp at the end of data)
            pass

    def stop_all(self) -> None:
        """Stop every job; called under the lock, so no response is closed (its descriptor reused) meanwhile."""
        self.stop.set()
        with self._lock:
            for resp in self._open:
                self.abort(resp)


# --------------------------------------------------------------------------- download


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; None where absent or ``*``."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes "):].partition("/")
    first = span.partition("-")[0]
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


def _store(resp: requests.Response, part: Path, offset: int, total: int | None, desc: str,
           transfers: Transfers) -> int:
    """Write the body to ``part`` from ``offset`` on (appending, or truncating at 0); returns its size.

    Every read returns what has arrived (``read1``) and goes to the file at once, so an interrupt
    or a timeout loses nothing that was received.
    """
    if transfers.stop.is_set():
        raise Interrupted
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
            leave=False) as bar:
        while chunk := resp.raw.read1(CHUNK):
            out.write(chunk)
            out.flush()
            offset += len(chunk)
            bar.update(len(chunk))
            if transfers.stop.is_set():
                raise Interrupted
    if transfers.stop.is_set():  # the read ended because Ctrl-C shut the socket down
        raise Interrupted
    return offset


def _fetch_once(url: str, part: Path, desc: str, transfers: Transfers, timeout: float) -> int | None:
    """One HTTP request that resumes ``part`` (or restarts it) until the body ends; the file's size where
    the server gave it (the body then had to reach it), None where it did not."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: byte offsets must count the stored bytes, not a decompressed stream
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    stale = False
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as resp:
            transfers.add(resp)
            code = resp.status_code
            first, total = _content_range(resp.headers.get("Content-Range"))
            if code == 416 and offset:
                if total == offset:
                    return total  # the previous run stopped after the last byte but before the rename
                stale = True  # the partial file is longer than the server's file
            elif code >= 400:
                raise DownloadError(f"HTTP {code} {resp.reason} for {url}",
                                    retry=code >= 500 or code in RETRY_STATUS)
            elif code == 206:
                stale = first != offset  # not the range we asked for: trust none of it
            elif code == 200:  # a fresh request, or a server that ignores Range: start from zero
                length = resp.headers.get("Content-Length", "")
                offset, total = 0, (int(length) if length.isdigit() else None)
            else:
                raise DownloadError(f"unexpected HTTP {code} {resp.reason} for {url}", retry=False)
            if not stale:
                try:
                    offset = _store(resp, part, offset, total, desc, transfers)
                finally:
                    transfers.discard(resp)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError, urllib3.exceptions.HTTPError) as err:
        if transfers.stop.is_set():
            raise Interrupted from err
        raise DownloadError(f"network error: {cause(err, url)}", retry=True) from err
    except requests.RequestException as err:
        raise DownloadError(f"cannot fetch {url}: {cause(err, url)}", retry=False) from err
    if stale:
        if transfers.stop.is_set():  # a late answer to a thread left behind by Ctrl-C: touch nothing
            raise Interrupted
        part.unlink()
        return _fetch_once(url, part, desc, transfers, timeout)  # offset is 0 now: no Range, no further restart
    if total is not None and offset != total:
        raise DownloadError(f"transfer of {url} stopped at {offset} of {total} bytes", retry=True)
    return total


def _check_end(part: Path, url: str, check: Callable[[Path], object]) -> None:
    """A body sent without its length ends where the connection closes, as a cut one does: the archive
    must reach its own end, or the transfer counts as cut (DownloadError, retried, ``part`` kept)."""
    try:
        check(part)
    except Truncated as err:
        raise DownloadError(f"transfer of {url} stopped at {part.stat().st_size} bytes, before the end of the "
                            "archive (the server sent no length)", retry=True) from err
    except ArchiveError:
        pass  # whole but unusable: unpacking reports it and deletes the archive


def fetch(url: str, dest: Path, retries: int, backoff: float, transfers: Transfers, timeout: float = DEFAULT_TIMEOUT,
          desc: str = "", check: Callable[[Path], object] | None = None) -> None:
    """Download ``url`` to ``dest`` through ``dest.part`` with retries and exponential backoff.

    The partial file survives failures and interruptions so that the next attempt, in this run
    or a later one, asks only for the missing bytes; ``dest`` appears only once complete, and
    an HTTP error body is never written anywhere. Where the server sends no length, ``check``
    (raising ``Truncated`` for a file that ends early) says whether the body was complete.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            total = _fetch_once(url, part, desc or dest.name, transfers, timeout)
            if total is None and check is not None:
                _check_end(part, url, check)
        except DownloadError as err:
            if transfers.stop.is_set():
                raise Interrupted from err
            if not err.retry:
                raise
            if attempt == retries:
                raise DownloadError(f"{err} (gave up after {retries + 1} attempts)", retry=True) from err
            delay = min(backoff * 2**attempt, MAX_BACKOFF)
            tqdm.write(f"{desc}: {err}; retry {attempt + 1}/{retries} in {delay:.2f} s")
            if transfers.stop.wait(delay):
                raise Interrupted from err
            continue
        os.replace(part, dest)
        return


# --------------------------------------------------------------------------- unpacking


def read_marker(folder: Path) -> dict | None:
    """The completion record of a speaker folder, or None if it is absent or unreadable."""
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class ForeignFolder(Exception):
    """A speaker folder this downloader did not write: it is left alone."""

    def __init__(self, final: Path) -> None:
        super().__init__(
            f"{final} exists without a {MARKER} marker: not written by this downloader, or not finished; "
            f"it is left as it is. Move it aside (or delete it) and rerun to download {final.name}")


def install(archive: Path, final: Path, suffix: str, source: str) -> int:
    """Unpack into a staging folder and rename it to ``final``, which must not exist; returns the file count."""
    staging = final.with_name(f".{final.name}.extracting")
    shutil.rmtree(staging, ignore_errors=True)  # our own, from an interrupted run
    staging.mkdir(parents=True)
    try:
        count = extract(archive, staging, suffix)
        (staging / MARKER).write_text(json.dumps({"source": source, "files": count}) + "\n")
        if os.path.lexists(final):  # appeared while we worked: never replaced
            raise ForeignFolder(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Options:
    base_url: str
    retries: int
    backoff: float
    keep_archives: bool
    timeout: float = DEFAULT_TIMEOUT


def fetch_speaker(speaker: int, kind: Kind, root: Path, opts: Options, transfers: Transfers) -> Result:
    """Download and unpack one speaker's archive of one kind; every outcome becomes a Result."""
    def result(status: str, detail: str) -> Result:
        return Result(speaker, kind.name, status, detail)

    if kind.name == "video" and speaker in NO_VIDEO:
        return result("skipped", f"GRID has no video for speaker {speaker} (its aligns are still fetched)")
    final = root / f"s{speaker}"
    marker = read_marker(final)
    if marker is not None:
        return result("skipped", f"already complete ({marker.get('files', '?')} files in {final})")
    if os.path.lexists(final):
        return result("failed", str(ForeignFolder(final)))
    if transfers.stop.is_set():
        return result("failed", NOT_STARTED)
    url = f"{opts.base_url.rstrip('/')}/{kind.url_path.format(i=speaker)}"
    archive = root / ARCHIVE_DIR / url.rsplit("/", 1)[-1]
    try:
        if not archive.exists():
            fetch(url, archive, opts.retries, opts.backoff, transfers, opts.timeout, desc=f"s{speaker} {kind.name}",
                  check=lambda path: verify(path, kind.suffix))
        try:
            count = install(archive, final, kind.suffix, url)
        except ArchiveError as err:
            archive.unlink(missing_ok=True)
            return result("failed", f"{err}; the archive was deleted so that a rerun downloads it again")
    except (DownloadError, ForeignFolder) as err:
        return result("failed", str(err))
    except Interrupted:
        return result("failed", "interrupted; the partial download is kept and resumes on the next run")
    except OSError as err:
        return result("failed", f"{type(err).__name__}: {err}")
    if not opts.keep_archives:
        archive.unlink(missing_ok=True)
    return result("ok", f"{count} files in {final}")


def summary(results: Sequence[Result]) -> str:
    """A plain-text table with one row per (speaker, kind) and a count per status."""
    order = {kind.name: n for n, kind in enumerate(KINDS)}
    rows = sorted(results, key=lambda r: (r.speaker, order[r.kind]))
    lines = [f"{'speaker':<8} {'kind':<6} {'status':<8} detail"]
    lines += [f"{'s' + str(r.speaker):<8} {r.kind:<6} {r.status:<8} {r.detail}" for r in rows]
    counts = {status: sum(r.status == status for r in rows) for status in ("ok", "skipped", "failed")}
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Download GRID videos and word alignments per speaker, resumably and verified. "
                    "Options may be written --key=value or key=value.")
    parser.add_argument("--src_path", type=Path, default=VIDEO_DIR,
                        help="where videos go, as SRC_PATH/s{i}/{clip}.mpg (default: %(default)s)")
    parser.add_argument("--align_path", type=Path, default=ALIGN_DIR,
                        help="where aligns go, as ALIGN_PATH/s{i}/{clip}.align (default: %(default)s)")
    parser.add_argument("--speakers", type=parse_speakers, default="1-34",
                        help="speakers to fetch, e.g. 1-34, 1,2,20 or 1-3,7 (default: 1-34)")
    parser.add_argument("--n_process", type=positive_int, default=4,
                        help="archives downloaded and unpacked at the same time, in threads (default: %(default)s)")
    parser.add_argument("--base_url", default=DEFAULT_BASE_URL,
                        help="GRID server root; archives are BASE_URL/s{i}/video/s{i}.mpg_vcd.zip "
                             "and BASE_URL/s{i}/align/s{i}.tar (default: %(default)s)")
    parser.add_argument("--retries", type=non_negative_int, default=5,
                        help="retries per archive after network errors and HTTP 5xx/408/429; "
                             "other HTTP errors fail at once (default: %(default)s)")
    parser.add_argument("--backoff", type=non_negative_float, default=2.0,
                        help="seconds before the first retry, doubled for each next one, at most "
                             f"{MAX_BACKOFF:.0f} (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for a connection, and for the next byte while reading, before "
                             "the attempt counts as a network error and is retried (default: %(default)s)")
    parser.add_argument("--keep_archives", type=str2bool, nargs="?", const=True, default=False,
                        help="keep the downloaded archives (in SRC_PATH/.archives and ALIGN_PATH/.archives) "
                             "after unpacking instead of deleting them (default: %(default)s)")
    return parser


class Jobs:
    """``fetch_speaker`` for each (speaker, kind) in daemon threads, ``n_process`` at a time.

    Daemon threads, unlike a ThreadPoolExecutor's, do not hold the exit back: after Ctrl-C a thread
    still waiting for a silent server's first byte is left behind (it has written nothing).
    """

    def __init__(self, jobs: list[tuple[int, Kind, Path]], opts: Options, threads: int) -> None:
        self.transfers = Transfers()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        for job in jobs:
            self._todo.put(job)
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.running: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        self._opts = opts
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(min(threads, len(jobs)))]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while not self.transfers.stop.is_set():
            try:
                speaker, kind, root = self._todo.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self.running.add((speaker, kind.name))
            try:
                result = fetch_speaker(speaker, kind, root, self._opts, self.transfers)
            except Exception as err:  # a bug must not leave the main thread waiting forever
                result = Result(speaker, kind.name, "failed", f"{type(err).__name__}: {err}")
            self.done.put(result)  # before leaving ``running``: not busy means every result is queued
            with self._lock:
                self.running.discard((speaker, kind.name))

    def running_now(self) -> set[tuple[int, str]]:
        """The (speaker, kind) jobs in progress."""
        with self._lock:
            return set(self.running)


class CtrlC:
    """The run's SIGINT handler: it raises nothing, so no half-done step is cut short and no traceback
    is printed; the first Ctrl-C stops the run, a second one the wait for the running jobs."""

    def __init__(self) -> None:
        self.first = threading.Event()
        self.second = threading.Event()

    def __call__(self, signum: int, frame: object) -> None:
        (self.second if self.first.is_set() else self.first).set()


def _collect(jobs: Jobs, results: dict[tuple[int, str], Result], deadline: float | None,
             until: Callable[[], bool]) -> None:
    """Move finished results into ``results`` until, with none left queued, ``until()`` or the deadline."""
    while True:
        try:
            result = jobs.done.get_nowait()
        except queue.Empty:
            if until() or (deadline is not None and time.monotonic() >= deadline):
                return
            try:
                result = jobs.done.get(timeout=0.05)
            except queue.Empty:
                continue
        results[result.speaker, result.kind] = result


def main(argv: list[str] | None = None) -> int:
    """Run the download; 0 if nothing failed, 1 if some job failed, 130 if interrupted."""
    parser = build_parser()
    args = parse_args(parser, argv)
    outside = [s for s in args.speakers if s not in SPEAKERS]
    if outside:
        parser.error(f"GRID speakers are 1-34, got {outside}")
    if args.src_path.resolve() == args.align_path.resolve():
        parser.error("--src_path and --align_path must differ: both kinds use s{i} folders")
    opts = Options(args.base_url, args.retries, args.backoff, args.keep_archives, args.timeout)
    roots = {"video": args.src_path, "align": args.align_path}
    order = [(speaker, kind) for speaker in args.speakers for kind in KINDS]
    results: dict[tuple[int, str], Result] = {}
    ctrl_c = CtrlC()
    try:
        previous = signal.signal(signal.SIGINT, ctrl_c)
    except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt, caught below
        previous = None
    try:
        jobs = Jobs([(speaker, kind, roots[kind.name]) for speaker, kind in order], opts, args.n_process)
        try:
            jobs.start()
            with tqdm(total=len(order), desc="GRID archives", unit="archive") as bar:
                def progress() -> bool:
                    bar.update(len(results) - bar.n)
                    return len(results) == len(order) or ctrl_c.first.is_set()
                _collect(jobs, results, None, progress)
        except KeyboardInterrupt:
            ctrl_c.first.set()
        interrupted = ctrl_c.first.is_set()
        if interrupted:
            jobs.transfers.stop_all()
            _collect(jobs, results, time.monotonic() + GRACE,
                     lambda: ctrl_c.second.is_set() or not jobs.running_now())
        running = jobs.running_now()
        for speaker, kind in order:
            if (speaker, kind.name) not in results:
                detail = (f"interrupted while it ran; what arrived is kept in {ARCHIVE_DIR}/ and a rerun resumes it"
                          if (speaker, kind.name) in running else NOT_STARTED)
                results[speaker, kind.name] = Result(speaker, kind.name, "failed", detail)
        print(summary(list(results.values())))
        if interrupted:
            print("Interrupted: rerun the same command to resume.")
            return INTERRUPTED_EXIT
        return 1 if any(r.status == "failed" for r in results.values()) else 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
