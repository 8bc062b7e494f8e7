"""Stream video files as a live source: re-encoded to H.264 in MPEG-TS and written at the pace of their
timestamps, into a URL FFmpeg can write (``udp://127.0.0.1:5000``, ``tcp://...``, a named pipe) or a binary
file object (a subprocess's stdin, stdout). Live reading is tested and benchmarked with it without a camera,
and without an ``ffmpeg`` binary (PyAV bundles the libraries).

The encoder is x264's ``ultrafast`` preset with ``zerolatency`` (no B-frames, no lookahead, no frame
threads): each frame's packet leaves the encoder with the frame, so the receiver can decode every frame as
it arrives; a keyframe (with its SPS/PPS, which x264 repeats without a global header) starts every second
so that a receiver joining late waits at most a second. A 360x288 25 fps GRID clip costs about 1.3 ms a
frame to decode, encode and mux on one of the 2 shared cores, against 40 ms of frame time.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
from av.video.frame import PictureType

from utils.video.errors import REASONS, ExtractionError, check_readable
from utils.video.sources import is_named_pipe

TIME_BASE = Fraction(1, 90000)  # MPEG-TS's clock: any other is rescaled to it by the muxer
UDP_PACKET = 1316  # 7 TS packets of 188 bytes: the largest datagram that fits a 1500-byte Ethernet MTU
# flush_packets: every muxed packet is handed on at once, not left in the 32 KiB I/O buffer (half a second of
# a 360x288 stream at 70 KB/s); FFmpeg's default flushes a file object so too, a URL only once a datagram's worth
# is buffered. omit_video_pes_length=0: a PES states its length, so the receiver's demuxer hands a frame on when
# its PES is complete, not when the next one starts (one frame of delay less: through a pipe, 81 -> 41 ms).
MUX_OPTIONS = {"flush_packets": "1", "omit_video_pes_length": "0"}
FILE_BUFFER = 4096  # PyAV's I/O buffer for a file object target: one muxed frame is written at most in a few calls


@dataclass(frozen=True)
class StreamReport:
    """What a stream sent: ``frames``, ``stream_seconds`` (the stream time of the last frame sent plus its
    duration), ``wall_seconds`` (from the first frame sent to the target closed), ``worst_lateness`` (seconds
    the latest packet was written after its schedule, 0 when none was late) and how it ``ended``: ``done``
    (every frame of every loop sent), ``stopped`` (the ``stop`` event) or ``reader_gone`` (a broken pipe)."""

    frames: int
    stream_seconds: float
    wall_seconds: float
    worst_lateness: float
    ended: str


def _sources(source: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [source] if isinstance(source, (str, Path)) else list(source)
    if not items:
        raise ValueError("no video to stream")
    return [Path(item) for item in items]


def _check_video(path: Path) -> None:
    """ExtractionError naming ``path`` when it is missing, unreadable, empty or has no decodable video frame,
    so that a stream of several files fails before its first frame rather than in the middle."""
    check_readable(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ExtractionError("decode_error", path, f"{REASONS['decode_error']} (no video stream)")
            next(container.decode(video=0))
    except (av.FFmpegError, StopIteration, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        detail = f" ({reason})" if reason else ""
        raise ExtractionError("decode_error", path, REASONS["decode_error"] + detail) from None


def _frames(path: Path, offset: float) -> Iterator[tuple[av.VideoFrame, float, float]]:
    """The frames of ``path`` with their stream times (the file's first frame at ``offset``) and durations.

    A frame's time is its own timestamp where it has one (a variable-rate file keeps its pace) and the
    stream's average rate otherwise."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        step = float(1 / rate)
        first = None
        for i, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else i * step
            if first is None:
                first = t
            yield frame, offset + t - first, step


def _open_target(target: str | BinaryIO) -> av.container.OutputContainer:
    if not isinstance(target, str):
        return av.open(target, "w", format="mpegts", options=MUX_OPTIONS, buffer_size=FILE_BUFFER)
    url = target
    if url.startswith("udp://") and "pkt_size=" not in url:
        url += ("&" if "?" in url else "?") + f"pkt_size={UDP_PACKET}"
    return av.open(url, "w", format="mpegts", options=MUX_OPTIONS)


def stream_video(source: str | Path | Sequence[str | Path], target: str | BinaryIO, *, loops: int = 1,
                 on_start: Callable[[float], None] | None = None,
                 stop: threading.Event | None = None) -> StreamReport:
    """Send ``source`` (one file or several, one after another, ``loops`` times over) to ``target`` in real time.

    The packet of the frame shown at stream time t is written at T0 + t, T0 being when the first frame is
    sent; ``on_start(time.time() at T0)`` is called once, right before it, so that a benchmark can relate
    stream seconds to wall time. Stream times start at 0 and go on increasing across files and loops.
    ``stop`` (an event) ends the stream early; a reader that goes away (a broken pipe) ends it too, without
    an exception. A file object target is flushed after every packet and left open (a buffered one whose
    reader went away still holds bytes it cannot write: its ``close`` raises BrokenPipeError). Every input is
    checked first (ExtractionError naming the file); the frames of later files are scaled to the first one's
    size. A write that blocks (a pipe nobody reads, a named pipe nobody has opened) holds ``stop`` off.
    """
    if loops < 1:
        raise ValueError(f"loops must be at least 1, not {loops}")
    paths = _sources(source)
    for path in paths:
        _check_video(path)
    fifo = None
    if isinstance(target, str) and "://" not in target and is_named_pipe(target):
        # FFmpeg opens a named pipe without waiting for its reader and fills the pipe's buffer (about 0.9 s of a
        # 360x288 stream) before anyone reads, which the reader then gets at once: opened here, the stream
        # starts when its reader opens the pipe.
        fifo = target = open(target, "wb", buffering=0)  # noqa: SIM115 - closed after the stream
    try:
        return _stream(paths, target, loops, on_start, stop)
    finally:
        if fifo is not None:
            with contextlib.suppress(OSError):
                fifo.close()


def _stream(paths: list[Path], target: str | BinaryIO, loops: int, on_start: Callable[[float], None] | None,
            stop: threading.Event | None) -> StreamReport:
    flush = getattr(target, "flush", None) if not isinstance(target, str) else None
    container = _open_target(target)
    stream = None
    frames = 0
    t0: float | None = None
    end = sent_end = worst = 0.0
    step = 0.0
    last_pts = -1
    ended = "done"

    def send(packets: list[av.Packet]) -> None:
        nonlocal t0, worst, frames, sent_end
        for packet in packets:
            if t0 is None:
                t0 = time.monotonic()
                if on_start is not None:
                    on_start(time.time())
            due = t0 + float(packet.pts * TIME_BASE)
            wait = due - time.monotonic()
            if wait > 0 and (stop.wait(wait) if stop is not None else time.sleep(wait)):
                raise _Stopped
            worst = max(worst, time.monotonic() - due)
            container.mux(packet)
            if flush is not None:
                flush()
            frames += 1  # x264 without lookahead or B-frames: one packet a frame
            sent_end = float(packet.pts * TIME_BASE) + step

    try:
        for _ in range(loops):
            for path in paths:
                for frame, t, step in _frames(path, end):
                    if stop is not None and stop.is_set():
                        raise _Stopped
                    if stream is None:
                        stream = _add_stream(container, frame, step)
                    # A repeated or backward timestamp (a broken file, a join) still moves on by a tick:
                    # the muxer refuses a pts that does not increase.
                    pts = max(round(t / TIME_BASE), last_pts + 1)
                    last_pts = pts
                    image = frame.reformat(stream.width, stream.height, format="yuv420p")
                    image.pts, image.time_base = pts, TIME_BASE
                    # x264 makes a keyframe of every frame decoded as an I picture: a GRID clip's
                    # MPEG-1 GOP of 12 would set the keyframes, not ``gop_size``.
                    image.pict_type = PictureType.NONE
                    end = float(pts * TIME_BASE) + step
                    send(stream.encode(image))
        if stream is not None:
            send(stream.encode(None))
    except _Stopped:
        ended = "stopped"
    except BrokenPipeError:
        ended = "reader_gone"
    except BaseException:
        with contextlib.suppress(Exception):  # the error that stopped the stream is the one to report
            container.close()
        raise
    try:
        container.close()
    except BrokenPipeError:
        ended = "reader_gone"
    except av.FFmpegError:  # the trailer of a stream whose reader left (PyAV reports the callback's error)
        if ended != "reader_gone":
            raise
    return StreamReport(frames=frames, stream_seconds=sent_end,
                        wall_seconds=time.monotonic() - t0 if t0 is not None else 0.0, worst_lateness=max(worst, 0.0),
                        ended=ended)


class _Stopped(Exception):
    """The ``stop`` event was set."""


def _add_stream(container: av.container.OutputContainer, frame: av.VideoFrame,
                step: float) -> av.video.stream.VideoStream:
    rate = Fraction(1 / step).limit_denominator(1001) if step > 0 else Fraction(25)
    stream = container.add_stream("libx264", rate=rate)
    # x264 needs even sides in 4:2:0
    stream.width, stream.height = frame.width - frame.width % 2, frame.height - frame.height % 2
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = TIME_BASE
    stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
    stream.codec_context.gop_size = max(1, round(rate))
    return stream

