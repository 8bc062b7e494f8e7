"""Download the GRID corpus (videos and word alignments) speaker by speaker.

The original example shelled out to curl without checking the result, so HTTP error pages were
saved as archives and every speaker was reported as a success, and it unpacked the aligns of
all speakers into one folder where clip names repeated across speakers overwrote each other.
Here every speaker gets its own folder (``{src_path}/s{i}/{clip}.mpg``,
``{align_path}/s{i}/{clip}.align``), downloads resume, archives are verified and checked for
unsafe members before anything is unpacked, and the run ends with a table of what happened.

Life of one (speaker, kind) job, each step safe to interrupt:
1. ``{root}/.archives/{archive}.part`` grows while downloading (resumed with an HTTP Range
   request next time) and is renamed to ``{archive}`` once complete.
2. The archive is verified, then its ``.mpg``/``.align`` members are unpacked, flat and
   whatever their inner folders, into ``{root}/.s{i}.extracting`` together with a
   ``.download_complete`` marker; that folder is renamed to ``{root}/s{i}`` as the last step,
   so a speaker folder holding the marker is complete and a rerun skips it.
3. The archive is deleted (``--keep_archives`` keeps it; a kept archive is reused, not
   downloaded again, if the speaker folder is removed later).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cli import parse_args, parse_speakers, positive_int, str2bool  # noqa: E402
from utils.paths import ALIGN_DIR, VIDEO_DIR  # noqa: E402

DEFAULT_BASE_URL = "http://spandh.dcs.shef.ac.uk/gridcorpus"
SPEAKERS = range(1, 35)
NO_VIDEO = frozenset({21})  # GRID never published speaker 21's video; its aligns exist
MARKER = ".download_complete"
ARCHIVE_DIR = ".archives"
CHUNK = 1 << 16
TIMEOUT = (15, 60)  # (connect, between bytes) seconds
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


class ArchiveError(Exception):
    """An archive that is corrupt, unsafe to unpack or holds none of the wanted files."""


class Interrupted(Exception):
    """The user stopped the run; partial downloads are kept for the next one."""


# --------------------------------------------------------------------------- download


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; None where absent or ``*``."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes "):].partition("/")
    first = span.partition("-")[0]
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


def _store(resp: requests.Response, part: Path, offset: int, total: int | None, desc: str,
           stop: threading.Event) -> int:
    """Write the body to ``part`` from ``offset`` on (appending, or truncating at 0); returns its size."""
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
            leave=False) as bar:
        for chunk in resp.iter_content(CHUNK):
            if stop.is_set():
                raise Interrupted
            out.write(chunk)
            offset += len(chunk)
            bar.update(len(chunk))
    return offset


def _fetch_once(url: str, part: Path, desc: str, stop: threading.Event) -> None:
    """One HTTP request that resumes ``part`` (or restarts it) until the body ends."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: byte offsets must count the stored bytes, not a decompressed stream
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    stale = False
    try:
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
            code = resp.status_code
            first, total = _content_range(resp.headers.get("Content-Range"))
            if code == 416 and offset:
                if total == offset:
                    return  # the previous run stopped after the last byte but before the rename
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
                offset = _store(resp, part, offset, total, desc, stop)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError) as err:
        raise DownloadError(f"network error for {url}: {err}", retry=True) from err
    except requests.RequestException as err:
        raise DownloadError(f"cannot fetch {url}: {err}", retry=False) from err
    if stale:
        part.unlink()
        return _fetch_once(url, part, desc, stop)  # offset is 0 now: no Range, so no further restart
    if total is not None and offset != total:
        raise DownloadError(f"transfer of {url} stopped at {offset} of {total} bytes", retry=True)


def fetch(url: str, dest: Path, retries: int, backoff: float, stop: threading.Event, desc: str = "") -> None:
    """Download ``url`` to ``dest`` through ``dest.part`` with retries and exponential backoff.

    The partial file survives failures and interruptions so that the next attempt, in this run
    or a later one, asks only for the missing bytes; ``dest`` appears only once complete, and
    an HTTP error body is never written anywhere.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, desc or dest.name, stop)
        except DownloadError as err:
            if not err.retry:
                raise
            if attempt == retries:
                raise DownloadError(f"{err} (gave up after {retries + 1} attempts)", retry=True) from err
            delay = min(backoff * 2**attempt, MAX_BACKOFF)
            tqdm.write(f"{desc}: {err}; retry {attempt + 1}/{retries} in {delay:.2f} s")
            if stop.wait(delay):
                raise Interrupted from err
            continue
        os.replace(part, dest)
        return


# --------------------------------------------------------------------------- archives


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


def _verify_zip(archive: Path, suffix: str) -> dict[str, str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            infos = zf.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as err:
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


def _verify_tar(archive: Path, suffix: str) -> dict[str, str]:
    names = []
    try:
        with tarfile.open(archive, "r:*") as tf:
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
                        while src.read(CHUNK):  # reading every byte is what detects truncation
                            pass
                    names.append(member.name)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as err:
        raise ArchiveError(f"{archive.name} is corrupt or not a tar archive: {err}") from err
    return _targets(archive, names, suffix)


def extract(archive: Path, out_dir: Path, suffix: str) -> int:
    """Verify the whole archive, then copy its ``suffix`` members flat into ``out_dir``.

    Verification comes first so that a corrupt or hostile archive leaves nothing behind.
    """
    is_zip = archive.name.endswith(".zip")
    targets = _verify_zip(archive, suffix) if is_zip else _verify_tar(archive, suffix)
    bar = tqdm(total=len(targets), desc=f"unpack {archive.name}", unit="file", leave=False)
    with bar, (zipfile.ZipFile(archive) if is_zip else tarfile.open(archive, "r:*")) as arc:
        for name, target in targets.items():
            src = arc.open(name) if is_zip else arc.extractfile(name)
            with src, open(out_dir / target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            bar.update()
    return len(targets)


def read_marker(folder: Path) -> dict | None:
    """The completion record of a speaker folder, or None if it is absent or unreadable."""
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def install(archive: Path, final: Path, suffix: str, source: str) -> tuple[int, bool]:
    """Unpack into a staging folder and rename it to ``final``; returns (files, replaced)."""
    staging = final.with_name(f".{final.name}.extracting")
    old = final.with_name(f".{final.name}.replaced")
    for leftover in (staging, old):  # from an interrupted run
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        count = extract(archive, staging, suffix)
        (staging / MARKER).write_text(json.dumps({"source": source, "files": count}) + "\n")
        replaced = final.exists()
        if replaced:  # a folder without a marker: unknown or partial content, superseded
            final.rename(old)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return count, replaced


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Options:
    base_url: str
    retries: int
    backoff: float
    keep_archives: bool


def fetch_speaker(speaker: int, kind: Kind, root: Path, opts: Options, stop: threading.Event) -> Result:
    """Download and unpack one speaker's archive of one kind; every outcome becomes a Result."""
    def result(status: str, detail: str) -> Result:
        return Result(speaker, kind.name, status, detail)

    if kind.name == "video" and speaker in NO_VIDEO:
        return result("skipped", f"GRID has no video for speaker {speaker} (its aligns are still fetched)")
    final = root / f"s{speaker}"
    marker = read_marker(final)
    if marker is not None:
        return result("skipped", f"already complete ({marker.get('files', '?')} files in {final})")
    if stop.is_set():
        return result("failed", NOT_STARTED)
    url = f"{opts.base_url.rstrip('/')}/{kind.url_path.format(i=speaker)}"
    archive = root / ARCHIVE_DIR / url.rsplit("/", 1)[-1]
    try:
        if not archive.exists():
            fetch(url, archive, opts.retries, opts.backoff, stop, desc=f"s{speaker} {kind.name}")
        try:
            count, replaced = install(archive, final, kind.suffix, url)
        except ArchiveError as err:
            archive.unlink(missing_ok=True)
            return result("failed", f"{err}; the archive was deleted so that a rerun downloads it again")
    except DownloadError as err:
        return result("failed", str(err))
    except Interrupted:
        return result("failed", "interrupted; the partial download is kept and resumes on the next run")
    except OSError as err:
        return result("failed", f"{type(err).__name__}: {err}")
    if not opts.keep_archives:
        archive.unlink(missing_ok=True)
    note = " (replaced a folder that had no completion marker)" if replaced else ""
    return result("ok", f"{count} files in {final}{note}")


def summary(results: Sequence[Result]) -> str:
    """A plain-text table with one row per (speaker, kind) and a count per status."""
    order = {kind.name: n for n, kind in enumerate(KINDS)}
    rows = sorted(results, key=lambda r: (r.speaker, order[r.kind]))
    lines = [f"{'speaker':<8} {'kind':<6} {'status':<8} detail"]
    lines += [f"{'s' + str(r.speaker):<8} {r.kind:<6} {r.status:<8} {r.detail}" for r in rows]
    counts = {status: sum(r.status == status for r in rows) for status in ("ok", "skipped", "failed")}
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)



def _non_negative(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = kind(value)
        if number < 0:
            raise argparse.ArgumentTypeError(f"expected a value >= 0, got {value!r}")
        return number
    return parse


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
    parser.add_argument("--retries", type=_non_negative(int), default=5,
                        help="retries per archive after network errors and HTTP 5xx/408/429; "
                             "other HTTP errors fail at once (default: %(default)s)")
    parser.add_argument("--backoff", type=_non_negative(float), default=2.0,
                        help="seconds before the first retry, doubled for each next one, at most "
                             f"{MAX_BACKOFF:.0f} (default: %(default)s)")
    parser.add_argument("--keep_archives", type=str2bool, nargs="?", const=True, default=False,
                        help="keep the downloaded archives (in SRC_PATH/.archives and ALIGN_PATH/.archives) "
                             "after unpacking instead of deleting them (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the download; 0 if nothing failed, 1 if some job failed, 130 if interrupted."""
    parser = build_parser()
    args = parse_args(parser, argv)
    outside = [s for s in args.speakers if s not in SPEAKERS]
    if outside:
        parser.error(f"GRID speakers are 1-34, got {outside}")
    if args.src_path.resolve() == args.align_path.resolve():
        parser.error("--src_path and --align_path must differ: both kinds use s{i} folders")
    opts = Options(args.base_url, args.retries, args.backoff, args.keep_archives)
    roots = {"video": args.src_path, "align": args.align_path}
    jobs = [(speaker, kind) for speaker in args.speakers for kind in KINDS]
    stop = threading.Event()
    results: dict[tuple[int, str], Result] = {}
    interrupted = False
    with ThreadPoolExecutor(args.n_process) as pool:
        futures: dict[Future, tuple[int, Kind]] = {}
        try:
            for speaker, kind in jobs:
                futures[pool.submit(fetch_speaker, speaker, kind, roots[kind.name], opts, stop)] = speaker, kind
            with tqdm(total=len(futures), desc="GRID archives", unit="archive") as bar:
                for future in as_completed(futures):
                    result = future.result()
                    results[result.speaker, result.kind] = result
                    bar.update()
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            for future in futures:
                future.cancel()
    for future, (speaker, kind) in futures.items():  # jobs that were running when stopped
        if future.done() and not future.cancelled():
            results[speaker, kind.name] = future.result()
    for speaker, kind in jobs:
        results.setdefault((speaker, kind.name), Result(speaker, kind.name, "failed", NOT_STARTED))
    print(summary(list(results.values())))
    if interrupted:
        print("Interrupted: rerun the same command to resume.")
        return INTERRUPTED_EXIT
    return 1 if any(r.status == "failed" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
