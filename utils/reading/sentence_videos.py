"""Raw videos to sentences with any ``Network``: each video read as utterances (``utils.video.utterances``),
each utterance read, decoded and its words timed, and the JSON record ``infer.py --format=json`` prints."""
from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from utils.reading.network import NetworkError
from utils.scoring.report import UtteranceResult
from utils.text.decoders import DEFAULT_BEAM_WIDTH, UndecodableClip, decode_scored

if TYPE_CHECKING:
    from utils.reading.network import Network
    from utils.text.lm_decoder import LMDecoder
    from utils.video.utterances import StreamSummary, Utterance

_IN_FLIGHT = 2  # utterances read by the network while the video goes on (their crops: about 1 MB each)


class VideoLipreader:
    """Raw video to sentence with one mouth extractor and one network, both reused across videos.

    The extractor crops straight at the network's input size (as utils/preprocess_data.py does for
    training data), so the frames need no second resampling; they are normalised by the same lookup
    tables as training batches. Videos are read at the network's frame rate (``frame_rate`` in a
    checkpoint's meta.json or the ONNX file; 25, GRID's, for the original example's parameter file
    and older checkpoints), and cropped as its training crops were: in its framing (``framing``, by default
    the checkpoint's), upright when its ``crop`` record says so (axis-aligned for checkpoints without one:
    ``utils.video.roll``), in the network's channel order.
    """

    def __init__(self, network: Network, decoder: str = "greedy", beam_width: int = DEFAULT_BEAM_WIDTH,
                 max_utterance: float | None = None, lm: LMDecoder | None = None,
                 margin: float | None = None, edge_search: float = 0.0, framing: str | None = None) -> None:
        from utils.data.sentence_clips import NUM_FRAMES, Normaliser
        from utils.video.mouth_extractor import MouthExtractor
        from utils.video.roll import upright_of
        from utils.video.utterances import UtteranceReader

        self.network = network
        self.decoder = decoder
        self.beam_width = beam_width
        self.lm = lm
        self.fps = network.frame_rate
        self.normaliser = Normaliser.recorded(network.mean, network.std, network.meta, network.channel_order)
        self.extractor = MouthExtractor(size=(network.width, network.height), framing=framing or network.framing,
                                        upright=upright_of(network.meta))
        self.utterances = UtteranceReader(self.extractor, self.fps,
                                          max_utterance if max_utterance is not None else NUM_FRAMES / self.fps,
                                          margin=margin)
        self.edge_frames = int(round(edge_search * self.fps))

    def mouth(self, path: str | Path) -> np.ndarray:
        """Mouth crops (T, H, W, 3) RGB uint8 of a whole clip; raises ExtractionError naming the file."""
        return self.extractor.extract(path).frames

    def log_probs(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The network's (T, C) log-probabilities (C: its alphabet's classes) for each clip of mouth
        crops (T, H, W, 3), read as one padded batch."""
        lengths = np.array([len(c) for c in clips])
        data = np.zeros((len(clips), 3, lengths.max()) + clips[0].shape[1:3], np.float32)
        for row, frames, n in zip(data, clips, lengths):
            plane = np.empty((3,) + frames.shape[:3], np.float32)
            self.normaliser.normalise_into(frames, plane)
            row[:, :n] = plane
        return [lp[:n] for lp, n in zip(self.network.log_probs(data, lengths), lengths)]

    def decode(self, log_probs: np.ndarray) -> tuple[str, float]:
        """The text of one clip's log-probabilities and the score the decoder ranked it by."""
        return decode_scored(log_probs, self.decoder, self.beam_width, alphabet=self.network.alphabet, lm=self.lm)

    def read_utterance(self, utterance: Utterance, keep_frames: bool = False) -> UtteranceResult:
        """One utterance read, decoded and its words timed; with ``edge_search``, read from the start and
        end (``search_edges``) at which the decoder scores its reading best per frame. An utterance the
        network (NetworkError) or the decoder (UndecodableClip: say, too short for the grammar) cannot
        read comes back with the reason as its ``error`` and no text, so the rest of the video is still read; with
        ``edge_search``, trims that cannot be decoded rank last and fail the utterance only if all do."""
        from utils.text.timings import word_timings
        from utils.video.utterances import search_edges

        frames = utterance.frames
        readings: dict[tuple[int, int], tuple[np.ndarray, str, float] | UndecodableClip] = {}

        def read(trims: list[tuple[int, int]]) -> list[float]:
            for trim, log_probs in zip(trims, self.log_probs([frames[a:len(frames) - b] for a, b in trims])):
                try:
                    text, score = self.decode(log_probs)
                except UndecodableClip as err:
                    readings[trim] = err
                else:
                    readings[trim] = (log_probs, text, score / len(log_probs))
            return [r[2] if isinstance(r, tuple) else -np.inf for r in (readings[t] for t in trims)]

        try:
            if self.edge_frames:
                a, b = search_edges(len(frames), read, self.edge_frames, self.utterances.min_frames)
            else:
                a, b = 0, 0
                read([(a, b)])
        except NetworkError as err:
            return self._unread(utterance, f"{type(err).__name__}: {err}", keep_frames)
        reading = readings[a, b]
        if not isinstance(reading, tuple):
            return self._unread(utterance, f"{type(reading).__name__}: {reading}", keep_frames)
        log_probs, text, _ = reading
        start, end = utterance.start + a / self.fps, utterance.end - b / self.fps
        try:
            words = word_timings(log_probs, text, self.fps, offset=start, alphabet=self.network.alphabet.characters)
        except ValueError:
            words = []
        return UtteranceResult(start, end, text, words, frames[a:len(frames) - b] if keep_frames else None,
                               log_probs, utterance.face, small_face=utterance.small_face)

    def _unread(self, utterance: Utterance, reason: str, keep_frames: bool) -> UtteranceResult:
        return UtteranceResult(utterance.start, utterance.end, "", [], utterance.frames if keep_frames else None,
                               np.empty((0, self.network.alphabet.num_classes), np.float32), utterance.face,
                               error=reason, small_face=utterance.small_face)

    def read(self, path: Path, faces: str = "largest", keep_frames: bool = False,
             progress: bool = False) -> VideoReading:
        """Every utterance of a video, read and timed; raises ExtractionError naming the file.

        The network reads each utterance in a worker thread while the next one is decoded and tracked:
        MXNet and onnxruntime compute without the GIL, and decoding, face search and landmarks leave a
        core idle much of the time. At most ``_IN_FLIGHT`` utterances wait, so memory stays bounded.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        from tqdm import tqdm

        from utils.video.reader import probe
        from utils.video.utterances import StreamSummary

        info = probe(path)
        summary = StreamSummary()
        read: list[tuple[int, float, UtteranceResult]] = []
        pending: deque[tuple[Utterance, Future]] = deque()

        def collect() -> None:
            utterance, result = pending.popleft()
            read.append((utterance.face, utterance.face_width, result.result()))

        with ThreadPoolExecutor(1, thread_name_prefix="network") as network, \
                tqdm(total=int(info.duration * self.fps) or None, desc=path.name, unit="frame", file=sys.stderr,
                     disable=not progress, leave=False) as bar:
            try:
                for utterance in self.utterances.read(path, summary, progress=lambda n: bar.update(n - bar.n)):
                    pending.append((utterance, network.submit(self.read_utterance, utterance, keep_frames)))
                    while len(pending) > _IN_FLIGHT:
                        collect()
                while pending:
                    collect()
            finally:
                for _, result in pending:
                    result.cancel()
        chosen = read if faces == "all" else largest_faces(read)
        # --face=all: faces numbered from 1 in order of appearance; otherwise 0, no label.
        labels = {face: n for n, face in enumerate(sorted({f for f, _, _ in chosen}, key=lambda f: min(
            u.start for g, _, u in chosen if g == f)), start=1)} if faces == "all" else {}
        results = sorted((u for _, _, u in chosen), key=lambda u: (u.start, u.face))
        for result in results:
            result.face = labels.get(result.face, 0)
        return VideoReading(path, info.fps, summary, results)


@dataclass
class VideoReading:
    """One video read: its utterances (with --face=all, faces numbered from 1 in order of appearance)
    and what was seen."""

    path: Path
    source_fps: float
    summary: StreamSummary
    utterances: list[UtteranceResult]

    def text(self, face: int | None = None) -> str:
        return " ".join(u.text for u in self.utterances if u.text and (face is None or u.face == face))

    @property
    def unread(self) -> list[str]:
        """Each utterance that could not be read, as ``utterance START-END s[ (face N)] not read: REASON``."""
        return [f"{_name(u)} not read: {u.error}" for u in self.utterances if u.error is not None]

    @property
    def small_faces(self) -> list[str]:
        """Each utterance read from a face too small to read well, as ``utterance START-END s[ (face N)]: face
        about W px wide: ...``."""
        return [f"{_name(u)}: {u.small_face}" for u in self.utterances if u.small_face is not None]

    @property
    def incomplete(self) -> str | None:
        """Why the video was read only in part (truncated or damaged), naming it; None when read whole."""
        return str(self.summary.shortfall) if self.summary.shortfall is not None else None

    @property
    def faces_read(self) -> list[int]:
        return sorted({u.face for u in self.utterances})


def largest_faces(read: list[tuple[int, float, UtteranceResult]]) -> list[tuple[int, float, UtteranceResult]]:
    """The utterances of whichever face is largest while they are said: an utterance is dropped when
    another face's utterance covering most of its time is larger."""
    def overlap(a: UtteranceResult, b: UtteranceResult) -> float:
        return max(0.0, min(a.end, b.end) - max(a.start, b.start)) / max(min(a.end - a.start, b.end - b.start), 1e-9)

    return [(face, width, u) for face, width, u in read
            if not any(f != face and w > width and overlap(u, v) > 0.5 for f, w, v in read)]


def list_videos(path: Path) -> list[Path]:
    """The file itself, or the video files of a folder (by extension) in file-name order; raises
    FileNotFoundError naming ``path`` when it does not exist or holds no video file."""
    from utils.video.reader import is_video_file

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file or folder")
    videos = sorted(p for p in path.iterdir() if is_video_file(p)) if path.is_dir() else [path]
    if not videos:
        raise FileNotFoundError(f"{path}: no video files here (by extension: .mpg, .mp4, .avi, .mov, ...)")
    return videos


def video_json(name: str, reading: VideoReading | None, error: str | None, labelled: bool,
               warnings: Sequence[str] = ()) -> str:
    """The --format=json line of one video: its reading (each utterance with its ``error``, null when it
    was read), or ``error`` when the video could not be read, and ``warnings`` (a video read only in part,
    an utterance not read or read from a face too small, an output not written)."""
    utterances = [utterance_json(u, labelled) for u in (reading.utterances if reading else [])]
    record = {"file": name,
              "duration": _seconds(reading.summary.duration) if reading else None,
              "fps": _seconds(reading.source_fps) if reading else None,
              "faces": reading.summary.faces if reading else 0,
              "utterances": utterances, "error": error, "warnings": list(warnings)}
    return json.dumps(record, ensure_ascii=False)


def _seconds(value: float) -> float:
    return round(float(value), 3)


def utterance_json(u: UtteranceResult, labelled: bool) -> dict:
    """One utterance as JSON records hold it: start, end, text, words with times and confidence, its face
    (``labelled``: when faces are numbered) and its ``error`` (null when it was read)."""
    item = {"start": _seconds(u.start), "end": _seconds(u.end), "text": u.text,
            "words": [{"word": w.word, "start": _seconds(w.start), "end": _seconds(w.end),
                       "confidence": round(float(w.confidence), 4)} for w in u.words]}
    if labelled:
        item["face"] = u.face
    item["error"] = u.error
    return item


def _name(utterance: UtteranceResult) -> str:
    """``utterance START-END s``, with `` (face N)`` when faces are numbered: how stderr and JSON name one."""
    face = f" (face {utterance.face})" if utterance.face else ""
    return f"utterance {utterance.start:.2f}-{utterance.end:.2f} s{face}"
