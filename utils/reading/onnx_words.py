"""A word classifier exported by utils/export_onnx.py, run by onnxruntime: reading words without MXNet.

The file's metadata holds the word list, normalisation, input size, mouth-region side and frame rate, so the file
alone is enough; ``infer.py`` reads word videos and scores LRW-layout sets with it (``read_word_set``) as it does
with a word checkpoint on MXNet. Nothing here imports MXNet.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from utils.data.clip_store import load_clip
from utils.data.word_clips import WORD_FPS, WordClip, word_clips, word_input
from utils.reading.network import WORD_NETWORK, NetworkError
from utils.reading.onnx_network import _RUN_ERRORS, INPUT, LENGTHS, open_session, read_metadata
from utils.scoring.word_metrics import WordScores
from utils.video.word_crops import WORD_CROP_SIZE

log = logging.getLogger(__name__)


class OnnxWordClassifier:
    """``classifier(batch)``: log-probabilities ``(N, len(words))`` of normalised clips ``(N, 1, T, size, size)``."""

    def __init__(self, model: str | Path | bytes, use_gpu: bool = False,
                 opened: tuple[ort.InferenceSession, str, str] | None = None) -> None:
        """``opened``: what ``open_session`` gave for ``model``, when the caller opened it already."""
        self.session, source, self.backend = opened or open_session(model, use_gpu)
        info = read_metadata(self.session, source)
        if info.get("network") != WORD_NETWORK:
            raise ValueError(f"{source}: a LipNet's ONNX file, not a word classifier's")
        try:
            config = info["config"]
            self.words = [str(w) for w in info["words"]]
            self.crop = int(config["size"])
            self.frames = int(config["frames"])
            self.region = int(info.get("region") or WORD_CROP_SIZE)
            self.frame_rate = float(info.get("frame_rate") or WORD_FPS)
            norm = info["normalisation"]
            self.mean, self.std = tuple(norm["mean"]), tuple(norm["std"])
            if len(self.words) != int(config["num_classes"]):
                raise ValueError(f"{len(self.words)} words for {config['num_classes']} classes")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: incomplete word-classifier metadata ({err})") from None
        self.source = str(info.get("source") or source) if isinstance(model, bytes) else source
        self.meta = {"data": info.get("data") or {}, "crop": info.get("crop") or {},
                     "imported_from": info.get("imported_from") or {},
                     "metrics": info.get("metrics") or {}}
        self.takes_lengths = LENGTHS in {i.name for i in self.session.get_inputs()}

    def __call__(self, batch: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Log-probabilities of a batch; ``lengths`` (N,) each clip's real frames (all of them when not given;
        a graph exported without lengths averages over every frame)."""
        batch = np.ascontiguousarray(batch, np.float32)
        feed = {INPUT: batch}
        if self.takes_lengths:
            feed[LENGTHS] = (np.full(len(batch), batch.shape[2], np.int32) if lengths is None
                             else np.asarray(lengths, np.int32))
        try:
            return self.session.run(None, feed)[0]
        except _RUN_ERRORS as err:
            raise NetworkError(f"onnxruntime could not read a batch of shape {batch.shape}: "
                               f"{type(err).__name__}: {str(err).strip().splitlines()[0]}") from err


@dataclass
class WordSetReading:
    """A split read: the scores, each clip read as ``(index into clips, label, predicted)``, and the clips and
    word folders that could not be read (file and reason)."""

    scores: WordScores
    clips: list[WordClip]
    predictions: list[tuple[int, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


def read_word_set(classify: Callable[[np.ndarray], np.ndarray], root: str | Path, split: str, words: Sequence[str],
                  crop: int, batch_size: int, progress: str | None = None) -> WordSetReading:
    """Every clip of ``split`` under an LRW-layout ``root`` through ``classify`` (log-probabilities), with the
    centred crop validation uses (``word_input``). A clip that cannot be read is named and left out; a word
    folder not among ``words`` or without clips is a problem, named."""
    from tqdm import tqdm

    clips, problems = word_clips(root, split, words)
    for problem in problems:
        log.warning("skipping %s", problem)
    if not clips:
        raise ValueError(f"{root}: no usable {split} clip of any of the model's {len(words)} word(s)")
    label = {word: i for i, word in enumerate(words)}
    reading = WordSetReading(WordScores(list(words)), clips, problems=problems)
    for start in tqdm(range(0, len(clips), batch_size), desc=progress, disable=progress is None, unit="batch",
                      leave=False):
        batch, indices = [], []
        for index in range(start, min(start + batch_size, len(clips))):
            clip = clips[index]
            try:
                frames = load_clip(clip.path, contiguous=False)
                if frames.ndim != 3:
                    raise ValueError(f"{clip.path}: colour frames {frames.shape}, word clips are grey (T, H, W)")
                batch.append(word_input(frames, crop=crop))
            except (OSError, ValueError) as err:
                reading.unreadable[clip.clip_id] = str(err)
                log.warning("skipping %s: %s", clip.path, err)
                continue
            indices.append(index)
        if not batch:
            continue
        log_probs = classify(np.stack(batch))
        labels = np.array([label[clips[i].word] for i in indices], np.int64)
        losses = -log_probs[np.arange(len(labels)), labels]
        predicted = reading.scores.add(labels, log_probs, losses)
        reading.predictions.extend(zip(indices, labels.tolist(), predicted.tolist()))
    return reading
