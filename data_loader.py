"""Gluon data sets of mouth-crop clips with GRID labels, and the batches the trainer consumes;
``WordDataset``: word clips in LRW's layout (``utils/data/word_clips.py``) for the word classifier.

Clips are found (utils/data/sentence_clips.py) under ``image_path`` as ``sN/{clip}.npz`` (our packed format)
or ``sN/{clip}/`` PNG folders (the original example's layout, so its published preprocessed data works as is).
Labels come from ``align_path/sN/{clip}.align``, from a flat ``align_path/{clip}.align`` (how the
original example's aligns were published), from a transcript ``sN/{clip}.txt`` beside the clip (what
utils/prepare_captions.py writes for captioned videos), or else from the GRID clip name.
"""
from __future__ import annotations

import ctypes
import logging
import random
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from model.backend import gluon, mx
from utils.data.clip_store import clip_length, load_clip
from utils.data.light import NO_LIGHT, Light, relight
from utils.data.sentence_clips import (  # noqa: F401 (clip discovery, labels and selection live there; re-exported)
    MAX_LABEL_LENGTH,
    NUM_FRAMES,
    ClipRecord,
    Normaliser,
    build_records,
    check_label,
    data_framing,
    discover_clips,
    fit_length,
    keep_spellable,
    label_clip,
    load_frames,
    select_clips,
)
from utils.data.word_clips import WORD_CROP, WORD_FRAMES, list_words, word_clips, word_input
from utils.text.alphabet import GRID, Alphabet
from utils.text.grid_text import AlignedWord, ctc_min_frames
from utils.video.framing import DEFAULT_CHANNEL_ORDER


def _keep_freed_clip_buffers() -> None:
    """Ask glibc to keep freed clip-sized buffers for reuse instead of handing them back to the kernel.

    Decoding and augmenting a GRID clip allocates a few 1-2 MB buffers; glibc unmapped or trimmed
    each once freed, so every clip faulted in fresh pages, about a tenth of the loader's CPU time.
    Nothing happens where the C library is not glibc.
    """
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameters
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(m_mmap_threshold, 16 << 20)
    libc.mallopt(m_trim_threshold, 256 << 20)


_keep_freed_clip_buffers()


log = logging.getLogger(__name__)


def shard_records(records: Sequence[ClipRecord], rank: int, count: int, equal: bool = True) -> list[ClipRecord]:
    """Worker ``rank``'s share of ``records`` among ``count`` workers: every ``count``-th clip in clip-id order.

    Every worker computes the same split without talking to the others. With ``equal`` the
    list is first extended, wrapping around, to a multiple of ``count``, so that all shards have
    the same size and every worker takes the same number of steps, as a synchronous kvstore
    needs; up to ``count - 1`` clips are then seen twice an epoch.
    """
    if not 0 <= rank < count:
        raise ValueError(f"worker rank {rank} is outside 0..{count - 1}")
    ordered = sorted(records, key=lambda r: r.clip_id)
    if equal and ordered:
        ordered = [ordered[i % len(ordered)] for i in range(-(-len(ordered) // count) * count)]
    return ordered[rank::count]


def channel_stats(records: Sequence[ClipRecord], max_clips: int = 64, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of frames scaled to [0, 1], over a seeded sample of clips."""
    sample = random.Random(seed).sample(list(records), min(max_clips, len(records)))
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for record in sample:
        try:
            frames = load_clip(record.path).reshape(-1, 3).astype(np.float64) / 255.0
        except ValueError as err:
            log.warning("skipping %s: %s", record.path, err)
            continue
        total += frames.sum(0)
        total_sq += (frames**2).sum(0)
        count += len(frames)
    if not count:
        raise ValueError("no readable clip to compute the input normalisation from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


def temporal_jitter(count: int, rng: np.random.Generator, p: float) -> np.ndarray:
    """Frame indices after deleting each of ``count`` frames with probability ``p`` and duplicating
    it with probability ``p`` (the paper's augmentation); never empty."""
    draws = rng.random(count)
    order = np.repeat(np.arange(count), np.where(draws < p, 0, np.where(draws > 1 - p, 2, 1)))
    return order if len(order) else np.arange(count)


LOW_RATE = 0.48  # lowest camera rate ``low_rate`` draws, as a fraction of the clip's: 12 fps for GRID's 25


def low_rate(count: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of a ``count``-frame clip as a slower camera would show them once resampled to the
    clip's rate: the camera's rate drawn from [LOW_RATE, 1) times the clip's and its first frame at a random
    phase; each output frame is the camera frame nearest its time (as ``utils.video.reader`` resamples), that
    frame being the clip frame nearest the camera frame's time. Non-decreasing; ``count`` long.

    Why: a 15 fps source reaches the network with 2 of every 5 frames repeated, in a regular beat;
    ``temporal_jitter`` repeats and drops scattered single frames (5% each by default), so a model trained
    on it alone has rarely seen such a beat."""
    ratio = rng.uniform(LOW_RATE, 1.0)
    phase = rng.random()
    camera = np.maximum(np.round(np.arange(count) * ratio - phase), 0)
    return np.minimum(np.round((camera + phase) / ratio), count - 1).astype(np.int64)


RECODE_SHRINK = 0.5  # smallest size, as a fraction of the crop's, that ``recode`` shrinks frames to
RECODE_QUALITY = (30, 90)  # range of JPEG qualities ``recode`` compresses frames at


def recode(frames: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 degraded as a re-encoded video degrades them: with probability ``p``
    shrunk by a factor drawn from [RECODE_SHRINK, 1] and enlarged back bilinearly (an upscaled or
    softer source), and, independently with probability ``p``, each JPEG-compressed at one quality
    drawn from RECODE_QUALITY (codec noise). Returns ``frames`` itself when neither is drawn.

    Why: a model that memorises the three shared GRID clips dropped single letters reading their H.264
    copies (2 grey levels off) or their bilinear enlargement to 1280x1024 (crops at 55% of the originals'
    sharpness) on some seeds. Trained with this at p = 0.5 (and 700 epochs, not 500), seeds 1-8 read 132 of
    the 136 copies ``tests/conftest.py::real_model`` lists, every miss in a variable-rate video; without
    it seeds 1-6 read 92 of 102.
    """
    h, w = frames.shape[1:3]
    if rng.random() < p:
        factor = rng.uniform(RECODE_SHRINK, 1.0)
        small = (max(2, int(round(w * factor))), max(2, int(round(h * factor))))
        frames = np.stack([cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (w, h),
                                      interpolation=cv2.INTER_LINEAR) for f in frames])
    if rng.random() < p:
        quality = int(rng.integers(RECODE_QUALITY[0], RECODE_QUALITY[1] + 1))
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        frames = np.stack([cv2.imdecode(cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), params)[1],
                                        cv2.IMREAD_COLOR)[..., ::-1] for f in frames])
    return frames


def word_span(word: AlignedWord, count: int, needed: int) -> tuple[int, int]:
    """Frames ``[start, end)`` of ``word`` in a clip of ``count`` frames, widened evenly into its
    neighbours (as far as the clip allows) until they are at least ``needed``."""
    start = min(max(word.start, 0), count - 1)
    end = min(max(word.end, start + 1), count)
    missing = max(needed - (end - start), 0)
    before = min(missing // 2, start)
    after = min(missing - before, count - end)
    before = min(missing - after, start)
    return start - before, end + after


def aligned_segments(words: Sequence[AlignedWord], count: int) -> list[tuple[int, int, str]] | None:
    """A clip of ``count`` frames cut into consecutive ``(start, end, text)`` segments that cover it: each
    word with the space after it (the last without) over its aligned frames, and the silences around
    them with no text; None when a word's frames cannot hold its text (CTC needs ``ctc_min_frames``).

    Align spans are rounded outwards, so neighbours share a frame: each segment starts where the one
    before it ended and is widened past its word's end only as far as its text needs.
    """
    segments, at = [], 0
    for k, word in enumerate(words):
        text = word.word + (" " if k < len(words) - 1 else "")
        start = min(max(word.start, at), count)
        if start > at:
            segments.append((at, start, ""))
        end = min(max(word.end, start + ctc_min_frames(text)), count)
        if end - start < ctc_min_frames(text):
            return None
        segments.append((start, end, text))
        at = end
    if at < count:
        segments.append((at, count, ""))
    return segments


def moved_segments(segments: Sequence[tuple[int, int, str]], order: np.ndarray) -> list[tuple[int, int, str]] | None:
    """``aligned_segments`` of a clip moved onto a sample made of its frames ``order`` (clip frame indices in
    increasing order: jittered, cut): each segment covers the sample frames its clip frames went to, and one
    left with none is dropped. None when a word keeps fewer frames than its text needs (cut off, or jitter
    deleted them): that sample is scored as a whole sentence.

    Why: temporal jitter trains against repeated and dropped frames (a variable-rate video), which
    ``aligned_ctc`` could not use while its segments stayed where the frames were before the jitter. With
    it, 6 of 8 seeds of the model the tests share read every variable-rate copy at 700 epochs, against 5
    without, and at 900 epochs seeds 1-18 all do (``tests/conftest.py::real_model``).
    """
    moved = []
    for start, end, text in segments:
        start, end = int(np.searchsorted(order, start)), int(np.searchsorted(order, end))
        if text and end - start < ctc_min_frames(text):
            return None
        if end > start:
            moved.append((start, end, text))
    return moved


@dataclass(frozen=True)
class SamplePlan:
    """How a training sample is made from its clip: its ``sentence`` (the clip's, or one word's), ``order``
    (the clip frame behind each sample frame: a word's span, jittered, cut or padded), ``length`` (how many
    of those are real, not padding) and whether it is flipped."""

    sentence: str
    order: np.ndarray
    length: int
    flip: bool


class SentenceDataset(gluon.data.Dataset):
    """Clips as ``(frames (T, H, W, 3) uint8, label ids, input length, clip index)``.

    ``num_frames`` cuts or pads (holding the last frame) every sample to that many frames (GRID's 75:
    every batch has one shape); ``None`` keeps each clip's own length (temporal jitter is cut or padded
    back to it) and ``Batchify`` pads a batch to its longest sample.

    In training, ``recode_prob`` and ``light`` (``utils.data.light.relight``) degrade a sample as a re-encoded
    video and as another light would, each from its own seeded stream.

    Frames stay uint8 until ``Batchify`` writes them, normalised, into the batch: a quarter of the
    memory traffic of float32 clips. A clip that cannot be read is reported once and yields
    ``None``; batches drop it. So does a sample with fewer frames than CTC needs for its label
    (``ctc_min_frames``): MXNet's CTCLoss would give it a loss of 0 and train on it silently. A
    single-word sample is widened to what its word needs and jittered only if it stays long enough,
    so this is left to clips that are short as a whole; ``too_short`` counts them.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        size: tuple[int, int] | None = None,
        num_frames: int | None = NUM_FRAMES,
        train: bool = False,
        flip_prob: float = 0.5,
        jitter_prob: float = 0.05,
        word_prob: float = 0.0,
        seed: int = 0,
        alphabet: Alphabet = GRID,
        recode_prob: float = 0.0,
        low_rate_prob: float = 0.0,
        light: Light = NO_LIGHT,
    ) -> None:
        self.records = list(records)
        self.alphabet = alphabet
        self.size = size
        self.num_frames = num_frames
        self.flip_prob = flip_prob if train else 0.0
        self.jitter_prob = jitter_prob if train else 0.0
        self.word_prob = word_prob if train else 0.0
        self.recode_prob = recode_prob if train else 0.0
        self.low_rate_prob = low_rate_prob if train else 0.0
        self.light = light if train else NO_LIGHT
        self.seed = seed
        self._reported: set[str] = set()
        self.too_short = 0  # samples dropped for having fewer frames than their label needs
        self._lock = threading.Lock()
        for record in self.records:
            try:
                check_label(record.sentence, alphabet)  # fail before training, not in the middle of an epoch
            except ValueError as err:
                raise ValueError(f"{record.clip_id}: {err}") from None

    def __len__(self) -> int:
        return len(self.records)

    def load_frames(self, record: ClipRecord) -> np.ndarray:
        """The clip's frames at the data set's size (``utils.data.sentence_clips.load_frames``)."""
        return load_frames(record.path, self.size)

    def plan(self, epoch: int, idx: int, count: int) -> SamplePlan:
        """How sample ``(epoch, idx)`` is made from its clip of ``count`` frames. The draws depend only on
        (seed, epoch, index), so they are the same in worker processes and after a resume, and the
        trainer can replay them without the frames (``aligned_ctc`` moves the align with the jitter)."""
        record = self.records[idx]
        rng = np.random.default_rng((self.seed, epoch, idx))
        sentence, start, end = record.sentence, 0, count
        if self.word_prob and record.words and rng.random() < self.word_prob:
            word = record.words[rng.integers(len(record.words))]
            start, end = word_span(word, count, ctc_min_frames(word.word))
            sentence = word.word
        order = np.arange(end - start)
        if self.low_rate_prob:  # its own stream: the draws below stay those of a run without it
            slow = np.random.default_rng((self.seed, epoch, idx, 17))
            if slow.random() < self.low_rate_prob:
                order = low_rate(end - start, slow)
        if self.jitter_prob:
            order = order[temporal_jitter(len(order), rng, self.jitter_prob)]
        if len(order) < ctc_min_frames(sentence):  # jitter deleted frames the label needs
            order = np.arange(end - start)
        order, length = fit_length(start + order, self.num_frames or end - start)
        return SamplePlan(sentence, order, length, bool(self.flip_prob and rng.random() < self.flip_prob))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int, int] | None:
        """``key`` is an index, or ``(epoch, index)`` from ``EpochShuffleSampler``."""
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        record = self.records[idx]
        try:
            frames = self.load_frames(record)
        except ValueError as err:
            if record.clip_id not in self._reported:
                self._reported.add(record.clip_id)
                log.warning("skipping %s: %s", record.path, err)
            return None
        plan = self.plan(epoch, idx, len(frames))
        needed = ctc_min_frames(plan.sentence)
        if plan.length < needed:
            with self._lock:
                self.too_short += 1
                first = record.clip_id not in self._reported
                self._reported.add(record.clip_id)
            if first:
                log.warning("skipping %s: %d frames cannot hold its %d-character label %r (CTC needs %d)",
                            record.path, plan.length, len(plan.sentence), plan.sentence, needed)
            return None
        padded = frames.take(plan.order, axis=0)  # one copy does the cut, the jitter and the padding
        if plan.flip:
            t, h, w, c = padded.shape
            padded = cv2.flip(padded.reshape(t * h, w, c), 1).reshape(t, h, w, c)
        if self.recode_prob:  # its own stream: the draws above stay those of a run without it
            padded = recode(padded, np.random.default_rng((self.seed, epoch, idx, 13)), self.recode_prob)
        if self.light.prob:  # its own stream too
            padded = relight(padded, np.random.default_rng((self.seed, epoch, idx, 17)), *self.light)
        return padded, np.asarray(self.alphabet.encode(plan.sentence), np.int32), plan.length, idx


class BatchBuffers:
    """Batch arrays that are refilled once MXNet has let go of them.

    Writing into a fresh 36 MB array faults in every page of it, which cost more than the
    normalisation written there. ``mx.nd.from_numpy`` holds a reference to its array until the
    NDArray's memory is released, after every pending operation on it, so an array referenced only
    by this pool (and the names of ``take``) is free to refill.
    """

    _FREE_REFERENCES = 3  # the pool's list, the name ``array`` and getrefcount's own argument

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A writable float32 array of ``shape`` that nothing else holds."""
        with self._lock:
            spare = None
            for i in range(len(self._arrays)):
                array = self._arrays[i]
                if sys.getrefcount(array) > self._FREE_REFERENCES:
                    continue
                if array.shape == shape:
                    array.flags.writeable = True  # from_numpy froze it while MXNet held it
                    return array
                spare = i
            array = np.empty(shape, np.float32)
            if spare is None:
                self._arrays.append(array)
            else:  # a free array of another shape (the last, short batch) makes room
                self._arrays[spare] = array
            return array


class Batchify(Normaliser):
    """Turns samples into ``(data (N, 3, T, H, W) float32, labels padded with -1, data lengths,
    label lengths, indices, data lengths as NumPy)``: T is the longest sample's (shorter ones hold their
    last frame), the label width the longest label's, at least ``MAX_LABEL_LENGTH`` or T if less. The NumPy lengths
    let the trainer count padding without waiting for MXNet.

    Each clip is normalised (``Normaliser``) straight into the batch buffer, and MXNet takes that
    buffer over without a copy: copying a batch of 8 GRID clips into an NDArray would cost more than
    normalising it.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channel_order: str = DEFAULT_CHANNEL_ORDER,
                 per_clip: bool = False) -> None:
        super().__init__(mean, std, channel_order, per_clip)
        self.buffers = BatchBuffers()

    def __call__(self, samples: list) -> tuple | None:
        samples = [s for s in samples if s is not None]
        if not samples:
            return None
        n = len(samples)
        _, h, w, _ = samples[0][0].shape
        if any(s[0].shape[1:] != (h, w, 3) for s in samples):
            shapes = sorted({s[0].shape[1:3] for s in samples})
            raise ValueError(f"clips of different frame sizes {shapes} in one batch: give the data set a size")
        t = max(len(s[0]) for s in samples)
        data = self.buffers.take((n, 3, t, h, w))
        # MXNet's CTC loss refuses labels wider than the data is long, so a batch of clips shorter
        # than MAX_LABEL_LENGTH frames gets narrower labels (frames=any)
        labels = np.full((n, max(min(MAX_LABEL_LENGTH, t), *(len(s[1]) for s in samples))), -1, np.float32)
        label_lengths = np.zeros(n, np.float32)
        for i, (frames, label, length, _) in enumerate(samples):
            if len(frames) < t:  # hold the last frame, as fit_length pads
                frames = np.concatenate([frames, np.repeat(frames[-1:], t - len(frames), axis=0)])
            self.normalise_into(frames, data[i], length)
            labels[i, : len(label)] = label
            label_lengths[i] = len(label)
        data_lengths = np.array([s[2] for s in samples], np.float32)
        indices = np.array([s[3] for s in samples], np.int64)
        return (mx.nd.from_numpy(data, zero_copy=True), mx.nd.array(labels), mx.nd.array(data_lengths),
                mx.nd.array(label_lengths), indices, data_lengths.astype(np.int64))


def make_loader(dataset: SentenceDataset, batch_size: int, mean: Sequence[float], std: Sequence[float],
                sampler: gluon.data.Sampler | None = None, num_workers: int = 0,
                last_batch: str = "keep", channel_order: str = DEFAULT_CHANNEL_ORDER,
                per_clip: bool = False) -> gluon.data.DataLoader:
    """A DataLoader over ``sampler`` (default: in order) with ``num_workers`` worker threads, its batches in the
    network's ``channel_order``; ``per_clip`` normalises each clip by its own statistics (``input_norm=clip``)
    instead of ``mean`` and ``std``."""
    return _thread_loader(dataset, batch_size, Batchify(mean, std, channel_order, per_clip), sampler, num_workers,
                          last_batch)


def _thread_loader(dataset: gluon.data.Dataset, batch_size: int, batchify: object,
                   sampler: gluon.data.Sampler | None, num_workers: int, last_batch: str) -> gluon.data.DataLoader:
    """Threads, not processes: decoding, augmenting and normalising run in OpenCV and NumPy
    with the GIL released, so threads keep both cores busy without pickling each 36 MB batch
    through shared memory, which cost more than making it."""
    sampler = sampler if sampler is not None else gluon.data.SequentialSampler(len(dataset))
    batch_sampler = gluon.data.BatchSampler(sampler, batch_size, last_batch)
    return gluon.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                 thread_pool=num_workers > 0, batchify_fn=batchify)


class WordDataset(gluon.data.Dataset):
    """Word clips of one split of an LRW-layout tree as ``(frames (1, 29, 88, 88) float32, label, index)``.

    ``words`` is the class list (default: the tree's sorted word folders; give the training set's to a
    validation set so labels agree, and keep it with the model: ``self.words``). In training each clip
    gets a random 88x88 crop of its 96x96 region and a horizontal flip with ``flip_prob``, drawn from
    (seed, epoch, index) only, so worker threads and a resumed run see the same batches; otherwise
    the centred crop. Clips left out (a missing ``.txt``, a word folder with no clips, a word folder not
    among ``words``) are reported by file and reason in ``problems``; a clip that cannot be read yields
    ``None`` (batches drop it) and is recorded in ``unreadable``.
    """

    def __init__(self, root: str, split: str, words: Sequence[str] | None = None, train: bool = False,
                 flip_prob: float = 0.5, seed: int = 0, crop: int = WORD_CROP,
                 num_frames: int = WORD_FRAMES) -> None:
        self.words = list(words) if words is not None else list_words(root)
        if not self.words:
            raise ValueError(f"{root}: no word folders")
        self.clips, self.problems = word_clips(root, split, self.words)
        for problem in self.problems:
            log.warning("skipping %s", problem)
        if not self.clips:
            raise ValueError(f"{root}: no usable {split} clip of any of its {len(self.words)} word(s)")
        label = {word: i for i, word in enumerate(self.words)}
        self.labels = np.array([label[clip.word] for clip in self.clips], np.int64)
        self.train = train
        self.flip_prob = flip_prob if train else 0.0
        self.seed = seed
        self.crop = crop
        self.num_frames = num_frames
        self.unreadable: dict[str, str] = {}  # clip id -> why it could not be read (each reported once)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[np.ndarray, int, int] | None:
        """``key`` is an index, or ``(epoch, index)`` from ``EpochShuffleSampler``."""
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        clip = self.clips[idx]
        try:
            frames = load_clip(clip.path, contiguous=False)
            if frames.ndim != 3:
                raise ValueError(f"{clip.path}: colour frames {frames.shape}, word clips are grey (T, H, W)")
            offset, flip = None, False
            if self.train:
                rng = np.random.default_rng((self.seed, epoch, idx))
                _, height, width = frames.shape
                if height < self.crop or width < self.crop:
                    raise ValueError(f"{clip.path}: frames of {width}x{height} are smaller than the crop")
                offset = (int(rng.integers(height - self.crop + 1)), int(rng.integers(width - self.crop + 1)))
                flip = bool(rng.random() < self.flip_prob)
            data = word_input(frames, offset, flip, self.crop, self.num_frames)
        except ValueError as err:
            if clip.clip_id not in self.unreadable:
                self.unreadable[clip.clip_id] = str(err)
                log.warning("skipping %s: %s", clip.path, err)
            return None
        return data, int(self.labels[idx]), idx


def word_batchify(samples: list) -> tuple | None:
    """``(data (N, 1, T, H, W), labels (N,) float32, indices (N,) int64)``, unreadable clips dropped."""
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    data = np.stack([s[0] for s in samples])
    return (mx.nd.from_numpy(data, zero_copy=True), mx.nd.array([s[1] for s in samples]),
            np.array([s[2] for s in samples], np.int64))


def make_word_loader(dataset: WordDataset, batch_size: int, sampler: gluon.data.Sampler | None = None,
                     num_workers: int = 0, last_batch: str = "keep") -> gluon.data.DataLoader:
    """Batches of ``word_batchify`` over ``sampler`` (default: in order) with ``num_workers`` threads."""
    return _thread_loader(dataset, batch_size, word_batchify, sampler, num_workers, last_batch)


class EpochShuffleSampler(gluon.data.Sampler):
    """Yields ``(epoch, index)`` in an order that depends only on (seed, epoch).

    The epoch travels with each index instead of living in the data set, so a batch's
    augmentation never depends on when a worker thread happened to read a shared attribute.
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0
        self.skip = 0  # positions of this epoch's order already consumed (resume mid-epoch)

    def __iter__(self):  # noqa: ANN204
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.length)
        return iter([(self.epoch, int(i)) for i in order[self.skip:]])

    def __len__(self) -> int:
        return max(self.length - self.skip, 0)


def clip_lengths(records: Sequence[ClipRecord]) -> list[int]:
    """Each clip's frame count, read from its header (``utils.data.clip_store.clip_length``); 0 for a clip that cannot
    be read (the data set reports it when it is loaded)."""
    lengths = []
    for record in records:
        try:
            lengths.append(clip_length(record.path))
        except ValueError:
            lengths.append(0)
    return lengths


class BucketSampler(EpochShuffleSampler):
    """``EpochShuffleSampler``'s ``(epoch, index)`` pairs, in batches of clips of similar length, so that a
    batch padded to its longest clip holds little padding.

    Per (seed, epoch): the clips are shuffled, cut into pools of ``pool`` batches, each pool sorted by
    length and cut into batches, and the batches of the whole epoch shuffled. The order is a function of
    (seed, epoch) alone, so a resume at any batch (``skip``, a multiple of ``batch_size``) continues it
    exactly, and each epoch's batches differ. ``lengths`` are the clips' frame counts (``clip_lengths``).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool: int = 50) -> None:
        super().__init__(len(lengths), seed)
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.pool = pool

    def order(self) -> np.ndarray:
        """This epoch's order of clip indices."""
        rng = np.random.default_rng((self.seed, self.epoch, 1))
        shuffled = rng.permutation(self.length)
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, self.length, size):
            chunk = shuffled[start:start + size]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        # The short last batch stays last, where BatchSampler's cut expects it.
        full = [b for b in batches if len(b) == self.batch_size]
        rest = [b for b in batches if len(b) < self.batch_size]
        picked = rng.permutation(len(full))
        return np.concatenate([full[i] for i in picked] + rest) if batches else shuffled

    def __iter__(self):  # noqa: ANN204
        return iter([(self.epoch, int(i)) for i in self.order()[self.skip:]])


def padded_fraction(batches: Sequence[tuple[int, int]]) -> float:
    """The share of padding frames in batches given as ``(real frames, frames in the batch array)``."""
    real = sum(r for r, _ in batches)
    total = sum(t for _, t in batches)
    return 1.0 - real / total if total else 0.0
