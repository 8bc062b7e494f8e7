"""One pass of a network over a data set, framework-free: every clip's prediction, decoded from its
log-probabilities, and the error rates per speaker. ``model.training.sentence_task.evaluate`` (MXNet, with the CTC loss)
and ``infer.py`` (any backend) fill it batch by batch."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from utils.data.sentence_clips import ClipRecord, Normaliser, clip_batches
from utils.scoring.sentence_metrics import GroupedErrorRates
from utils.text.alphabet import GRID, Alphabet
from utils.text.decoders import UndecodableClip, decode_batch

if TYPE_CHECKING:
    from utils.reading.network import Network
    from utils.text.lm_decoder import LMDecoder

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What one pass over a data set gives: mean loss, error rates, and every clip's prediction."""

    loss: float
    rates: GroupedErrorRates
    clip_ids: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    log_probs: list[np.ndarray] = field(default_factory=list)
    loss_count: int = 0  # clips whose loss was finite: what ``loss`` averages over

    @property
    def cer(self) -> float:
        return self.rates.overall.cer

    @property
    def wer(self) -> float:
        return self.rates.overall.wer


def score_batch(result: Evaluation, records: Sequence[ClipRecord], targets: Sequence[str], log_probs: np.ndarray,
                lengths: np.ndarray, decoder: str = "greedy", beam_width: int = 25,
                keep_log_probs: bool = False, alphabet: Alphabet = GRID, lm: LMDecoder | None = None) -> None:
    """Decode a batch's ``(N, T, C)`` log-probabilities (the first ``lengths[i]`` frames of each clip)
    and add its predictions and error rates to ``result``. A clip no decoder can read (``UndecodableClip``:
    too short for the grammar) is named in the log and left out, as an unreadable clip is, and the others
    are scored."""
    for i, record in enumerate(records):
        try:
            text = decode_batch(log_probs[i: i + 1], lengths[i: i + 1], method=decoder, beam_width=beam_width,
                                alphabet=alphabet, lm=lm)[0]
        except UndecodableClip as err:
            log.warning("skipping %s: %s", record.path, err)
            continue
        result.rates.add(record.speaker, targets[i], text)
        result.clip_ids.append(record.clip_id)
        result.targets.append(targets[i])
        result.predictions.append(text)
        if keep_log_probs:
            result.log_probs.append(log_probs[i, : lengths[i]])


def evaluate_network(network: Network, records: Sequence[ClipRecord], batch_size: int, decoder: str = "greedy",
                     beam_width: int = 25, num_workers: int = 0, keep_log_probs: bool = False,
                     progress: str | None = None, lm: LMDecoder | None = None) -> Evaluation:
    """Read ``records`` with ``network`` (either backend) in batches as the validation loader makes them,
    decode and score them against their sentences; clips that cannot be read are reported and left out."""
    result = Evaluation(float("nan"), GroupedErrorRates())
    normaliser = Normaliser.recorded(network.mean, network.std, network.meta, network.channel_order)
    batches = clip_batches(records, (network.width, network.height), normaliser, batch_size, num_workers=num_workers)
    for batch_records, data, lengths in tqdm(batches, desc=progress, disable=progress is None, unit="batch",
                                             total=-(-len(records) // batch_size), leave=False):
        score_batch(result, batch_records, [r.sentence for r in batch_records], network.log_probs(data, lengths),
                    lengths, decoder, beam_width, keep_log_probs, network.alphabet, lm)
    return result
