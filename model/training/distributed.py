"""A process's place in a distributed run (MXNet's dist_* kvstores) and the sums its workers share."""
from __future__ import annotations

import dataclasses
import gc
import logging
import os
import weakref
from collections.abc import Sequence

import numpy as np

from model.backend import gluon, mx
from utils.scoring.sentence_evaluation import Evaluation
from utils.scoring.sentence_metrics import ErrorRates, GroupedErrorRates

log = logging.getLogger("lipnet")


class Workers:
    """This process's place in a distributed run: one worker of rank 0 when training alone.

    ``dist_sync`` and ``dist_device_sync`` keep the workers in lock step, so whatever must agree
    between them (skip a batch or not, the global batch size, validation totals) is summed over
    workers through a few small kvstore keys of our own. ``dist_async`` servers run the optimiser
    on every key pushed to them, so there each worker decides alone and validates the whole set.
    """

    # Our keys sit above the Trainer's (parameter indices) and below 2**31 / 9973, where ps-lite's
    # choice of server for a key overflows.
    CONTROL_KEY = 200_000

    def __init__(self, kvstore: str) -> None:
        self.kv = None
        if kvstore.startswith("dist"):
            if "DMLC_ROLE" not in os.environ:
                raise ValueError(f"kvstore={kvstore} needs the scheduler, servers and DMLC_* environment that "
                                 "utils/launch.py sets up, e.g. python utils/launch.py -n 2 -s 1 -- python main.py "
                                 f"kvstore={kvstore} ...")
            self.kv = mx.kv.create(kvstore)
        self.rank = self.kv.rank if self.kv else 0
        self.count = self.kv.num_workers if self.kv else 1
        self.lockstep = self.kv is not None and "async" not in kvstore
        self.asynchronous = self.kv is not None and not self.lockstep
        self._keys: dict[str, int] = {}

    def allreduce(self, name: str, values: Sequence[float]) -> np.ndarray:
        """``values`` summed element-wise over the workers (as they are when not in lock step).

        Every worker must make the same calls in the same order, as with any collective.
        """
        values = np.asarray(values, np.float64)
        if not self.lockstep:
            return values
        if name not in self._keys:
            self._keys[name] = self.CONTROL_KEY + len(self._keys)
            self.kv.init(self._keys[name], mx.nd.zeros(values.shape, dtype=np.float64))
        out = mx.nd.zeros(values.shape, dtype=np.float64)
        # A fresh source array: on the CPU a dist store pulls back into the array it pushed from.
        self.kv.pushpull(self._keys[name], mx.nd.array(values, dtype=np.float64), out=out)
        return out.asnumpy()

    def share_parameters(self, trainer: gluon.Trainer) -> None:
        """Give every worker rank 0's parameters before any gradient is pushed.

        Gluon broadcasts them lazily inside the first ``step()``; on ranks above 0 that pull lands
        in a fresh buffer which the push of the first gradients to the same key does not wait
        for, and MXNet 1.9.1 then sometimes hands a worker the summed gradients as its starting
        parameters. Broadcasting here and waiting for it closes that race. (Under dist_async a
        worker starting from weights the servers already updated is normal, and an early start
        would fix the optimiser's gradient scale before the first step sets it.)
        """
        if not self.lockstep:
            return
        if not trainer._kv_initialized:  # Gluon has no public call for this
            trainer._init_kvstore()
        if trainer._params_to_init:
            trainer._init_params()
        mx.nd.waitall()

    def close(self, trainer: gluon.Trainer) -> None:
        """Leave the job now, while MXNet still runs; every worker calls it after its last step.

        ps-lite aborts the process ("terminate called without an active exception") when a dist
        store is still alive as the interpreter exits, and the network's parameters keep the Gluon
        Trainer, and so the store, alive. Dropping every reference to the store destroys it here
        instead, which waits for the other workers and, on rank 0, stops the servers.
        """
        if self.kv is None:
            return
        store = weakref.ref(self.kv)
        self.kv = None
        trainer._kvstore = None  # Gluon has no public way to let go of a distributed store
        trainer._kvstore_params["kvstore"] = None
        trainer._kv_initialized = False
        if store() is not None:
            gc.collect()
        if store() is not None:
            log.warning("the distributed kvstore is still referenced; the process may abort at exit")


def combine_evaluations(result: Evaluation, workers: Workers, groups: Sequence[str]) -> Evaluation:
    """Sum each worker's validation of its shard into the whole set's loss and error rates.

    ``groups`` (the speakers of the whole validation set, in the same order everywhere) fixes
    the layout of the summed vector. The clips, targets and predictions stay this worker's own.
    """
    if not workers.lockstep:
        return result
    fields = [f.name for f in dataclasses.fields(ErrorRates)]
    local = [result.loss * result.loss_count if result.loss_count else 0.0, result.loss_count]
    for group in groups:
        rates = result.rates.groups.get(group, ErrorRates())
        local += [getattr(rates, name) for name in fields]
    total = workers.allreduce("validation", local)
    merged = GroupedErrorRates()
    for i, group in enumerate(groups):
        values = total[2 + i * len(fields): 2 + (i + 1) * len(fields)]
        rates = ErrorRates(**{name: v if isinstance(getattr(ErrorRates, name, 0), float) else int(round(v))
                              for name, v in zip(fields, values)})
        if rates.sentences:
            merged.groups[group] = rates
            merged.overall.merge(rates)
    result.rates = merged
    result.loss_count = int(round(total[1]))
    result.loss = float(total[0] / total[1]) if result.loss_count else float("nan")
    return result
