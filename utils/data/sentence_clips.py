"""Clips of mouth crops, framework-free: where they are, what is said in them, which side of a split
they fall on, and their frames as the network takes them (resized, normalised).

``data_loader.py`` builds MXNet data sets on these; ``infer.py`` reads data sets with them on any backend.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.data import lipnet_pytorch
from utils.data.clip_store import PACKED_SUFFIX, load_clip
from utils.data.light import channel_tables, clip_stats, recorded_input_norm
from utils.data.manifest import load_manifest
from utils.data.splits import SPLITS, check_disjoint, listed_clips, make_split, speaker_of
from utils.text.alphabet import CAPTIONS, GRID, Alphabet
from utils.text.grid_text import AlignedWord, align_sentence, parse_align, sentence_from_clip_name
from utils.video.framing import (
    DEFAULT_CHANNEL_ORDER,
    DEFAULT_FRAMING,
    LIPNET_PYTORCH,
    check_channel_order,
    resize_boxes,
)

log = logging.getLogger("data_loader")

NUM_FRAMES = 75
# Label width of a batch at least (GRID's batches keep one shape); a longer label widens its batch. Labels have
# no length limit of their own: a sample whose frames cannot hold its label is left out (``ctc_min_frames``).
MAX_LABEL_LENGTH = 40
TRANSCRIPT_SUFFIX = ".txt"  # SPEAKER/CLIP.txt beside SPEAKER/CLIP.npz: what is said, one line (no word times)


@dataclass(frozen=True)
class ClipRecord:
    """One clip: where its frames are and what is said in it."""

    clip_id: str
    path: Path
    sentence: str
    words: tuple[AlignedWord, ...] = ()

    @property
    def speaker(self) -> str:
        return speaker_of(self.clip_id)


def discover_clips(image_path: str | Path) -> dict[str, Path]:
    """``{clip_id: path}`` for every packed clip or PNG folder under ``image_path/sN/``, or LipNet-PyTorch's
    JPEG folder under ``image_path/sN/video/mpg_6000/`` (``utils.data.lipnet_pytorch``).

    A clip is one output, as ``utils/preprocess_data.py``'s manifest records it: a clip found both
    packed and as a PNG folder is a ValueError naming both (which one is current cannot be told from
    here; a rerun of the preprocessing removes the other), never one of them by directory order."""
    root = Path(image_path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such image folder (run utils/preprocess_data.py first)")
    clips: dict[str, Path] = {}
    for speaker in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for entry in list(lipnet_pytorch.clip_folders(speaker)) or sorted(speaker.iterdir()):
            if entry.name.startswith("."):
                continue  # temporary files of an interrupted write
            if entry.suffix == PACKED_SUFFIX and entry.is_file():
                clip_id = f"{speaker.name}/{entry.stem}"
            elif entry.is_dir():
                clip_id = f"{speaker.name}/{entry.name}"
            else:
                continue
            if clip_id in clips:
                raise ValueError(f"{clips[clip_id]} and {entry}: two outputs of clip {clip_id}; rerun "
                                 "utils/preprocess_data.py (it keeps the one of its settings) or remove one")
            clips[clip_id] = entry
    return dict(sorted(clips.items()))


def check_label(sentence: str, alphabet: Alphabet = GRID) -> None:
    """ValueError unless ``sentence`` can be a training label: not empty, and spelled in ``alphabet``."""
    if not sentence:
        raise ValueError("empty label")
    alphabet.encode(sentence)


def read_transcript(path: Path) -> str:
    """The sentence of a transcript file (utils/prepare_captions.py writes them): its text on one line,
    spaces collapsed; ValueError naming the file when it is empty or no label."""
    sentence = " ".join(path.read_text(encoding="utf-8").split())
    if not sentence:
        raise ValueError(f"{path}: empty transcript")
    try:
        check_label(sentence, CAPTIONS)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return sentence


def label_clip(clip_id: str, path: Path, align_path: str | Path | None) -> ClipRecord:
    """The clip's sentence from its align file (``ALIGN/sN/CLIP.align``, ``ALIGN/CLIP.align`` or LipNet-PyTorch's
    ``ALIGN/sN/align/CLIP.align``), else from its transcript beside it (``CLIP.txt``), else
    from its GRID name; ValueError if none or unusable.

    Sentences are checked against the widest alphabet (CAPTIONS); a run keeps those its own alphabet
    spells (``keep_spellable``)."""
    speaker, name = clip_id.split("/", 1)
    if align_path is not None:
        for candidate in (Path(align_path) / speaker / f"{name}.align", Path(align_path) / f"{name}.align",
                          lipnet_pytorch.align_file(Path(align_path), speaker, name)):
            if candidate.is_file():
                words = tuple(parse_align(candidate))
                sentence = align_sentence(words)
                try:
                    check_label(sentence, CAPTIONS)
                except ValueError as err:
                    raise ValueError(f"{candidate}: {err}") from None
                return ClipRecord(clip_id, path, sentence, words)
    transcript = path.parent / f"{path.name.removesuffix(PACKED_SUFFIX)}{TRANSCRIPT_SUFFIX}"
    if transcript.is_file():
        return ClipRecord(clip_id, path, read_transcript(transcript))
    return ClipRecord(clip_id, path, sentence_from_clip_name(name))


def build_records(clips: dict[str, Path], align_path: str | Path | None) -> list[ClipRecord]:
    """Records for every clip that can be labelled; the others are reported once and left out."""
    records = []
    for clip_id, path in clips.items():
        try:
            records.append(label_clip(clip_id, path, align_path))
        except ValueError as err:
            log.warning("skipping %s: %s", path, err)
    return records


def data_framing(image_path: str | Path, records: Sequence[ClipRecord]) -> str:
    """The framing (``utils.video.framing``) the clips of ``records`` were cropped in: LipNet-PyTorch's for its
    published crop folders, else what ``image_path``'s manifest records (the default framing where it records
    none); ValueError naming the folder when the clips mix framings, which one network cannot read alike."""
    manifest = load_manifest(image_path)
    framings: dict[str, str] = {}
    for record in records:
        if lipnet_pytorch.is_lipnet_pytorch_clip(record.path):
            framing = LIPNET_PYTORCH
        else:
            framing = manifest.get(record.clip_id, {}).get("framing") or DEFAULT_FRAMING
        framings.setdefault(framing, record.clip_id)
    if len(framings) > 1:
        shown = ", ".join(f"{framing} ({clip} ...)" for framing, clip in sorted(framings.items()))
        raise ValueError(f"{image_path}: clips cropped in different framings: {shown}; preprocess them in one")
    return next(iter(framings), DEFAULT_FRAMING)


def keep_spellable(records: Sequence[ClipRecord], alphabet: Alphabet) -> list[ClipRecord]:
    """The records whose sentence ``alphabet`` can spell; each other one is reported and left out."""
    kept = []
    for record in records:
        try:
            alphabet.encode(record.sentence)
        except ValueError as err:
            log.warning("skipping %s: %s", record.path, err)
            continue
        kept.append(record)
    return kept


def select_clips(
    clip_ids: Iterable[str],
    split: str = "unseen",
    train_list: str | Path | None = None,
    val_list: str | Path | None = None,
    speakers: Sequence[int] | None = None,
    val_speakers: Sequence[int] | None = None,
    missing_clips: str = "warn",
) -> tuple[list[str], list[str]]:
    """Training and validation clip ids: from list files, from validation speakers, or a standard split.

    ``missing_clips`` ('warn' or 'error') is what clips named in a list but absent get (``listed_clips``).
    """
    found = set(clip_ids)
    present = found
    if speakers:
        wanted = {f"s{s}" for s in speakers}
        present = {c for c in present if speaker_of(c) in wanted}
    if train_list or val_list:
        if not (train_list and val_list):
            raise ValueError("give both train_list and val_list, or neither")
        chosen = []
        for path in (train_list, val_list):
            clips = [c for c in listed_clips(path, found, missing_clips) if c in present]
            if not clips:
                raise ValueError(f"clip list {path}: none of its clips is of the speakers selected ({speakers})")
            chosen.append(clips)
        check_disjoint(chosen[0], chosen[1], f"clip lists {train_list} and {val_list}")
        return chosen[0], chosen[1]
    if val_speakers:
        held = {f"s{s}" for s in val_speakers}
        ordered = sorted(present)
        return [c for c in ordered if speaker_of(c) not in held], [c for c in ordered if speaker_of(c) in held]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return make_split(split, present)


def load_frames(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A clip's frames, resized to ``size`` (width, height) when that differs (LipNet-PyTorch's crops with
    Lanczos interpolation, as its loader does); maybe a view (``SentenceDataset.__getitem__`` copies them
    once, with the augmentation)."""
    frames = load_clip(path, contiguous=False)
    if size is not None and lipnet_pytorch.is_lipnet_pytorch_clip(Path(path)):
        return resize_boxes(frames, size)
    if size is not None and (frames.shape[2], frames.shape[1]) != tuple(size):
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return frames


class Normaliser:
    """Frames scaled to [0, 1] and normalised per channel, into float32 ``(3, T, H, W)`` in the network's
    ``channel_order`` (frames are RGB; ``bgr`` for networks trained on frames read by OpenCV, as
    LipNet-PyTorch's; ``mean`` and ``std`` are then in that order too): by the data set's ``mean`` and
    ``std``, or with ``per_clip`` by each clip's own (``utils.data.light``: ``input_norm=clip``).

    Scaling and normalisation is one lookup table per channel applied by OpenCV while splitting the
    channels straight into the output (under 1 ms per GRID clip, where NumPy arithmetic or MXNet
    operators take 10-15 ms); a clip's own statistics come from its channels' histograms.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channel_order: str = DEFAULT_CHANNEL_ORDER,
                 per_clip: bool = False) -> None:
        self.reverse = check_channel_order(channel_order) == "bgr"
        self.per_clip = per_clip
        self.tables = channel_tables(mean, std)

    @classmethod
    def recorded(cls, mean: Sequence[float], std: Sequence[float], meta: Mapping,
                 channel_order: str = DEFAULT_CHANNEL_ORDER) -> Normaliser:
        """The normalisation a network was trained with, as its checkpoint or ONNX description ``meta`` records it,
        into its ``channel_order``."""
        return cls(mean, std, channel_order, per_clip=recorded_input_norm(meta) == "clip")

    def normalise_into(self, frames: np.ndarray, out: np.ndarray, length: int | None = None) -> None:
        """uint8 ``(T, H, W, 3)`` into float32 ``out`` of shape ``(3, T, H, W)``. Per clip, the statistics are
        those of the first ``length`` frames (default: all), the clip's own: padding does not count."""
        t, h, w, _ = frames.shape
        planes = cv2.split(np.ascontiguousarray(frames).reshape(t * h, w, 3))
        if self.reverse:
            planes = planes[::-1]
        tables = self.tables
        if self.per_clip:
            real = t if length is None else max(1, min(length, t))
            tables = channel_tables(*clip_stats([plane[: real * h] for plane in planes]))
        for channel, table in enumerate(tables):
            cv2.LUT(planes[channel], table, dst=out[channel].reshape(t * h, w))


def fit_length(order: np.ndarray, num_frames: int) -> tuple[np.ndarray, int]:
    """Frame indices ``order`` cut to ``num_frames``, or padded to it by holding the last frame (a
    closed, still mouth, not black), and how many of them are real."""
    length = min(len(order), num_frames)
    return np.concatenate([order[:length], np.full(num_frames - length, order[length - 1])]), length


def clip_batches(records: Sequence[ClipRecord], size: tuple[int, int], normaliser: Normaliser, batch_size: int,
                 num_frames: int | None = None, num_workers: int = 0,
                 ) -> Iterator[tuple[list[ClipRecord], np.ndarray, np.ndarray]]:
    """``(records, data (N, 3, T, H, W) float32 normalised, lengths (N,) int64)`` in order, the clips as
    the validation loader gives them to MXNet, for any backend: padded (holding their last frame) to
    ``num_frames``, or by default to the batch's longest clip, whole. A clip that cannot be read is
    reported and left out. ``num_workers`` threads load clips (OpenCV and the JPEG decoder release the GIL)."""
    width, height = size

    def load(record: ClipRecord) -> tuple[np.ndarray, int] | None:
        try:
            frames = load_frames(record.path, size)
        except ValueError as err:
            log.warning("skipping %s: %s", record.path, err)
            return None
        return frames, min(len(frames), num_frames or len(frames))

    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 else None
    try:
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            loaded = list(pool.map(load, chunk) if pool else map(load, chunk))
            kept = [(record, clip) for record, clip in zip(chunk, loaded) if clip is not None]
            if not kept:
                continue
            frames_in_batch = num_frames or max(length for _, (_, length) in kept)
            data = np.empty((len(kept), 3, frames_in_batch, height, width), np.float32)
            for i, (_, (frames, length)) in enumerate(kept):
                order, _ = fit_length(np.arange(len(frames)), frames_in_batch)
                normaliser.normalise_into(frames.take(order, axis=0), data[i], length)
            yield [record for record, _ in kept], data, np.array([length for _, (_, length) in kept], np.int64)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
