"""Devices of a run and the split of a batch over them (training and reading alike)."""
from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np

from model.backend import gluon, mx

log = logging.getLogger("lipnet")


def contexts(num_gpus: int, num_cpus: int = 1) -> list[mx.Context]:
    """``num_gpus`` GPUs, or ``num_cpus`` CPU contexts when ``num_gpus`` is 0 (or no GPU is visible)."""
    if num_gpus > 0:
        available = mx.context.num_gpus()
        if available == 0:
            log.warning("num_gpus=%d but MXNet sees no GPU (CPU build, or no device): training on the CPU. "
                        "Pass num_gpus=0 to silence this.", num_gpus)
        elif num_gpus > available:
            raise ValueError(f"num_gpus={num_gpus} but only {available} GPU(s) are visible")
        else:
            return [mx.gpu(i) for i in range(num_gpus)]
    return [mx.cpu(i) for i in range(max(num_cpus, 1))]


def split_batch(batch: tuple, ctxs: Sequence[mx.Context]) -> list[tuple]:
    """Split a batch over ``ctxs``: its leading MXNet arrays, then its clip indices (the NumPy array after
    them), per context: (data, labels, data lengths, label lengths, indices) for sentences (whose batches
    also carry the lengths as NumPy, last), (data, labels, indices) for words."""
    n = batch[0].shape[0]
    ctxs = list(ctxs)[:n]  # a last batch smaller than the number of contexts
    arrays = list(itertools.takewhile(lambda item: isinstance(item, mx.nd.NDArray), batch))
    parts = [gluon.utils.split_and_load(array, ctxs, even_split=False) for array in arrays]
    bounds = np.cumsum([0] + [part.shape[0] for part in parts[0]])
    indices = [batch[len(arrays)][lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
    return list(zip(*parts, indices))
