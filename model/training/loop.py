"""The training loop: one ``train(args)`` call does a whole run (data, network, optimiser, epochs,
metrics, checkpoints) for either task, with exact resume at any batch."""
from __future__ import annotations

import argparse
import logging
import math
import random
import signal
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.backend import autograd, mx
from model.checkpoint import (
    build_network,
    load_trainer_states,
    save_checkpoint,
    set_parameters,
)
from model.devices import contexts, split_batch
from model.training.distributed import Workers
from model.training.interruption import Abandoned, Interrupted, StopFlag, abandon
from model.training.optimiser import current_lr, enable_amp, make_trainer
from model.training.records import TensorBoard, plot_curves, setup_logging, write_metrics_csv
from model.training.sentence_task import SentenceTask
from model.training.state import resolve_start
from model.training.word_task import WordTask
from utils.runtime import run_settings
from utils.runtime.atomic import ensure_writable_dir
from utils.video.reader import MODEL_FPS

log = logging.getLogger("lipnet")


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """The seed of MXNet's generator (dropout) for one training batch: a function of where the batch
    is, so a run resumed at any batch draws the same masks as an uninterrupted one."""
    return int(np.random.SeedSequence((seed, epoch, batch, rank)).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def train(args: argparse.Namespace, given: Collection[str] | None = None) -> dict:
    """A whole training run; returns the last epoch's metrics, the checkpoint folders and the network.

    A resume (``model_path`` naming one of our checkpoints, without ``fine_tune``) takes the settings of
    its run from the checkpoint (``utils.runtime.run_settings``); ``given`` names the options the command line
    set, which must agree with them (None: every setting in ``args`` counts as given, for callers that
    build the whole namespace themselves). Under a ``dist_*`` kvstore each worker trains on its shard of the
    training clips with ``batch_size`` clips a step (the global batch is ``batch_size`` times the number
    of workers), and only rank 0 writes files; the others log to the console.
    """
    overwrite = getattr(args, "overwrite", False)
    start = resolve_start(args.model_path, getattr(args, "fine_tune", False))
    run_id = run_settings.new_run_id()
    resumed = None
    if start.resume:
        resumed = Path(start.source)
        given = set(vars(args)) if given is None else given
        taken = run_settings.resume_settings(args, given, start.meta.get("args") or {}, resumed)
        if "save_dir" not in given:
            args.save_dir = str(resumed.parent)
        run_id = start.meta.get("run_id")
        if taken:
            log.info("settings of the run being resumed, from %s: %s", resumed / "meta.json", " ".join(taken))
    if not getattr(args, "schedule_epochs", None):
        args.schedule_epochs = args.epochs
    save_dir = Path(args.save_dir)
    workers = Workers(args.kvstore)
    if workers.rank == 0:
        source = Path(start.source) if start.source and not start.resume and start.meta else None
        run_settings.prepare_save_dir(save_dir, overwrite, resumed, run_id, source)
        ensure_writable_dir(save_dir)  # before any epoch: a folder that cannot hold the checkpoints stops the run
        setup_logging(save_dir)
    else:
        log.setLevel(logging.INFO)
    run_id = run_id or run_settings.new_run_id()  # checkpoints from before run ids get one on their resume
    seed_everything(args.seed)  # the same on every worker: identical initial parameters
    ctxs = contexts(args.num_gpus, args.num_cpus)
    if args.amp:
        enable_amp(ctxs, workers)
    task = (WordTask if getattr(args, "task", "sentences") == "words" else SentenceTask)(args, start, workers)
    start = task.start  # a sentence task fine-tuning to another alphabet starts afresh
    if start.resume:
        log.info("resuming from %s at epoch %d, step %d", start.source, start.state.epoch, start.state.iteration)
    state = start.state
    train_set, sampler, train_loader = task.train_set, task.sampler, task.train_loader

    net = build_network(task.config)
    if start.arrays is not None:
        set_parameters(net, start.arrays, args.model_path, ctxs, fresh=start.fresh)
    else:
        net.initialize(ctx=ctxs)
    net.hybridize(static_alloc=True, static_shape=True)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    trainer = make_trainer(net, args, steps_per_epoch, workers)
    if args.amp:
        from mxnet.contrib import amp

        amp.init_trainer(trainer)
    if workers.asynchronous and start.state.iteration:
        log.warning("kvstore=%s keeps the optimiser state on the servers, where it cannot be saved: Adam "
                    "restarts from zero moments", args.kvstore)
    elif start.states_file is not None:
        load_trainer_states(trainer, start.states_file)
    workers.share_parameters(trainer)
    board = TensorBoard(save_dir / "tensorboard") if workers.rank == 0 else None

    def checkpoint(name: str, metrics: dict | None = None) -> Path:
        if workers.rank != 0:
            return save_dir / name  # rank 0 writes the run's checkpoints
        meta = {**task.meta(), "state": state.to_dict(), "metrics": metrics or {}, "run_id": run_id,
                "args": run_settings.recordable(args),
                "frame_rate": MODEL_FPS}  # the frame rate of the training clips (preprocessing resamples to it)
        # Trainer states held on dist_async servers cannot be saved (MXNet refuses).
        return save_checkpoint(save_dir / name, net, None if workers.asynchronous else trainer, meta)

    stop = StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    last_metrics: dict = {}
    try:
        for epoch in range(state.epoch, args.epochs):
            sampler.epoch = epoch
            sampler.skip = state.batch_in_epoch * args.batch_size
            # The epoch's totals include what a run interrupted in it had done (saved in its checkpoint).
            too_short_before = getattr(train_set, "too_short", 0)  # sentences only: clips shorter than their label
            seconds_before, started = state.epoch_seconds, time.perf_counter()
            bar = tqdm(total=max(len(train_set) - sampler.skip, 0), desc=f"epoch {epoch + 1}/{args.epochs}",
                       unit="clip", dynamic_ncols=True, disable=not args.progress)
            for batch in train_loader:
                if not workers.lockstep:
                    stop.check()  # between batches: the last update and its counters are both done
                if batch is None and not workers.lockstep:
                    continue
                n = 0 if batch is None else batch[0].shape[0]  # lock step: an empty batch still takes part
                # Dropout masks depend on (seed, epoch, batch, worker) only: a resume at any batch draws the same.
                mx.random.seed(batch_seed(args.seed, epoch, state.batch_in_epoch, workers.rank))
                losses, values = [], np.zeros(0)
                if n:
                    parts = split_batch(batch, ctxs)
                    with autograd.record():
                        losses = task.losses(net, parts, epoch, state.batch_in_epoch, workers.rank)
                    values = np.concatenate([loss.asnumpy() for loss in losses])
                finite = n > 0 and bool(np.isfinite(values).all())
                # Summed over workers: one worker's bad batch makes every worker skip the step, and one
                # worker's Ctrl-C stops them all at this same batch.
                clips, loss_sum, bad, stopping = workers.allreduce(
                    "step", [n, values.sum() if finite else 0.0, not finite, stop.signal is not None])
                if stopping:
                    raise Interrupted(stop.signal or "another worker was interrupted")
                if bad:
                    state.batch_in_epoch += 1
                    state.skipped_steps += 1
                    log.warning("step %d: non-finite loss (or no readable clip), batch skipped (%d so far)",
                                state.iteration, state.skipped_steps)
                    bar.update(n)
                    continue
                if args.amp:
                    with amp.scale_loss(losses, trainer) as scaled:
                        autograd.backward(scaled)
                else:
                    for loss in losses:
                        loss.backward()
                # Gradients are summed over workers, so normalise by the global batch; dist_async
                # servers apply each worker's gradient alone and MXNet fixes its scale at the first step.
                trainer.step(args.batch_size if workers.asynchronous else int(clips))
                state.iteration += 1
                state.batch_in_epoch += 1
                state.epoch_loss_sum += float(loss_sum)
                state.epoch_clips += int(clips)
                state.epoch_seconds = seconds_before + time.perf_counter() - started
                state.epoch_too_short += getattr(train_set, "too_short", 0) - too_short_before
                too_short_before = getattr(train_set, "too_short", 0)
                real, total = task.frame_counts(batch)
                state.epoch_real_frames += real
                state.epoch_batch_frames += total
                bar.update(n)
                bar.set_postfix(loss=f"{state.epoch_loss_sum / state.epoch_clips:.3f}",
                                lr=f"{current_lr(trainer):.2e}")
            bar.close()
            if not workers.lockstep:
                stop.check()
            state.epoch_too_short += getattr(train_set, "too_short", 0) - too_short_before
            if state.epoch_too_short:
                log.warning("epoch %d: %d samples had fewer frames than their label needs and were left out",
                            epoch + 1, state.epoch_too_short)
            if (epoch + 1) % args.val_interval and epoch + 1 < args.epochs:
                state.finish_epoch(epoch)
                continue
            # Lock step: every worker must validate, so no stop there.
            val_metrics, error, summary, examples = task.validate(net, ctxs, workers,
                                                                  None if workers.lockstep else stop)
            last_metrics = {
                "epoch": epoch + 1, "step": state.iteration,
                "train_loss": state.epoch_loss_sum / state.epoch_clips if state.epoch_clips else float("nan"),
                **val_metrics,
                "lr": current_lr(trainer),
                "samples_per_s": state.epoch_clips / state.epoch_seconds if state.epoch_seconds else 0.0,
                "skipped_steps": state.skipped_steps, "too_short": state.epoch_too_short,
                "padded_fraction": state.padded_fraction,
            }
            state.finish_epoch(epoch)
            state.history.append(last_metrics)
            log.info("epoch %d: train loss %.4f, %s, %.1f samples/s, padded %.1f%%, lr %.2e", epoch + 1,
                     last_metrics["train_loss"], summary, last_metrics["samples_per_s"],
                     100 * last_metrics["padded_fraction"], last_metrics["lr"])
            for line in examples:  # one record a line, in the console and train.log alike
                log.info("%s", line)
            if board is not None:
                board.scalars({"loss/train": last_metrics["train_loss"], "lr": last_metrics["lr"],
                               **{("loss/val" if k == "val_loss" else "val/" + k[4:]): v
                                  for k, v in val_metrics.items() if not k.startswith("val_mean_clip")}}, epoch + 1)
                write_metrics_csv(save_dir / "metrics.csv", state.history)
                plot_curves(save_dir / "curves.png", state.history, task.curves)
            improved = error < state.best_wer
            if improved:
                state.best_wer = error
            checkpoint("last", last_metrics)
            if improved:
                checkpoint("best", last_metrics)
            reached = task.stop_reached(last_metrics)
            if reached:
                log.info("%s: stopping", reached)
                break
    except Interrupted as err:
        try:
            folder = checkpoint("last", last_metrics)
        except Abandoned as again:
            abandon(again, save_dir)
        log.warning("interrupted (%s): saved %s in epoch %d after %d of its batches; to resume: python main.py "
                    "model_path=%s", err, folder, state.epoch + 1, state.batch_in_epoch, folder)
        raise SystemExit(130) from None
    except Abandoned as err:
        abandon(err, save_dir)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if board is not None:
            board.close()
    workers.close(trainer)
    return {"metrics": last_metrics, "last": str(save_dir / "last"), "best": str(save_dir / "best"),
            "state": state.to_dict(), "net": net}
