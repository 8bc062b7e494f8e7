"""Frames of a live source taken at its pace: a capture thread decodes them as they arrive and hands
them on through a short queue; when the reader falls behind, whole frames are dropped here, before the
mouth extractor, and counted, so reading never lags by more than the queue and memory never grows.

Times are the decoder's (``utils.video.reader``: frame ``k`` shows ``k / fps`` seconds after the first
frame read), never the wall clock's. A file read live is paced by its timestamps, as a camera would
deliver it. A network stream that is lost can be reopened for ``reconnect`` seconds; its time then
goes on from its last frame, plus the time that passed without frames.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from utils.video.reader import MODEL_FPS, Frame, FrameStream, probe
from utils.video.sources import Source, SourceError, SourceSilent, open_live

# Frames waiting for the reader: 0.32 s at 25 fps. The reader's work per frame is steady (a few ms) but
# stalls when an utterance ends and its crops are made; a short queue rides that out, and what it holds
# is at most this much behind the source.
QUEUE_FRAMES = 8
_RETRY = 1.0  # seconds between attempts to reopen a lost stream


@dataclass(frozen=True)
class Ending:
    """How a live source stopped giving frames: ``ended`` (its end, or stopped by the user) or lost."""

    lost: bool
    reason: str


class LiveFrames:
    """The frames of ``source`` at ``fps``, taken in a thread as the source gives them (``get``).

    ``paced``: hand frames out no faster than their timestamps (a file read as if live). ``drop``: drop
    the frames the reader has no room for (False: wait for it, reading every frame however far behind
    that falls). ``stall``:
    seconds a camera or network stream may give nothing before it counts as lost (a pipe waits for its
    writer). ``reconnect``: seconds to keep trying to reopen a lost network stream (0: never). ``say``:
    a line on what happens to the source (lost, reconnected), from the capture thread. ``stop``: an event
    that stops the frames, as ``stop()`` does (Ctrl-C, even while the source is being opened)."""

    def __init__(self, source: Source, fps: float = MODEL_FPS, paced: bool = False, drop: bool = True,
                 stall: float = 5.0, reconnect: float = 0.0, queue_frames: int = QUEUE_FRAMES,
                 say: Callable[[str], None] = lambda line: None, stop: threading.Event | None = None) -> None:
        self.source = source
        self.fps = fps
        self.paced = paced
        self.drop = drop
        self.stall = stall if source.kind in ("camera", "network") else None
        self.reconnect = reconnect if source.kind == "network" else 0.0
        self.say = say
        self.dropped = 0  # frames the reader had no room for
        self.taken = 0  # frames decoded at the reader's rate, dropped or not
        self.ending: Ending | None = None
        self._queue: queue.Queue[Frame | None] = queue.Queue(queue_frames)
        self._last_wall = 0.0  # time.monotonic() when the last frame came
        self._stop = stop if stop is not None else threading.Event()
        self._container = self._open()  # a source that cannot be opened fails here, before any thread starts
        self._thread = threading.Thread(target=self._capture, name="capture", daemon=True)

    def _open(self) -> av.container.InputContainer | None:
        """The source opened (None: a file, which FrameStream opens; checked here). A source that waits for
        its sender (UDP, a pipe) is tried a second at a time, so that Ctrl-C (``stop``) is heard while it
        waits: FFmpeg's wait cannot be interrupted."""
        if not self.source.live:
            probe(self.source.url)  # ExtractionError now if it is no video
            return None
        if not self.source.waits:
            return open_live(self.source, self.stall)
        while not self._stop.is_set():
            try:
                return open_live(self.source, self.stall, open_timeout=_RETRY)
            except SourceSilent:
                continue
        return None

    def start(self) -> LiveFrames:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop taking frames; ``get`` then gives what is queued and None (the ending: stopped)."""
        self._stop.set()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None at the end (``ending`` says why). Raises queue.Empty after ``timeout``."""
        frame = self._queue.get(timeout=timeout)
        if frame is None:
            self._queue.put(None)  # the end stays the end for later calls
        return frame

    def _capture(self) -> None:
        offset, index = 0.0, 0  # stream time and index where this connection's frames start
        container = self._container
        started = time.monotonic()
        try:
            if self.source.live and container is None:  # stopped while it was being opened
                self.ending = Ending(False, "stopped")
                return
            while True:
                stream = FrameStream(Path(self.source.url), self.fps, container)
                last = self._take(stream, offset, index, started)
                if self._stop.is_set():
                    self.ending = Ending(False, "stopped")
                    return
                failure = stream.failure  # an error or a read that timed out; the end of a stream is not one
                if failure is None:
                    self.ending = Ending(False, "the stream ended" if self.source.live else "the video ended")
                    return
                lost_at = time.monotonic()
                if self.reconnect:
                    self.say(f"{self.source.name}: the stream was lost ({failure}); reconnecting for up to "
                             f"{self.reconnect:g} s")
                container = self._reopen()
                if container is None:
                    self.ending = Ending(True, f"the stream was lost ({failure})")
                    return
                self.say(f"{self.source.name}: reconnected after {time.monotonic() - lost_at:.1f} s")
                if last is not None:  # the time without frames goes by in the stream too
                    offset = last + max(1 / self.fps, time.monotonic() - self._last_wall)
                    index = int(round(offset * self.fps))
        except Exception as err:  # noqa: BLE001 - the reader hears of it as a lost source, not a silent hang
            self.ending = Ending(True, f"reading it failed ({type(err).__name__}: {err})")
        finally:
            self._put_end()

    def _take(self, stream: FrameStream, offset: float, index: int, started: float) -> float | None:
        """Queue (or drop) the frames of one connection; returns the stream time of the last one."""
        last = None
        for frame in stream:
            if self._stop.is_set():
                break
            frame.index += index
            frame.time += offset
            last, self._last_wall = frame.time, time.monotonic()
            if self.paced:
                delay = started + frame.time - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            self.taken += 1
            if not self.drop:
                while not self._stop.is_set():
                    try:
                        self._queue.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                continue
            try:
                self._queue.put_nowait(frame)
            except queue.Full:
                self.dropped += 1
        return last

    def _reopen(self) -> av.container.InputContainer | None:
        """The lost stream opened again within ``reconnect`` seconds, or None."""
        deadline = time.monotonic() + self.reconnect
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                return open_live(self.source, self.stall, open_timeout=min(left, _RETRY))
            except SourceSilent:
                continue
            except SourceError:
                self._stop.wait(min(_RETRY, max(0.0, deadline - time.monotonic())))
        return None

    def _put_end(self) -> None:
        while not self.drop and not self._stop.is_set():  # every frame is read: the end waits its turn
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                continue
        while True:  # the reader is slow or gone: make room for the end, dropping the oldest frames
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass


class DropNotes:
    """At most one warning a minute about dropped frames, with the count since the last one."""

    def __init__(self, say: Callable[[str], None], every: float = 60.0) -> None:
        self.say = say
        self.every = every
        self._told = 0
        self._at = -float("inf")

    def check(self, dropped: int, fps: float) -> None:
        now = time.monotonic()
        if dropped > self._told and now - self._at >= self.every:
            new = dropped - self._told
            self.say(f"warning: reading fell behind the source: {new} frame{'s' if new != 1 else ''} "
                     f"({new / fps:.1f} s) dropped since the last note, {dropped} in all")
            self._told, self._at = dropped, now
