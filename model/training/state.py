"""Where a run stands and what it starts from: its state, saved in every checkpoint so that a
resume continues exactly, and the checkpoint (or parameter file) it starts from."""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from model.checkpoint import (
    OUTPUT_LAYER,
    STATES_FILE,
    read_checkpoint,
)
from model.lipnet import LipNetConfig
from utils.text.alphabet import Alphabet

log = logging.getLogger("lipnet")


@dataclass
class RunState:
    """Where a run stands; saved in every checkpoint so that a resume continues exactly."""

    epoch: int = 0  # epochs completed
    iteration: int = 0  # optimiser steps taken
    batch_in_epoch: int = 0  # batches of the current epoch done before an interrupted save
    best_wer: float = math.inf  # the best validation error: WER, or 1 - top-1 for words
    skipped_steps: int = 0  # batches whose loss was NaN or infinite
    history: list[dict] = field(default_factory=list)
    # The current epoch's totals so far, so that an epoch interrupted and resumed reports all of it.
    epoch_loss_sum: float = 0.0
    epoch_clips: int = 0
    epoch_seconds: float = 0.0
    epoch_too_short: int = 0  # samples dropped for having fewer frames than their label needs
    epoch_real_frames: int = 0  # the clips' own frames in the epoch's batches so far
    epoch_batch_frames: int = 0  # all frames of those batches, padding included

    def finish_epoch(self, epoch: int) -> None:
        self.epoch, self.batch_in_epoch = epoch + 1, 0
        self.epoch_loss_sum, self.epoch_clips, self.epoch_seconds, self.epoch_too_short = 0.0, 0, 0.0, 0
        self.epoch_real_frames = self.epoch_batch_frames = 0

    @property
    def padded_fraction(self) -> float:
        """The share of padding among the frames of the epoch's batches so far."""
        return 1.0 - self.epoch_real_frames / self.epoch_batch_frames if self.epoch_batch_frames else 0.0

    @classmethod
    def from_meta(cls, meta: dict) -> RunState:
        saved = meta.get("state", {})
        return cls(**{k: saved[k] for k in cls.__dataclass_fields__ if k in saved})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Start:
    """What a run starts from: a fresh network, a checkpoint of ours, or the example's parameters."""

    config: LipNetConfig | None = None
    arrays: dict | None = None
    states_file: Path | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    state: RunState = field(default_factory=RunState)
    selection: dict | None = None  # the clip selection a checkpoint recorded (utils.data.splits.describe_selection)
    meta: dict = field(default_factory=dict)  # the checkpoint's meta.json
    alphabet: Alphabet | None = None  # the alphabet of the checkpoint started from
    source: str = ""  # what it was read from
    resume: bool = False  # a checkpoint of ours, continued where it stopped

    def retarget(self, alphabet: Alphabet) -> Start:
        """Start from this checkpoint's parameters with another alphabet: a new run (epoch 0, a fresh optimiser,
        no recorded selection) keeping every layer but the output, which ``fresh`` leaves freshly initialised."""
        log.info("fine-tuning %s (%s alphabet, %d classes) to the %s alphabet (%d classes): every layer but the "
                 "output is loaded; the output layer (%s) is freshly initialised", self.source, self.alphabet.name,
                 self.alphabet.num_classes, alphabet.name, alphabet.num_classes, ", ".join(OUTPUT_LAYER))
        config = dataclasses.replace(self.config, num_classes=alphabet.num_classes)
        return Start(config, self.arrays, None, self.mean, self.std, RunState(), None, self.meta, alphabet,
                     self.source)

    @property
    def fresh(self) -> tuple[str, ...]:
        """Parameters to initialise rather than load: the output layer when its size differs from the arrays'."""
        dense = (self.arrays or {}).get(OUTPUT_LAYER[0])
        return OUTPUT_LAYER if dense is not None and dense.shape[0] != self.config.num_classes else ()


def resolve_start(model_path: str | None, fine_tune: bool = False) -> Start:
    """Read what ``model_path`` holds: a checkpoint (resumed, or with ``fine_tune`` a new run from its weights)
    or the example's parameter file (fine-tuned)."""
    if not model_path:
        return Start()
    contents = read_checkpoint(model_path, prefer="last", states=True)
    mean, std = list(contents.mean), list(contents.std)
    if contents.folder is None:
        log.info("fine-tuning from the original example's parameters in %s", contents.source)
        return Start(contents.config, contents.arrays, None, mean, std, alphabet=contents.alphabet,
                     source=str(contents.source))
    if fine_tune:
        log.info("fine-tuning from %s: a new run from its weights, network and normalisation", contents.folder)
        return Start(contents.config, contents.arrays, None, mean, std, meta=contents.meta,
                     alphabet=contents.alphabet, source=str(contents.folder))
    state = RunState.from_meta(contents.meta)
    states = contents.folder / STATES_FILE
    return Start(contents.config, contents.arrays, states if states.is_file() else None, mean, std, state,
                 contents.meta.get("split"), contents.meta, contents.alphabet, str(contents.folder), resume=True)
