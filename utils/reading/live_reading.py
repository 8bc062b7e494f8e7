"""Live lipreading: a camera, a network stream or a pipe read as it happens, each utterance printed as
soon as it ends.

The main thread takes frames from ``utils.video.live.LiveFrames`` and cuts them into utterances
(``UtteranceCutter``, the cutter files are read with); each utterance is read, decoded and written out
by one network thread, in order, while the next frames are cut. Nothing waits without bound: the
capture queue drops whole frames when the main thread falls behind, and the main thread waits for the
network thread once ``_IN_FLIGHT`` utterances are queued for it, so a slow network shows as dropped
frames, not as growing memory or lag.

An utterance read live ends after ``pause`` seconds of a still mouth (0.5 by default, against 1.0 for
files) and keeps all of that stillness: it ends where a file's would (half a second after the speech),
and is read the moment that is known. The cost is that a pause of half a second inside a sentence ends
an utterance live where a file reading would read on.
"""
from __future__ import annotations

import contextlib
import json
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from utils.reading.sentence_videos import VideoLipreader, utterance_json
from utils.runtime.memory import return_free_memory

if TYPE_CHECKING:
    from utils.scoring.report import UtteranceResult
    from utils.video.live import Ending, LiveFrames
    from utils.video.live_window import LiveWindow
    from utils.video.recorder import Recorder
    from utils.video.sources import Source
    from utils.video.utterances import Utterance, UtteranceCutter

LIVE_PAUSE = 0.5  # seconds of a still mouth after speech that end an utterance read live
_IN_FLIGHT = 2  # utterances queued for the network thread before the main thread waits for it
_SHOWN = 3  # utterance texts the window keeps
_RECENT = 16  # finished utterances remembered to tell which face is the largest while they were said


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class LiveOutput:
    """Where each utterance read live goes: a line on ``stream`` (``SOURCE<TAB>START<TAB>END<TAB>TEXT``, or
    one JSON object), flushed at once; subtitle files rewritten whole at each cue (valid at every moment);
    a cue in the recording; the window's last lines. Called from the network thread, in order."""

    name: str  # the source as given
    stem: str  # the subtitle files' name
    format: str = "text"
    labelled: bool = False  # faces numbered (--face=all)
    subtitles: Path | None = None
    recorder: Recorder | None = None
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    errors: TextIO = field(default_factory=lambda: sys.stderr)
    read: int = 0  # utterances written out
    unread: int = 0  # utterances that could not be read
    failed: list[str] = field(default_factory=list)  # outputs that could not be written
    shown: deque[str] = field(default_factory=lambda: deque(maxlen=_SHOWN))
    _cues: list = field(default_factory=list)

    def start(self) -> None:
        """Empty subtitle files, so they exist (and are valid) from the start."""
        self._write_subtitles()

    def _write_subtitles(self) -> None:
        from utils.text.subtitles import write_subtitles

        if self.subtitles is None:
            return
        try:
            write_subtitles(self.subtitles, self.stem, self._cues)
        except OSError as err:
            self._fail(f"cannot write the subtitles of {self.name}: {err}")

    def _fail(self, message: str) -> None:
        if message not in self.failed:
            self.failed.append(message)
            print(f"error: {message}", file=self.errors, flush=True)

    def write(self, u: UtteranceResult) -> None:
        from utils.text.subtitles import Cue

        label = f"[face {u.face}] " if self.labelled else ""
        if self.format == "json":
            line = json.dumps({"source": self.name, **utterance_json(u, self.labelled)}, ensure_ascii=False)
        elif u.error is None and u.text:  # an utterance read as nothing has a JSON record, not an empty line
            line = f"{self.name}\t{u.start:.2f}\t{u.end:.2f}\t{label}{u.text}"
        else:
            line = None
        if u.error is not None:
            self.unread += 1
            print(f"error: {self.name}: utterance {u.start:.2f}-{u.end:.2f} s not read: {u.error}",
                  file=self.errors, flush=True)
        else:
            self.read += 1
            if u.small_face is not None:
                print(f"warning: {self.name}: utterance {u.start:.2f}-{u.end:.2f} s: {u.small_face}",
                      file=self.errors, flush=True)
        if line is not None:
            print(line, file=self.stream, flush=True)
        if u.error is None and u.text:
            self.shown.append(label + u.text)
            if self.subtitles is not None:  # the files are rewritten whole: every cue is kept, and only then
                self._cues.append(Cue(u.start, u.end, label + u.text))
                self._write_subtitles()
            if self.recorder is not None:
                self.recorder.cue(u.start, u.end, label + u.text)


@dataclass
class LiveReport:
    """How a live read went: why it stopped, how much of the stream was read and how many frames dropped."""

    ending: Ending
    seconds: float  # of the stream
    utterances: int
    dropped: int
    taken: int
    overshadowed: int = 0  # utterances of a smaller face left out (--face=largest)

    def summary(self) -> str:
        """One line: why the read ended and what it read."""
        dropped = f", {self.dropped} of {self.taken} frames dropped" if self.dropped else ""
        smaller = (f", {self.overshadowed} of a smaller face left out (--face=all reads them)"
                   if self.overshadowed else "")
        return (f"{self.ending.reason}; {self.seconds:.1f} s read, {self.utterances} "
                f"utterance{'s' if self.utterances != 1 else ''}{dropped}{smaller}")


class LiveLipreader:
    """A ``VideoLipreader`` (network, decoder, crops) reading a live source: utterances cut as files' are,
    but ending after ``pause`` seconds of stillness, all of which they keep."""

    def __init__(self, reader: VideoLipreader, pause: float = LIVE_PAUSE) -> None:
        self.reader = reader
        self.utterances = reader.utterances.paused_after(pause)

    def warm(self) -> None:
        """Read a blank utterance of every length an utterance can have (3.6-3.8 s on 2 cores), before the
        source is opened: the network builds and keeps kernels and buffers for each length it meets, 1-4 MB
        a length, and met on the way, rare lengths kept a 10-minute stream's memory rising to its end; and
        a source opened before the network was first run sent on meanwhile, and its first second was dropped."""
        network, cut = self.reader.network, self.utterances
        for length in range(cut.max_frames, cut.min_frames - 1, -1):  # the longest first: its buffers serve the rest
            self.reader.log_probs([np.zeros((length, network.height, network.width, 3), np.uint8)])

    def read(self, frames: LiveFrames, output: LiveOutput, stop: threading.Event, faces: str = "largest",
             window: LiveWindow | None = None, recorder: Recorder | None = None,
             say: Callable[[str], None] = _to_stderr) -> LiveReport:
        """Read ``frames`` until the source ends or ``stop`` is set (Ctrl-C), then read the utterance in
        progress; every utterance goes to ``output`` as it is read. ``faces``: ``largest`` leaves out an
        utterance while a larger face's overlaps most of it; ``all`` reads every face."""
        from utils.video.live import DropNotes
        from utils.video.utterances import UtteranceCutter

        cutter = UtteranceCutter(self.utterances)
        notes = DropNotes(say)
        recent: deque[tuple[int, float, float, float]] = deque(maxlen=_RECENT)  # (face, width, start, end)
        pending: deque[Future] = deque()
        overshadowed = 0
        output.start()
        with ThreadPoolExecutor(1, thread_name_prefix="network") as network:
            def submit(utterance: Utterance) -> None:
                nonlocal overshadowed
                recent.append((utterance.face, utterance.face_width, utterance.start, utterance.end))
                if faces == "largest" and _overshadowed(utterance, cutter, recent):
                    overshadowed += 1
                    return
                pending.append(network.submit(self._read_out, utterance, output, faces == "all"))
                while len(pending) > _IN_FLIGHT:
                    pending.popleft().result()

            frames.start()
            while not stop.is_set():
                while pending and pending[0].done():
                    pending.popleft().result()
                try:
                    frame = frames.get(timeout=0.1)
                except queue.Empty:
                    continue
                if frame is None:
                    break
                for utterance in cutter.feed(frame):
                    submit(utterance)
                if window is not None or recorder is not None:
                    image = frame.rgb((0, 0) + frame.size)[0]
                    if recorder is not None:
                        recorder.add(image, frame.time)
                    if window is not None and not window.show(image, cutter.mouth_box(), list(output.shown)):
                        stop.set()
                notes.check(frames.dropped, frames.fps)
            frames.stop()
            for utterance in cutter.close():  # the utterance in progress, at Ctrl-C or the end
                submit(utterance)
            while pending:
                pending.popleft().result()
        ending = frames.ending
        if ending is None:  # stopped here (Ctrl-C, the window closed) before the capture thread noticed
            from utils.video.live import Ending

            ending = Ending(False, "stopped")
        return LiveReport(ending, cutter.frames / self.utterances.fps, output.read + output.unread, frames.dropped,
                          frames.taken, overshadowed)

    def _read_out(self, utterance: Utterance, output: LiveOutput, labelled: bool) -> None:
        result = self.reader.read_utterance(utterance)
        if labelled:
            result.face = utterance.face + 1  # faces numbered from 1 in order of appearance, as files' are
        output.write(result)
        return_free_memory()  # after the line is out: a read without end keeps a level footprint


def _overshadowed(utterance: Utterance, cutter: UtteranceCutter, recent: deque) -> bool:
    """Another face, larger, said something over most of ``utterance``'s time: one still being said (its
    open segment) or one that ended lately."""
    spans = [(face, width, start, end) for face, width, start, end in recent if face != utterance.face]
    fps = cutter.reader.fps
    for face, segment in cutter.segments.items():
        if face != utterance.face and segment.faces:
            spans.append((face, segment.face_width, segment.start / fps, segment.end / fps))
    length = max(utterance.end - utterance.start, 1e-9)
    return any(width > utterance.face_width and
               max(0.0, min(end, utterance.end) - max(start, utterance.start)) / length > 0.5
               for _, width, start, end in spans)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, say: Callable[[str], None]) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) sets ``stop``, so the read ends cleanly: the utterance in progress read and
    written, subtitle files whole. A second one interrupts at once."""
    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say(f"{signal.Signals(signum).name}: stopping after the utterance in progress (again to quit at once)")

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class LiveSettings:
    """How ``read_live`` reads a source (infer.py's live options)."""

    live: bool = True  # drop frames when behind and pace a file by its timestamps; False: read every frame
    pause: float = LIVE_PAUSE
    stall: float = 5.0  # seconds without data before a camera or network stream counts as lost
    reconnect: float = 0.0  # seconds to keep trying to reopen a lost network stream
    show: bool = False  # a window with the video, the mouth box and the text
    record: str | None = None  # FILE.mp4: the video with the text as a soft subtitle track
    format: str = "text"  # stdout per utterance: text or json
    faces: str = "largest"
    subtitles: str | None = None  # a folder for SOURCE.srt and SOURCE.vtt


def read_live(source: Source, reader: VideoLipreader, settings: LiveSettings,
              say: Callable[[str], None] = _to_stderr) -> int:
    """Read ``source`` as it happens until it ends, is lost or Ctrl-C; one line on stderr says which. Exit
    status: 0 ended or stopped, 1 lost or an output not written, 2 the source cannot be opened."""
    from utils.video.errors import ExtractionError
    from utils.video.live import LiveFrames
    from utils.video.live_window import LiveWindow, NoDisplay
    from utils.video.recorder import Recorder
    from utils.video.sources import SourceError

    lipreader = LiveLipreader(reader, settings.pause)
    lipreader.warm()
    say(f"reading {source.name} {'live' if settings.live else 'every frame'} (Ctrl-C ends it)")
    stop = threading.Event()
    try:
        with stop_on_signals(stop, say):  # Ctrl-C is heard while a source waits for its sender, too
            frames = LiveFrames(source, reader.fps, paced=settings.live and not source.live, drop=settings.live,
                                stall=settings.stall, reconnect=settings.reconnect, say=say, stop=stop)
    except (SourceError, ExtractionError) as err:
        say(f"error: {err}")
        return 2
    window = recorder = None
    if settings.show:
        try:
            window = LiveWindow.open(f"lipreading {source.name}")
        except NoDisplay as err:
            say(f"--show: no display ({err.reason}); reading on without the window")
    if settings.record is not None:
        recorder = Recorder(settings.record, reader.fps)
    output = LiveOutput(source.name, source.stem, settings.format, settings.faces == "all",
                        Path(settings.subtitles) if settings.subtitles is not None else None, recorder)
    try:
        with stop_on_signals(stop, say):
            report = lipreader.read(frames, output, stop, settings.faces, window, recorder, say)
    finally:
        if window is not None:
            window.close()
        if recorder is not None:
            try:
                recorded = recorder.close()
                say(f"recorded {recorded}" if recorded else f"{settings.record}: nothing recorded (no frame read)")
            except (OSError, ValueError) as err:
                output.failed.append(str(err))
                say(f"error: the recording was not written: {err}")
    say(f"{source.name}: {report.summary()}")
    return 1 if report.ending.lost or output.failed else 0
