"""The optimiser of a run: Adam or AdamW, gradient clipping, the learning-rate schedule, AMP."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import model.adamw  # noqa: F401 (registers the "adamw" optimiser)
from model.backend import gluon, mx
from model.lipnet import LipNet
from model.training.distributed import Workers


def enable_amp(ctxs: Sequence[mx.Context], workers: Workers) -> None:
    """Turn on MXNet AMP (float16 compute, float32 master weights); must run before the network is built."""
    if any(ctx.device_type != "gpu" for ctx in ctxs):
        raise ValueError("amp=true needs GPUs (MXNet AMP runs float16 CUDA kernels), but this run trains on the "
                         "CPU: drop amp=true, or give num_gpus on a machine with GPUs")
    if workers.asynchronous:
        raise ValueError("amp=true does not work with kvstore=dist_async: its servers apply every pushed gradient, "
                         "so AMP could not skip the steps whose float16 gradients overflowed")
    from mxnet.contrib import amp

    amp.init()


def make_trainer(net: LipNet, args: argparse.Namespace, steps_per_epoch: int,
                 workers: Workers | None = None) -> gluon.Trainer:
    """Adam (default lr 1e-4) or AdamW with gradient clipping and an optional warm-up / cosine schedule.

    With a synchronous distributed store the gradients are only summed on the servers and every
    worker runs the same Adam update itself (``update_on_kvstore=False``), so the optimiser state
    stays local, identical everywhere, and savable; MXNet cannot save states kept on servers.
    AMP needs local updates too, to skip the steps whose gradients overflowed.
    """
    # A resumed run given more epochs keeps the schedule it was built with (``utils.runtime.run_settings``).
    total = max(steps_per_epoch * (getattr(args, "schedule_epochs", None) or args.epochs), 1)
    if args.lr_schedule == "cosine":
        schedule = mx.lr_scheduler.CosineScheduler(total, base_lr=args.lr, final_lr=args.lr * 0.01,
                                                   warmup_steps=min(args.warmup_steps, total - 1))
    elif args.warmup_steps:
        schedule = mx.lr_scheduler.FactorScheduler(step=10**9, factor=1.0, base_lr=args.lr,
                                                   warmup_steps=args.warmup_steps)
    else:
        schedule = None
    params = {"learning_rate": args.lr, "lr_scheduler": schedule, "wd": args.weight_decay,
              "epsilon": args.adam_epsilon}
    if args.clip_gradient > 0:
        params["clip_gradient"] = args.clip_gradient
    kvstore, update_on_kvstore = args.kvstore, None
    if workers is not None and workers.kv is not None:
        kvstore, update_on_kvstore = workers.kv, workers.asynchronous  # async stores only update on the servers
    if args.amp:
        update_on_kvstore = False
    return gluon.Trainer(net.collect_params(), args.optimizer, params, kvstore=kvstore,
                         update_on_kvstore=update_on_kvstore)


def current_lr(trainer: gluon.Trainer) -> float:
    optimizer = trainer._optimizer
    if optimizer.lr_scheduler is not None:
        return float(optimizer.lr_scheduler(optimizer.num_update))
    return float(trainer.learning_rate)
