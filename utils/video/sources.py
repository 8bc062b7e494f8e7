"""Where frames come from: a video file, or a live source (a camera, a network stream, a named pipe,
standard input), named as a user types it and opened with PyAV (FFmpeg) like a file.

A live source has no end that can be waited for: ``utils.video.live`` takes its frames at its own pace.
FFmpeg normally reads a few seconds of a stream before it hands out the first frame (``probesize``,
``analyzeduration``); opened live it looks at as little as it needs, so a frame is decoded soon after
its packet arrives.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import av

NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
# FFmpeg's options for a source read as it happens: look at 4 KB and at most 0.1 s of it to learn the stream
# (by default 5 MB or 5 s, and with 32 KB a 360x288 stream's first half second came in one burst, more than
# the capture queue holds); the decoder's low-delay flag is set on the stream (utils.video.reader). Not
# ``fflags=nobuffer``: through a pipe it lost 250 of an MPEG-TS stream's 300 frames.
LIVE_OPTIONS = {"probesize": "4096", "analyzeduration": "100000"}
# UDP: a large socket buffer the demuxer drains in its own thread; a full one drops packets, not the stream.
# Its ring of 188-byte packets is filled page by page as data comes and kept whole: 28672 of them (FFmpeg's
# default, 5.4 MB) hold 5 s of an 8 Mbit/s camera; a million made a 10-minute stream's memory rise by the
# stream's own bitrate (7.6 MB a minute), toward 188 MB.
_UDP_OPTIONS = {"fifo_size": "28672", "overrun_nonfatal": "1", "buffer_size": "4194304"}


class SourceError(Exception):
    """A live source that cannot be opened: ``str()`` is one line naming it and saying why."""


class SourceSilent(SourceError):
    """Nothing came from a source within the time it was given to open."""


@dataclass(frozen=True)
class Source:
    """A place to read frames from. ``name`` is as given; ``url`` and ``format`` are what FFmpeg opens."""

    name: str
    kind: str  # file, camera, network, pipe or stdin
    url: str
    format: str | None = None  # FFmpeg's input device or demuxer (v4l2 for a Linux camera), None: detected

    @property
    def live(self) -> bool:
        """Read as it happens by default: everything but a file."""
        return self.kind != "file"

    @property
    def stem(self) -> str:
        """A file name for outputs about this source: a file's or pipe's stem, ``video0`` for /dev/video0,
        ``stdin``, or the URL with what a file name cannot hold replaced (``udp_127.0.0.1_5000``)."""
        if self.kind == "stdin":
            return "stdin"
        if self.kind in ("file", "pipe") or self.url.startswith("/dev/"):
            return Path(self.url).stem or "video"
        if self.kind == "camera":
            return f"camera{self.url}"
        return re.sub(r"[^A-Za-z0-9.-]+", "_", self.url.split("?", 1)[0]).strip("_") or "stream"

    @property
    def waits(self) -> bool:
        """Opened by waiting for a sender (UDP, a listening TCP, SRT or RTMP URL, a pipe), not by reaching it."""
        url = self.url.lower()
        return self.kind in ("pipe", "stdin") or url.startswith("udp://") or "listen" in url.split("?", 1)[-1]

    def options(self) -> dict[str, str]:
        """FFmpeg's options to open it with: the low-delay ones for a live source, UDP's buffering for udp://."""
        if not self.live:
            return {}
        return {**LIVE_OPTIONS, **(_UDP_OPTIONS if self.url.startswith("udp://") else {})}


def parse_source(text: str) -> Source:
    """The source ``text`` names: ``-`` (standard input), a camera (``/dev/video0``, or a camera index: on
    Linux /dev/videoN, on macOS AVFoundation's device N), a URL whose scheme FFmpeg reads as a network
    stream (``NETWORK_SCHEMES``), a named pipe, else a file or folder path."""
    if text == "-":
        return Source(text, "stdin", "pipe:0")
    if text.isdigit():
        if sys.platform == "darwin":
            return Source(text, "camera", text, "avfoundation")
        if sys.platform.startswith("linux"):
            return Source(text, "camera", f"/dev/video{int(text)}", "v4l2")
        raise SourceError(f"camera {text}: a camera index is read on Linux and macOS; on this system give the "
                          "device as FFmpeg names it (for instance a network stream from the camera's software)")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in NETWORK_SCHEMES:
        return Source(text, "network", text)
    if scheme:
        raise SourceError(f"{text}: unknown stream type {scheme}:// (read are {', '.join(sorted(NETWORK_SCHEMES))})")
    if re.fullmatch(r"/dev/video\d+", text):
        return Source(text, "camera", text, "v4l2")
    return Source(text, "pipe" if is_named_pipe(text) else "file", text)


def is_named_pipe(path: str) -> bool:
    """Whether ``path`` is a named pipe (False where there is nothing, or nothing readable, there)."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def open_live(source: Source, read_timeout: float | None,
              open_timeout: float | None = None) -> av.container.InputContainer:
    """``source`` opened for reading as it happens (``Source.options``), waiting at most ``open_timeout``
    seconds for it to open (None: ``read_timeout``, or forever for a source that waits for its sender)
    and ``read_timeout`` for each read (None: forever, as for a pipe whose writer has not started).
    Raises SourceError with one line: no such camera, a camera busy in another program, permission
    denied, a stream that cannot be reached, or one without video."""
    if open_timeout is None and not source.waits:
        open_timeout = read_timeout
    timeouts = None if read_timeout is None and open_timeout is None else (open_timeout, read_timeout)
    try:
        container = av.open(source.url, format=source.format, options=source.options(), timeout=timeouts)
    except OSError as err:
        raise SourceError(f"{source.name}: {_why(source, err)}") from None
    except av.error.ExitError:  # the timeout
        raise SourceSilent(f"{source.name}: nothing came within {open_timeout:g} s") from None
    except av.error.FFmpegError as err:  # not an OSError: an invalid stream
        raise SourceError(f"{source.name}: cannot be opened ({err})") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{source.name}: it has no video stream")
    return container


def _why(source: Source, err: OSError) -> str:
    """One clause saying why ``source`` did not open, from the OS's error number."""
    what = {"camera": "no such camera", "pipe": "no such pipe", "stdin": "standard input cannot be read"}
    if err.errno == errno.ENOENT:
        return what.get(source.kind, "not found") + f" ({err.strerror})"
    if err.errno == errno.EBUSY:
        return "the camera is busy: another program is using it" if source.kind == "camera" else "busy"
    if err.errno in (errno.EACCES, errno.EPERM):
        hint = " (add this user to the video group)" if source.kind == "camera" else ""
        return f"permission denied{hint}"
    if err.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT):
        return f"cannot be reached ({err.strerror})"
    return f"cannot be opened ({err.strerror or err})"
