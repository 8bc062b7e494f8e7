"""Lipread with a trained LipNet: score a preprocessed data set, or read sentences off raw videos.

    python infer.py model_path=checkpoint data_type=valid       # [Target]/[Pred] per clip, CER and WER
    python infer.py model_path=checkpoint video=clips/ > out.tsv  # FILE<TAB>SENTENCE per video
    python infer.py model_path=checkpoint/words video=clips/   # a word checkpoint: FILE<TAB>WORD P ... (top 5)
    python infer.py model_path=checkpoint/words image_path=data/lrw data_type=test  # top-1 overall and per word

``model_path`` is one of our checkpoints (a run folder, whose best/ is used, a checkpoint folder or
its model.params), the original example's parameter file, or an ONNX file of utils/export_onnx.py,
which runs on onnxruntime and never imports MXNet. ``--video`` takes a file or a folder of
videos of any frame rate, orientation, size and length (utils/video/utterances.py): each is read as
utterances at the network's frame rate; only the ``FILE<TAB>SENTENCE`` lines (the utterances
joined by spaces) or, with ``--format=json``, one JSON object per video go to stdout, everything
else to stderr. ``--subtitles=DIR`` writes DIR/STEM.srt and DIR/STEM.vtt, one cue per utterance.
``--out`` also writes predictions.csv and a self-contained report.html; both folders are made and
proven writable before the model loads. A truncated or damaged video is read as far as it goes and
named on stderr with the length decoded and the length its container declares (JSON: ``warnings``).
Exit status: 0 when every clip was read whole and every output written, 1 when some clip could not
be read, was read only in part, or lost an output (each is named on stderr), 2 when the checkpoint,
the input or an output folder is unusable.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from utils.data.splits import MISSING_CLIPS, SPLITS
from utils.runtime.cli import (
    bounded,
    non_negative_float,
    non_negative_int,
    parse_args,
    parse_speakers,
    positive_int,
    str2bool,
)
from utils.runtime.gpu_preflight import GpuProblem, preflight
from utils.runtime.paths import ALIGN_DIR, CHECKPOINT_DIR, DATASET_DIR
from utils.scoring.report import ClipResult, UtteranceResult, ordered_groups, write_report
from utils.text.decoders import DECODERS, DEFAULT_BEAM_WIDTH, decode_scored

if TYPE_CHECKING:
    from model.word_classifier import WordClassifier
    from utils.reading.network import Network
    from utils.scoring.sentence_metrics import GroupedErrorRates
    from utils.text.lm_decoder import LMDecoder
    from utils.video.reader import Shortfall
    from utils.video.utterances import StreamSummary, Utterance

DEFAULT_REPORT_LIMIT = 200
_IN_FLIGHT = 2  # utterances read by the network while the video goes on (their crops: about 1 MB each)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--model_path", default=str(CHECKPOINT_DIR),
                       help="checkpoint: run folder (best/ preferred), checkpoint folder or its model.params, "
                            "the original example's parameter file, or an exported .onnx file (read with "
                            "onnxruntime, no MXNet) (default: %(default)s)")
    model.add_argument("--decoder", default=None, choices=DECODERS,
                       help="CTC decoder (default: the checkpoint's, else greedy)")
    model.add_argument("--beam_width", type=positive_int, default=None,
                       help=f"prefix beam width of the beam decoder (default: the checkpoint's, else "
                            f"{DEFAULT_BEAM_WIDTH})")
    model.add_argument("--lm_path", default=None,
                       help="word n-gram language model (ARPA, from utils/build_lm.py) of the lm decoder "
                            "(default: the checkpoint's)")
    model.add_argument("--lm_weight", type=non_negative_float, default=None,
                       help="weight of the language model's log-probability in the lm decoder (alpha; default: the "
                            "checkpoint's, else 0.5)")
    model.add_argument("--word_bonus", type=bounded(float), default=None,
                       help="score added per word by the lm decoder (beta; default: the checkpoint's, else 1.0)")
    model.add_argument("--num_gpus", type=non_negative_int, default=1,
                       help="GPUs to run on (an ONNX file: onnxruntime-gpu's CUDA, one GPU); 0 or no visible GPU: "
                            "the CPU (default: %(default)s)")
    video = parser.add_argument_group("raw videos")
    video.add_argument("--video", default=None,
                       help="a video file, or a folder of them (read in file-name order): prints FILE<TAB>SENTENCE "
                            "per video and ignores the data-set options (default: none, score a data set)")
    video.add_argument("--format", default="text", choices=("text", "json"),
                       help="stdout per video: FILE<TAB>SENTENCE, or one JSON object with utterances and word "
                            "timings (default: %(default)s)")
    video.add_argument("--subtitles", default=None, metavar="DIR",
                       help="write DIR/STEM.srt and DIR/STEM.vtt per video, one cue per utterance; DIR is made "
                            "and checked writable before the work (default: none)")
    video.add_argument("--face", default="largest", choices=("largest", "all"),
                       help="with several faces in view: read the largest, or every face track, each labelled "
                            "(default: %(default)s)")
    video.add_argument("--max_utterance", type=bounded(float, 0.4, low_open=True), default=None, metavar="SECONDS",
                       help="longest utterance read at once; longer speech is cut where the mouth is stillest "
                            "(default: the training clip length, 75 frames at the checkpoint's frame rate)")
    video.add_argument("--margin", type=non_negative_float, default=None, metavar="SECONDS",
                       help="seconds kept before and after the speech of each utterance, mouth motion at a "
                            "speaking pace (default: up to half a pause, as GRID's clips hold; about 0.15 for a "
                            "model trained on clips cut at subtitle cues)")
    video.add_argument("--edge_search", type=non_negative_float, default=0.0, metavar="SECONDS",
                       help="read each utterance from the start and end, each moved inward by up to SECONDS in steps "
                            "of 2 frames, at which the decoder scores its reading best per frame: for models that "
                            "read by their clips' edges, such as ones trained on clips cut at subtitle cues (about "
                            "20 readings an utterance per 0.4 s searched; default: 0, off)")
    data = parser.add_argument_group("data set (as main.py selects it)")
    data.add_argument("--data_type", default="valid", choices=("train", "valid", "test"),
                      help="which side of the split to run on; test: a word checkpoint's LRW-layout test split "
                           "(default: %(default)s)")
    data.add_argument("--image_path", default=None,
                      help="mouth crops: sN/{clip}.npz (packed) or sN/{clip}/mouth_*.png folders (default: the "
                           f"checkpoint's training data, else {DATASET_DIR})")
    data.add_argument("--align_path", default=None,
                      help="align files (sN/{clip}.align or flat {clip}.align); clips without one are labelled "
                           f"from their GRID name (default: the checkpoint's, else {ALIGN_DIR})")
    data.add_argument("--split", default=None, choices=SPLITS,
                      help="standard protocol: unseen speakers or overlapped (default: the selection recorded in "
                           "the checkpoint, else unseen)")
    data.add_argument("--train_list", default=None,
                      help="file of SPEAKER/CLIP lines of the training side (default: the checkpoint's selection)")
    data.add_argument("--val_list", default=None,
                      help="file of SPEAKER/CLIP lines of the validation side (default: the checkpoint's selection)")
    data.add_argument("--missing_clips", default="warn", choices=MISSING_CLIPS,
                      help="clips a list names that are absent: warn and go on, or error (default: %(default)s)")
    data.add_argument("--speakers", type=parse_speakers, default=None,
                      help="only these speakers, e.g. 1-34 or 1,2,20 (default: the checkpoint's selection)")
    data.add_argument("--val_speakers", type=parse_speakers, default=None,
                      help="validation side = these speakers, training side = the rest (overrides --split; default: "
                           "the checkpoint's selection). Clips the checkpoint trained on are never scored as "
                           "validation")
    data.add_argument("--batch_size", type=positive_int, default=64,
                      help="clips per forward pass (default: %(default)s)")
    data.add_argument("--num_workers", type=non_negative_int, default=0,
                      help="data-loading worker threads (default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="folder for predictions.csv and report.html (mouth frames, marked errors, probabilities), "
                          "made and checked writable before the work (default: none)")
    out.add_argument("--report_limit", type=non_negative_int, default=DEFAULT_REPORT_LIMIT,
                     help="clips shown in full in report.html; the CSV has them all (default: %(default)s)")
    out.add_argument("--progress", type=str2bool, default=True, help="show progress bars on stderr (default: true)")
    return parser


def choose_data_paths(args: argparse.Namespace, meta: dict) -> None:
    """``image_path`` and ``align_path`` when the command line leaves them out: those the checkpoint trained
    on (``args`` in meta.json, ``data`` in an ONNX file), else the default locations."""
    recorded = meta.get("args") or meta.get("data") or {}
    for key, default in (("image_path", DATASET_DIR), ("align_path", ALIGN_DIR)):
        if getattr(args, key) is None:
            setattr(args, key, recorded.get(key) or str(default))
            if recorded.get(key):
                print(f"{key}={recorded[key]} (the checkpoint's)", file=sys.stderr)


def choose_decoder(args: argparse.Namespace, meta: dict) -> tuple[str, int]:
    """The decoder and beam width: the command line's, else the checkpoint's, else greedy and 25."""
    saved = meta.get("decoder") or {}
    method = args.decoder or (saved.get("method") if saved.get("method") in DECODERS else "greedy")
    width = args.beam_width if args.beam_width is not None else int(saved.get("beam_width") or DEFAULT_BEAM_WIDTH)
    return method, width


def choose_lm(args: argparse.Namespace, meta: dict, method: str, beam_width: int, network: Network) -> LMDecoder | None:
    """The lm decoder's language model and weights: the command line's, else the checkpoint's, else the defaults."""
    from utils.text.lm_decoder import lm_decoder_for

    saved = meta.get("decoder") or {}

    def pick(name: str) -> object:
        return getattr(args, name) if getattr(args, name) is not None else saved.get(name)

    return lm_decoder_for(method, pick("lm_path"), network.alphabet, beam_width, pick("lm_weight"), pick("word_bonus"))


def describe_decoder(method: str, beam_width: int, lm: LMDecoder | None = None) -> str:
    if lm is not None:
        return lm.describe()
    return f"{method} (beam width {beam_width})" if method == "beam" else method


class VideoLipreader:
    """Raw video to sentence with one mouth extractor and one network, both reused across videos.

    The extractor crops straight at the network's input size (as utils/preprocess_data.py does for
    training data), so the frames need no second resampling; they are normalised by the same lookup
    tables as training batches. Videos are read at the network's frame rate (``frame_rate`` in a
    checkpoint's meta.json or the ONNX file; 25, GRID's, for the original example's parameter file
    and older checkpoints).
    """

    def __init__(self, network: Network, decoder: str = "greedy", beam_width: int = DEFAULT_BEAM_WIDTH,
                 max_utterance: float | None = None, lm: LMDecoder | None = None,
                 margin: float | None = None, edge_search: float = 0.0) -> None:
        from utils.data.sentence_clips import NUM_FRAMES, Normaliser
        from utils.video.mouth_extractor import MouthExtractor
        from utils.video.utterances import UtteranceReader

        self.network = network
        self.decoder = decoder
        self.beam_width = beam_width
        self.lm = lm
        self.fps = network.frame_rate
        self.normaliser = Normaliser(network.mean, network.std)
        self.extractor = MouthExtractor(size=(network.width, network.height))
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
        end (``search_edges``) at which the decoder scores its reading best per frame."""
        from utils.text.timings import word_timings
        from utils.video.utterances import search_edges

        frames = utterance.frames
        readings: dict[tuple[int, int], tuple[np.ndarray, str, float]] = {}

        def read(trims: list[tuple[int, int]]) -> list[float]:
            for trim, log_probs in zip(trims, self.log_probs([frames[a:len(frames) - b] for a, b in trims])):
                text, score = self.decode(log_probs)
                readings[trim] = (log_probs, text, score / len(log_probs))
            return [readings[t][2] for t in trims]

        if self.edge_frames:
            a, b = search_edges(len(frames), read, self.edge_frames, self.utterances.min_frames)
        else:
            a, b = 0, 0
            read([(a, b)])
        log_probs, text, _ = readings[a, b]
        start, end = utterance.start + a / self.fps, utterance.end - b / self.fps
        try:
            words = word_timings(log_probs, text, self.fps, offset=start, alphabet=self.network.alphabet.characters)
        except ValueError:
            words = []
        return UtteranceResult(start, end, text, words, frames[a:len(frames) - b] if keep_frames else None,
                               log_probs, utterance.face)

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
    """The --format=json line of one video: its reading, or ``error`` when it could not be read, and
    ``warnings`` (a video read only in part, an output not written)."""
    def seconds(value: float) -> float:
        return round(float(value), 3)

    utterances = []
    for u in reading.utterances if reading else []:
        item = {"start": seconds(u.start), "end": seconds(u.end), "text": u.text,
                "words": [{"word": w.word, "start": seconds(w.start), "end": seconds(w.end),
                           "confidence": round(float(w.confidence), 4)} for w in u.words]}
        if labelled:
            item["face"] = u.face
        utterances.append(item)
    record = {"file": name,
              "duration": seconds(reading.summary.duration) if reading else None,
              "fps": seconds(reading.source_fps) if reading else None,
              "faces": reading.summary.faces if reading else 0,
              "utterances": utterances, "error": error, "warnings": list(warnings)}
    return json.dumps(record, ensure_ascii=False)


def report_video(args: argparse.Namespace, video: Path, reading: VideoReading) -> list[str]:
    """stdout (text or JSON), subtitles and stderr notes for one video read; returns its warnings: the
    video read only in part (truncated or damaged), subtitles that could not be written (named by
    their file: the output's failure, not the video's). Subtitles are written before the JSON record
    goes out, so the record carries their failure: one record per video."""
    from tqdm import tqdm

    from utils.text.subtitles import Cue, write_subtitles

    summary = reading.summary
    labelled = args.face == "all"
    warnings = []
    if reading.incomplete is not None:
        warnings.append(reading.incomplete)
        tqdm.write(f"warning: {reading.incomplete}", file=sys.stderr)
    if summary.faces > 1 and not labelled:
        tqdm.write(f"{video}: {summary.faces} faces seen; reading the largest (--face=all reads each)", file=sys.stderr)
    for start, end in summary.no_face:
        tqdm.write(f"{video}: no face to read from {start:.2f} s to {end:.2f} s (skipped)", file=sys.stderr)
    if args.subtitles is not None:
        cues = [Cue(u.start, u.end, f"[face {u.face}] {u.text}" if labelled else u.text)
                for u in reading.utterances if u.text]
        try:
            write_subtitles(args.subtitles, video.stem, cues)
        except OSError as err:
            warnings.append(f"subtitles not written: {err}")
            tqdm.write(f"error: cannot write the subtitles of {video}: {err}", file=sys.stderr)
    if args.format == "json":
        tqdm.write(video_json(video.name, reading, None, labelled, warnings), file=sys.stdout)
    elif labelled and reading.faces_read:
        for face in reading.faces_read:
            tqdm.write(f"{video.name}#face{face}\t{reading.text(face)}", file=sys.stdout)
    else:
        tqdm.write(f"{video.name}\t{reading.text()}", file=sys.stdout)
    sys.stdout.flush()
    return warnings


def run_videos(args: argparse.Namespace, reader: VideoLipreader) -> tuple[list[ClipResult], int]:
    """Read every video as utterances and report each (see ``report_video``); returns the results for
    the HTML report (each with its warnings) and how many videos could not be read."""
    from tqdm import tqdm

    from utils.video.errors import ExtractionError

    videos = list_videos(Path(args.video))
    keep = args.out is not None
    results, failed = [], 0
    for video in tqdm(videos, desc="videos", unit="video", file=sys.stderr, disable=not args.progress,
                      leave=False):
        try:
            reading = reader.read(video, args.face, keep_frames=keep, progress=args.progress)
        except ExtractionError as err:
            message = f"{err} [{err.reason}]"
        except OSError as err:
            message = f"{video}: {err}"
        else:
            warnings = report_video(args, video, reading)
            results.append(ClipResult(video.name, reading.text(), utterances=reading.utterances if keep else None,
                                      warnings=warnings))
            continue
        failed += 1
        tqdm.write(f"error: {message}", file=sys.stderr)
        if args.format == "json":
            tqdm.write(video_json(video.name, None, message, False), file=sys.stdout)
        results.append(ClipResult(video.name, error=message))
    return results, failed


def clip_counts(results: Sequence[ClipResult], failed: int) -> str:
    """The report's count of clips: read (and how many of those with warnings), and failed."""
    read = sum(r.error is None for r in results)
    warned = sum(bool(r.warnings) for r in results)
    return f"{read} read" + (f" ({warned} with warnings)" if warned else "") + f", {failed} failed"


def exit_status(results: Sequence[ClipResult], failed: int) -> int:
    """1 when some clip failed or was read with a warning (read only in part, an output not written), else 0."""
    return 1 if failed or any(r.warnings for r in results) else 0


def check_outputs(args: argparse.Namespace) -> str | None:
    """Why ``--out`` (or, reading videos, ``--subtitles``) cannot be written, naming the flag and the
    folder; None when each is a folder this process can write (made if missing). Checked before any
    model loads or video is read, so a run does not do its work and then fail to keep it."""
    from utils.runtime.atomic import NotWritableError, ensure_writable_dir

    outputs = [("--out", args.out)] + ([("--subtitles", args.subtitles)] if args.video is not None else [])
    for flag, folder in outputs:
        if folder is not None:
            try:
                ensure_writable_dir(folder)
            except NotWritableError as err:
                return f"{flag} {err}"
    return None


class WordVideoReader:
    """A raw clip to its most probable words with a word classifier (``words``: its class list).

    The clip goes through the training data's preprocessing (``utils.video.word_crops``: landmarks,
    the similarity transform to the mean face, the grey 96x96 mouth region), then the centred 88x88
    crop and normalisation ``WordDataset`` gives validation clips. A clip longer than LRW's 29
    frames is read in its middle 29, where the word is expected; a shorter one is padded.
    ``classify`` maps a batch ``(N, 1, 29, 88, 88)`` float32 to class scores ``(N, len(words))``.
    """

    def __init__(self, classify: Callable[[np.ndarray], np.ndarray], words: Sequence[str], top: int = 5,
                 crop: int | None = None, region: int | None = None) -> None:
        from utils.data.word_clips import WORD_CROP
        from utils.video.word_crops import WORD_CROP_SIZE, WordCropper

        self.classify = classify
        self.words = list(words)
        self.top = top
        self.crop = crop or WORD_CROP  # the network's input side, cut from the centre of the region
        self.cropper = WordCropper(size=region or WORD_CROP_SIZE)  # the regions it trained on (same view)

    def read(self, path: Path) -> tuple[list[tuple[str, float]], int, Shortfall | None]:
        """The ``top`` words with their probabilities, the clip's frame count, and whether the file was
        read only in part (truncated or damaged: read as far as it goes); raises ExtractionError naming
        the file when it shows no mouth to read."""
        from utils.data.word_clips import centre_frames, top_words, word_input

        frames, shortfall = self.cropper.crop_video(path)
        scores = self.classify(word_input(centre_frames(frames), crop=self.crop)[None])
        return top_words(scores[0], self.words, self.top), len(frames), shortfall


def word_line(name: str, top: list[tuple[str, float]]) -> str:
    """The text line of one clip: ``FILE<TAB>WORD PROBABILITY`` for each of the top words, most probable first."""
    return "\t".join([name] + [f"{word} {prob:.4f}" for word, prob in top])


def word_json(name: str, top: list[tuple[str, float]] | None, frames: int | None, error: str | None,
              warnings: Sequence[str] = ()) -> str:
    """The --format=json line of one clip."""
    return json.dumps({"file": name, "frames": frames, "error": error,
                       "top": [{"word": w, "probability": round(p, 6)} for w, p in top or []],
                       "warnings": list(warnings)}, ensure_ascii=False)


def run_word_videos(args: argparse.Namespace, reader: WordVideoReader) -> tuple[list[ClipResult], int]:
    """Read the word of every clip and print its top words (text or JSON lines on stdout); returns the
    results for the report (top word as the prediction; a clip read only in part, truncated or damaged,
    with a warning, also on stderr) and how many clips could not be read."""
    from tqdm import tqdm

    from utils.data.word_clips import WORD_FRAMES
    from utils.video.errors import ExtractionError

    videos = list_videos(Path(args.video))
    results, failed = [], 0
    for video in tqdm(videos, desc="clips", unit="clip", file=sys.stderr, disable=not args.progress, leave=False):
        try:
            top, frames, shortfall = reader.read(video)
        except ExtractionError as err:
            message = f"{err} [{err.reason}]"
        except OSError as err:
            message = f"{video}: {err}"
        else:
            warnings = [str(shortfall)] if shortfall is not None else []
            for warning in warnings:
                tqdm.write(f"warning: {warning}", file=sys.stderr)
            if frames != WORD_FRAMES:
                how = "its middle" if frames > WORD_FRAMES else "padded to"
                tqdm.write(f"{video}: {frames} frames, read as {how} {WORD_FRAMES} (a word clip is "
                           f"{WORD_FRAMES} frames with the word in the middle)", file=sys.stderr)
            line = (word_json(video.name, top, frames, None, warnings) if args.format == "json"
                    else word_line(video.name, top))
            tqdm.write(line, file=sys.stdout)
            results.append(ClipResult(video.name, top[0][0], warnings=warnings))
            continue
        failed += 1
        tqdm.write(f"error: {message}", file=sys.stderr)
        if args.format == "json":
            tqdm.write(word_json(video.name, None, None, message), file=sys.stdout)
        results.append(ClipResult(video.name, error=message))
    sys.stdout.flush()
    return results, failed


def select_like_training(args: argparse.Namespace, meta: dict, clips: Sequence[str]) -> tuple[list[str], list[str]]:
    """Training and validation clip ids: by default the selection the checkpoint recorded (its definition,
    and its validation clips exactly, with a warning when the clips present differ); with selection flags
    the command line's, whose validation side never holds a clip the checkpoint was trained on (those are
    left out, and the difference said in one line); the unseen split for a checkpoint that records none."""
    from utils.data import sentence_clips as clip_data
    from utils.data import splits

    chosen = any(v is not None for v in (args.split, args.train_list, args.val_list, args.speakers, args.val_speakers))
    recorded = meta.get("split") or {}
    definition = recorded.get("definition")
    if not definition:
        if not chosen:
            print("warning: the model records no split (an older checkpoint or ONNX file): scoring the unseen "
                  "split's sides; give split, val_speakers or train_list/val_list to choose", file=sys.stderr)
        return clip_data.select_clips(clips, args.split or "unseen", args.train_list, args.val_list,
                                      args.speakers, args.val_speakers, args.missing_clips)
    try:
        rec_train, rec_val = clip_data.select_clips(clips, definition["split"], definition.get("train_list"),
                                                    definition.get("val_list"), definition.get("speakers"),
                                                    definition.get("val_speakers"), args.missing_clips)
    except (FileNotFoundError, ValueError) as err:
        if not chosen:
            raise
        print(f"warning: the checkpoint's own selection ({describe_definition(definition)}) cannot be rebuilt here "
              f"({err}): only its {len(recorded.get('val_clips', ()))} recorded validation clips are known, and "
              "the clips it trained on cannot be left out of this selection", file=sys.stderr)
        rec_train, rec_val = [], list(recorded.get("val_clips", ()))
    rec_train, rec_val, notes = splits.apply_recorded_selection(recorded, rec_train, rec_val)
    if not chosen:
        print(f"clips selected as at training ({describe_definition(definition)}; validation side as the "
              "checkpoint recorded it)", file=sys.stderr)
        for note in notes:
            print(f"warning: clips differ from the checkpoint's: {note}", file=sys.stderr)
        return rec_train, rec_val
    train_ids, val_ids = clip_data.select_clips(clips, args.split or "unseen", args.train_list, args.val_list,
                                                args.speakers, args.val_speakers, args.missing_clips)
    if (set(train_ids), set(val_ids)) == (set(rec_train), set(rec_val)):
        return train_ids, val_ids
    trained = set(rec_train)
    kept = [c for c in val_ids if c not in trained]
    dropped = len(val_ids) - len(kept)
    print(f"warning: this selection differs from the checkpoint's ({describe_definition(definition)}): "
          + (f"{dropped} of its {len(val_ids)} validation clips were trained on and are left out, " if dropped else
             "none of its validation clips was trained on, ")
          + f"{len(set(kept) & set(rec_val))} of the {len(kept)} scored are the checkpoint's validation clips",
          file=sys.stderr)
    return train_ids, kept


def describe_definition(definition: dict) -> str:
    if definition.get("train_list"):
        return f"train_list={definition['train_list']} val_list={definition.get('val_list')}"
    if definition.get("val_speakers"):
        return f"val_speakers={','.join(str(s) for s in definition['val_speakers'])}"
    speakers = definition.get("speakers")
    return f"split={definition['split']}" + (f" speakers={','.join(str(s) for s in speakers)}" if speakers else "")


def run_dataset(args: argparse.Namespace, network: Network, decoder: str, beam_width: int,
                lm: LMDecoder | None = None) -> tuple[list[ClipResult], int, GroupedErrorRates]:
    """Evaluate one side of a split; print [Target]/[Pred] per clip, then CER and WER overall and per speaker."""
    from utils.data import sentence_clips as clip_data
    from utils.scoring.sentence_evaluation import evaluate_network

    if args.data_type == "test":
        raise ValueError("data_type=test is a word checkpoint's LRW-layout split; GRID's protocols have a training "
                         "and a validation side (train, valid)")
    choose_data_paths(args, network.meta)
    clips = clip_data.discover_clips(args.image_path)
    train_ids, val_ids = select_like_training(args, network.meta, clips)
    ids = val_ids if args.data_type == "valid" else train_ids
    records = clip_data.build_records({c: clips[c] for c in ids}, args.align_path)
    if not records:
        raise ValueError(f"no {args.data_type} clips under {args.image_path} for this selection "
                         f"(split {args.split or 'as at training'!r}, speakers {args.speakers or 'all'})")
    result = evaluate_network(network, records, args.batch_size, decoder, beam_width, args.num_workers,
                              keep_log_probs=args.out is not None,
                              progress=f"{args.data_type} clips" if args.progress else None, lm=lm)
    for clip_id, target, prediction in zip(result.clip_ids, result.targets, result.predictions):
        print(f"[Clip]   {clip_id}\n[Target] {target}\n[Pred]   {prediction}")
    failed = len(records) - len(result.clip_ids)
    if failed:
        print(f"error: {failed} of {len(records)} clips could not be read (named above)", file=sys.stderr)
    if not result.clip_ids:
        return [], failed, result.rates
    overall = result.rates.overall
    print(f"CER {overall.cer:.4f}  WER {overall.wer:.4f}  ({overall.sentences} clips, {args.data_type}, "
          f"decoder {decoder})")
    print(f"mean per-clip CER {overall.mean_clip_cer:.4f}  WER {overall.mean_clip_wer:.4f}  "
          "(the mean of each clip's rate, as LipNet-PyTorch reports)")
    for speaker, rates in ordered_groups(result.rates):
        print(f"  {speaker:<5} CER {rates.cer:.4f}  WER {rates.wer:.4f}  (clips: {rates.sentences})")
    by_id = {r.clip_id: r for r in records}
    results = []
    for i, clip_id in enumerate(result.clip_ids):
        frames = log_probs = None
        if args.out is not None and i < args.report_limit:
            frames = clip_data.load_frames(by_id[clip_id].path, (network.width, network.height))
            log_probs = result.log_probs[i]
        results.append(ClipResult(clip_id, result.predictions[i], result.targets[i], frames, log_probs))
    return results, failed, result.rates


def score_word_set(args: argparse.Namespace, classifier: WordClassifier) -> int:
    """A word checkpoint on a split of an LRW-layout tree (``--image_path``, ``--data_type``): top-1 and
    top-5 accuracy, accuracy per word and the most confused pairs on stdout; with ``--out`` also
    words.csv (per word) and the usual predictions.csv and report.html (said vs read per clip)."""
    import data_loader
    from model.training.word_task import evaluate_words

    choose_data_paths(args, classifier.meta)
    split = {"valid": "val"}.get(args.data_type, args.data_type)
    dataset = data_loader.WordDataset(args.image_path, split, words=classifier.words,
                                      crop=classifier.net.config.size)
    loader = data_loader.make_word_loader(dataset, args.batch_size, num_workers=args.num_workers)
    predictions: list = []
    scores = evaluate_words(classifier.net, loader, classifier.words, classifier.ctxs,
                            progress=f"{split} clips" if args.progress else None, predictions=predictions)
    failed = len(dataset.unreadable) + len(dataset.problems)
    if dataset.unreadable:
        print(f"error: {len(dataset.unreadable)} of {len(dataset)} clips could not be read (named above)",
              file=sys.stderr)
    if dataset.problems:
        print(f"error: {len(dataset.problems)} word folders were left out (named above)", file=sys.stderr)
    print(f"top-1 {scores.accuracy:.4f}  top-5 {scores.top5_accuracy:.4f}  ({scores.clips} clips, {split})")
    for word, clips, correct, accuracy in scores.per_word():
        print(f"  {word}\t{accuracy:.4f}\t{correct}/{clips}")
    for said, read, count in scores.confused_pairs(10):
        print(f"  confused: {said} read as {read} x{count}")
    if args.out is not None:
        results = [ClipResult(dataset.clips[i].clip_id, classifier.words[p], classifier.words[t])
                   for i, t, p, _ in predictions]
        details = {"model": classifier.source, "clips": f"{scores.clips} read",
                   "top-1": f"{scores.accuracy:.4f}", "top-5": f"{scores.top5_accuracy:.4f}"}
        try:
            scores.write_csv(str(Path(args.out) / "words.csv"))
            paths = write_report(args.out, results, f"Words on {args.image_path} ({split})", details, None,
                                 args.report_limit)
        except OSError as err:
            print(f"error: cannot write the report to {args.out}: {err}", file=sys.stderr)
            return 2
        print(f"wrote {Path(args.out) / 'words.csv'}, {paths[0]} and {paths[1]}", file=sys.stderr)
    return 1 if failed else 0


def read_words(args: argparse.Namespace, classifier: WordClassifier) -> int:
    """``--video`` with a word checkpoint: the top 5 words of each clip (``run_word_videos``), and with
    ``--out`` the CSV and HTML report (the top word as the prediction)."""
    print(f"model {classifier.source} (word classifier, {len(classifier.words)} words)", file=sys.stderr)
    try:
        if args.video is None:
            return score_word_set(args, classifier)
        results, failed = run_word_videos(args, WordVideoReader(
            classifier, classifier.words, crop=classifier.net.config.size, region=classifier.region))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is not None and results:
        details = {"model": classifier.source, "clips": clip_counts(results, failed)}
        try:
            csv_path, html_path = write_report(args.out, results, f"Words on {args.video}", details, None,
                                               args.report_limit)
        except OSError as err:
            print(f"error: cannot write the report to {args.out}: {err}", file=sys.stderr)
            return 2
        print(f"wrote {csv_path} and {html_path}", file=sys.stderr)
    return exit_status(results, failed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s", force=True)
    from model.loading import load_network  # the backend loads here, after the command line is valid
    from utils.reading.network import is_onnx
    problem = check_outputs(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    if not is_onnx(args.model_path):  # GPUs MXNet cannot run stop here, with the reason (the CPU build skips this)
        try:
            for line in preflight(args.num_gpus):
                print(line, file=sys.stderr)
        except GpuProblem as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    if not is_onnx(args.model_path):
        try:
            from model.word_classifier import WordClassifier

            classifier = WordClassifier.load(args.model_path, args.num_gpus)
        except (OSError, ValueError) as err:
            print(f"error: cannot load the model: {err}", file=sys.stderr)
            return 2
        if classifier is not None:
            return read_words(args, classifier)
    try:
        network = load_network(args.model_path, args.num_gpus)
    except (OSError, ValueError) as err:
        print(f"error: cannot load the model: {err}", file=sys.stderr)
        return 2
    decoder, beam_width = choose_decoder(args, network.meta)
    try:
        lm = choose_lm(args, network.meta, decoder, beam_width, network)
    except (OSError, ValueError) as err:
        print(f"error: cannot load the language model: {err}", file=sys.stderr)
        return 2
    source = network.source
    print(f"model {network.describe()}, decoder {describe_decoder(decoder, beam_width, lm)}", file=sys.stderr)
    try:
        if args.video is not None:
            reader = VideoLipreader(network, decoder, beam_width, args.max_utterance, lm, args.margin, args.edge_search)
            results, failed = run_videos(args, reader)
            rates, title = None, f"LipNet on {args.video}"
        else:
            results, failed, rates = run_dataset(args, network, decoder, beam_width, lm)
            title = f"LipNet on {args.image_path} ({args.data_type})"
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is not None and results:
        details = {"model": source, "decoder": describe_decoder(decoder, beam_width, lm),
                   "clips": clip_counts(results, failed)}
        try:
            csv_path, html_path = write_report(args.out, results, title, details, rates, args.report_limit)
        except OSError as err:
            print(f"error: cannot write the report to {args.out}: {err}", file=sys.stderr)
            return 2
        print(f"wrote {csv_path} and {html_path}", file=sys.stderr)
    return exit_status(results, failed)


if __name__ == "__main__":
    sys.exit(main())
