"""Training across MXNet contexts, with validation, logging and exact resume: LipNet with CTC
(``task=sentences``) or the word classifier with cross-entropy and mixup (``task=words``).

One ``train(args)`` call does a whole run: data, network, optimiser, the epoch loop, metrics and
checkpoints; a task (``SentenceTask``, ``WordTask``) gives the loop its data, loss and validation.
``main.py`` owns the command line; ``infer.py`` reuses ``evaluate`` and ``evaluate_words``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import io
import itertools
import logging
import math
import os
import random
import signal
import time
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.runtime.cuda_libs import preload_cuda_libraries
from utils.runtime.threads import default_omp_threads

default_omp_threads()  # before MXNet loads
preload_cuda_libraries()  # likewise

import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402
from mxnet.gluon import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

import data_loader  # noqa: E402
import model.adamw  # noqa: E402, F401 (registers the "adamw" optimiser)
from model import LipNet, LipNetConfig, save_checkpoint  # noqa: E402
from model.checkpoint import (  # noqa: E402
    OUTPUT_LAYER,
    STATES_FILE,
    build_network,
    load_trainer_states,
    read_checkpoint,
    set_parameters,
)
from utils.data import splits  # noqa: E402
from utils.runtime import run_settings  # noqa: E402
from utils.runtime.atomic import ensure_writable_dir, write_bytes_atomic, write_text_atomic  # noqa: E402
from utils.scoring.sentence_evaluation import Evaluation, score_batch  # noqa: E402
from utils.scoring.sentence_metrics import ErrorRates, GroupedErrorRates  # noqa: E402
from utils.scoring.word_metrics import WordScores  # noqa: E402
from utils.text.alphabet import GRID, Alphabet, choose_alphabet  # noqa: E402
from utils.text.lm_decoder import LMDecoder, lm_decoder_for  # noqa: E402
from utils.video.reader import MODEL_FPS  # noqa: E402

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


def evaluate(net: LipNet, loader: gluon.data.DataLoader, dataset: data_loader.LipDataset,
             ctxs: Sequence[mx.Context], decoder: str = "greedy", beam_width: int = 25,
             keep_log_probs: bool = False, progress: str | None = None, stop: StopFlag | None = None,
             alphabet: Alphabet = GRID, lm: LMDecoder | None = None) -> Evaluation:
    """Run ``net`` over a whole loader (no dropout, no augmentation), decode, and score.

    Each clip is read only up to its length (``LipNet.read``). With ``stop``, a Ctrl-C or SIGTERM
    ends the pass between two batches by raising ``Interrupted``.
    """
    loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    result = Evaluation(0.0, GroupedErrorRates())
    total_loss, count = 0.0, 0
    for batch in tqdm(loader, desc=progress, disable=progress is None, unit="batch", leave=False):
        if stop is not None:
            stop.check()
        if batch is None:
            continue
        for data, labels, data_lengths, label_lengths, indices in split_batch(batch, ctxs):
            out = net.read(data, data_lengths)
            losses = loss_fn(out, labels, data_lengths, label_lengths).asnumpy()
            finite = np.isfinite(losses)
            total_loss += float(losses[finite].sum())
            count += int(finite.sum())
            records = [dataset.records[idx] for idx in indices.tolist()]
            targets = [alphabet.decode(int(v) for v in label) for label in labels.asnumpy()]
            score_batch(result, records, targets, out.asnumpy(), data_lengths.asnumpy().astype(np.int64), decoder,
                        beam_width, keep_log_probs, alphabet, lm)
    result.loss = total_loss / count if count else float("nan")
    result.loss_count = count
    return result


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


def selection_definition(args: argparse.Namespace) -> dict:
    """How a run chose its clips, as a checkpoint records it (``infer.py`` reuses it by default)."""
    lists = {name: str(Path(value).resolve()) if value else None
             for name, value in (("train_list", args.train_list), ("val_list", args.val_list))}
    return {"split": args.split, **lists, "speakers": args.speakers, "val_speakers": args.val_speakers,
            "held_out_per_speaker": splits.OVERLAP_HELD_OUT_PER_SPEAKER, "key_seed": splits.OVERLAP_SEED}


def build_config(args: argparse.Namespace, frame_size: tuple[int, int], alphabet: Alphabet = GRID) -> LipNetConfig:
    width, height = frame_size
    return LipNetConfig(variant=args.variant, channels=tuple(args.channels), hidden=args.hidden,
                        dropout=args.dr_rate, height=height, width=width, norm=args.norm,
                        num_classes=alphabet.num_classes)


def probe_frame_size(records: Sequence[data_loader.ClipRecord]) -> tuple[int, int]:
    """(width, height) of the first readable clip."""
    for record in records:
        try:
            frames = data_loader.load_clip(record.path)
        except ValueError as err:
            log.warning("skipping %s: %s", record.path, err)
            continue
        return frames.shape[2], frames.shape[1]
    raise ValueError("no readable training clip")


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


def setup_logging(save_dir: Path) -> None:
    """Log to the console and to ``save_dir/train.log`` (appending, so a resumed run keeps one log)."""
    save_dir.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        if isinstance(handler, logging.FileHandler):
            log.removeHandler(handler)
            handler.close()
    handler = logging.FileHandler(save_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)



def write_metrics_csv(path: Path, history: list[dict]) -> None:
    if not history:
        return
    buffer = io.StringIO()
    # Columns of every row, in order of appearance: a run resumed after an update may have gained some.
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buffer.getvalue())


def plot_curves(path: Path, history: list[dict],
                curves: Sequence[tuple[str, str]] = (("val_cer", "CER"), ("val_wer", "WER"))) -> None:
    """A PNG of the losses and of the validation error rates ``curves`` ((key, label) pairs) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for key, label in curves:
        ax_err.plot(epochs, [h[key] for h in history], label=label)
    ax_err.set(xlabel="epoch", ylabel="error rate", title="validation error rates", ylim=(0, None))
    ax_err.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


class TensorBoard:
    """Scalars to TensorBoard event files via tensorboardX (no TensorFlow needed)."""

    def __init__(self, logdir: Path) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(logdir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Interrupted(Exception):
    """Raised at a batch boundary after a SIGINT/SIGTERM, so that the loop saves a consistent checkpoint."""


class Abandoned(Exception):
    """A second SIGINT/SIGTERM: leave at once, without saving (the model may be mid-update)."""


def abandon(err: Abandoned, save_dir: Path) -> None:
    """Leave after a second SIGINT/SIGTERM (exit 130): the checkpoints saved before are untouched."""
    saved = [str(save_dir / name) for name in ("last", "best") if (save_dir / name).is_dir()]
    log.warning("interrupted twice (%s): stopped without saving; %s", err,
                f"{' and '.join(saved)} hold the checkpoints saved before" if saved else "no checkpoint was saved")
    raise SystemExit(130) from None


class StopFlag:
    """The SIGINT/SIGTERM handler: it only records the signal, and the loops ``check`` it between
    batches, so a checkpoint is never taken between an update and its step count or inside
    ``trainer.step``. A second signal leaves at once without saving."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __call__(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            raise Abandoned(name)
        self.signal = name
        log.warning("%s: stopping after this batch to save a checkpoint (send it again to stop at once "
                    "without saving)", name)

    def check(self) -> None:
        if self.signal is not None:
            raise Interrupted(self.signal)


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """The seed of MXNet's generator (dropout) for one training batch: a function of where the batch
    is, so a run resumed at any batch draws the same masks as an uninterrupted one."""
    return int(np.random.SeedSequence((seed, epoch, batch, rank)).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


class SentenceTask:
    """LipNet on GRID-style sentence clips with CTC: its data, loss, validation and checkpoint contents.

    The epoch loop of ``train`` is the same for every task; a task gives it ``train_set``, ``sampler``,
    ``train_loader``, ``config`` (the network's), ``losses`` of a batch and ``validate``.
    """

    curves = (("val_cer", "CER"), ("val_wer", "WER"))  # validation figures plotted (lower is better)

    def __init__(self, args: argparse.Namespace, start: Start, workers: Workers) -> None:
        self.args = args
        self.val_groups: list[str] = []
        clips = data_loader.discover_clips(args.image_path)
        train_ids, val_ids = data_loader.select_clips(
            clips, args.split, args.train_list, args.val_list, args.speakers, args.val_speakers, args.missing_clips)
        definition = selection_definition(args)
        recorded = start.selection or {}
        if recorded.get("definition") == definition:  # a resume: keep the validation side it started with
            train_ids, val_ids, notes = splits.apply_recorded_selection(recorded, train_ids, val_ids)
            for note in notes:
                log.warning("clips differ from the checkpoint's: %s", note)
        self.selection = splits.describe_selection(definition, train_ids, val_ids)
        train_records = data_loader.build_records({c: clips[c] for c in train_ids}, args.align_path)
        val_records = data_loader.build_records({c: clips[c] for c in val_ids}, args.align_path)
        self.alphabet = alphabet = choose_alphabet(args.alphabet, start.alphabet,
                                                   (r.sentence for r in train_records + val_records))
        if start.alphabet is not None and alphabet != start.alphabet:
            start = start.retarget(alphabet)
        self.start = start
        log.info("alphabet: %s (%r, %d classes with the CTC blank)", alphabet.name, alphabet.characters,
                 alphabet.num_classes)
        self.decoder = {"method": args.decoder, "beam_width": args.beam_width}
        self.lm = lm_decoder_for(args.decoder, args.lm_path, alphabet, args.beam_width, args.lm_weight,
                                 args.word_bonus)
        if self.lm is not None:
            self.decoder.update(lm_path=str(Path(self.lm.source).resolve()), lm_weight=self.lm.lm_weight,
                                word_bonus=self.lm.word_bonus)
            log.info("validation decoder: %s", self.lm.describe())
        train_records = data_loader.keep_spellable(train_records, alphabet)
        val_records = data_loader.keep_spellable(val_records, alphabet)
        if not train_records:
            raise ValueError(f"no training clips under {args.image_path} for split {args.split!r}")
        if not val_records:
            raise ValueError(f"no validation clips under {args.image_path} for split {args.split!r}")
        mean, std = (start.mean, start.std) if start.mean else data_loader.channel_stats(train_records, seed=args.seed)
        self.mean, self.std = mean, std
        self.config = config = start.config or build_config(args, probe_frame_size(train_records), alphabet)
        size = (config.width, config.height)
        log.info("%d training and %d validation clips; input %dx%d; normalisation mean %s std %s",
                 len(train_records), len(val_records), config.width, config.height,
                 [round(v, 4) for v in mean], [round(v, 4) for v in std])
        if workers.kv is not None:
            self.val_groups = sorted({r.speaker for r in val_records})
            train_records = data_loader.shard_records(train_records, workers.rank, workers.count)
            if workers.lockstep:
                val_records = data_loader.shard_records(val_records, workers.rank, workers.count, equal=False)
            log.info("worker %d of %d (%s): %d training clips of its own, %d validation clips",
                     workers.rank, workers.count, args.kvstore, len(train_records), len(val_records))

        train_set = data_loader.LipDataset(train_records, size=size, num_frames=args.frames, train=True,
                                           flip_prob=args.flip_prob, jitter_prob=args.jitter_prob,
                                           word_prob=args.word_prob, seed=args.seed, alphabet=alphabet,
                                           recode_prob=args.recode_prob)
        val_set = data_loader.LipDataset(val_records, size=size, num_frames=args.frames, alphabet=alphabet)
        if args.frames is None and args.bucket:
            lengths = data_loader.clip_lengths(train_records)
            sampler = data_loader.BucketSampler(lengths, args.batch_size, args.seed)
            log.info("clips of %d to %d frames, batched by length", min(lengths), max(lengths))
        else:
            sampler = data_loader.EpochShuffleSampler(len(train_set), args.seed)
        self.train_set, self.val_set, self.sampler = train_set, val_set, sampler
        self.train_loader = data_loader.make_loader(train_set, args.batch_size, mean, std, sampler, args.num_workers)
        self.val_loader = data_loader.make_loader(val_set, args.batch_size, mean, std, num_workers=args.num_workers)
        self.loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
        self._clip_frames: dict[int, int] = {}

    def losses(self, net: LipNet, parts: list[tuple], epoch: int, batch: int, rank: int) -> list[mx.nd.NDArray]:
        """Per-clip losses of each context's part of a batch (inside ``autograd.record``)."""
        if self.args.aligned_ctc:
            return [self._aligned_losses(net.read(d, dl), lab, dl, ll, idx, epoch) for d, lab, dl, ll, idx in parts]
        return [self.loss_fn(net.read(d, dl), lab, dl, ll) for d, lab, dl, ll, _ in parts]

    def _segments(self, epoch: int, index: int) -> list[tuple[int, int, str]] | None:
        """The aligned segments of training sample ``(epoch, index)`` when it holds its clip's sentence, moved
        with the frames its plan (``LipDataset.plan``, replayed) cut and jittered."""
        record = self.train_set.records[index]
        if not record.words:
            return None  # no align file
        if index not in self._clip_frames:
            self._clip_frames[index] = data_loader.clip_length(record.path)
        count = self._clip_frames[index]
        plan = self.train_set.plan(epoch, index, count)
        segments = data_loader.aligned_segments(record.words, count)
        if plan.sentence != record.sentence or segments is None:
            return None  # one word cut out of the clip (word_prob), or words too short for their text
        return data_loader.moved_segments(segments, plan.order[:plan.length])

    def _aligned_losses(self, out: mx.nd.NDArray, labels: mx.nd.NDArray, data_lengths: mx.nd.NDArray,
                        label_lengths: mx.nd.NDArray, indices: np.ndarray, epoch: int) -> mx.nd.NDArray:
        """Per-clip CTC losses, a whole clip with an align file scored segment by segment (``aligned_ctc``): the
        sum of each word's loss over its own frames and of the silences' (blanks only), so that where a
        word is spelt is learnt from where it was said, not left to CTC (which spells a sentence memorised
        from three clips wherever it likes: at the clip's edges). Each word's frames are where the sample's
        temporal jitter moved them (``_segments``)."""
        losses = []
        for i, index in enumerate(indices):
            segments = self._segments(epoch, int(index))
            if segments is None:
                losses.append(self.loss_fn(out[i:i + 1], labels[i:i + 1], data_lengths[i:i + 1],
                                           label_lengths[i:i + 1]))
                continue
            parts = []
            for start, end, text in segments:
                frames = out[i:i + 1, start:end]
                if not text:  # MXNet 1.9.1's CTCLoss gives garbage (-0.008, 7e-43) for an empty label
                    blank = self.alphabet.blank
                    parts.append(-frames.slice_axis(axis=2, begin=blank, end=blank + 1).sum(axis=(1, 2)))
                    continue
                parts.append(self.loss_fn(frames, mx.nd.array([self.alphabet.encode(text)], ctx=out.context),
                                          mx.nd.array([end - start], ctx=out.context),
                                          mx.nd.array([len(text)], ctx=out.context)))
            losses.append(mx.nd.add_n(*parts))
        return mx.nd.concat(*losses, dim=0)

    @staticmethod
    def frame_counts(batch: tuple) -> tuple[int, int]:
        """(the clips' own frames, all frames) of a batch: sentence batches are padded to their longest clip."""
        return int(batch[5].sum()), batch[0].shape[0] * batch[0].shape[2]

    def validate(self, net: LipNet, ctxs: Sequence[mx.Context], workers: Workers,
                 stop: StopFlag | None) -> tuple[dict, float, str, list[str]]:
        """(validation metrics, error to minimise, log text, example lines) over the whole validation set."""
        args = self.args
        val = evaluate(net, self.val_loader, self.val_set, ctxs, progress="validation" if args.progress else None,
                       stop=stop, decoder=self.decoder["method"], beam_width=self.decoder["beam_width"],
                       alphabet=self.alphabet, lm=self.lm)
        if workers.kv is not None:
            val = combine_evaluations(val, workers, self.val_groups)
        overall = val.rates.overall
        metrics = {"val_loss": val.loss, "val_cer": val.cer, "val_wer": val.wer,
                   "val_mean_clip_cer": overall.mean_clip_cer, "val_mean_clip_wer": overall.mean_clip_wer}
        text = (f"val loss {val.loss:.4f}, CER {val.cer:.4f}, WER {val.wer:.4f} (mean per clip: CER "
                f"{overall.mean_clip_cer:.4f}, WER {overall.mean_clip_wer:.4f})")
        examples = [line for target, pred in list(zip(val.targets, val.predictions))[: args.show_examples]
                    for line in (f"  [Target] {target}", f"  [Pred]   {pred}")]
        return metrics, val.wer, text, examples

    def stop_reached(self, metrics: dict) -> str | None:
        if self.args.stop_wer is not None and metrics["val_wer"] <= self.args.stop_wer:
            return f"validation WER {metrics['val_wer']:.4f} reached stop_wer={self.args.stop_wer:g}"
        return None

    def meta(self) -> dict:
        return {"normalisation": {"mean": self.mean, "std": self.std}, "decoder": self.decoder,
                "split": self.selection, "alphabet": self.alphabet.to_dict()}


class WordTask:
    """The word classifier (ResNet-18 + MS-TCN) on an LRW-layout tree with cross-entropy and mixup.

    Training reads ``image_path``'s train split, validation its val split, with the class list
    of the training tree (or the checkpoint's, on a resume). Mixup draws its weight and partner
    clips from (seed, epoch, batch, worker, context) only, so a resumed run mixes the same pairs.
    """

    curves = (("val_error", "1 - top-1"), ("val_top5_error", "1 - top-5"))

    def __init__(self, args: argparse.Namespace, start: Start, workers: Workers) -> None:
        from model.word_net import WordNetConfig

        self.args = args
        self.start = start
        words = start.meta.get("words")
        crop = start.config.size if start.config is not None else args.crop
        self.train_set = data_loader.WordDataset(args.image_path, "train", words=words, train=True,
                                                 flip_prob=args.flip_prob, seed=args.seed, crop=crop)
        self.words = self.train_set.words
        self.region = int(data_loader.load_clip(self.train_set.clips[0].path).shape[1])
        self.val_set = data_loader.WordDataset(args.image_path, "val", words=self.words, crop=crop)
        self.config = start.config or WordNetConfig(
            num_classes=len(self.words), relu_type=args.relu_type, width_mult=args.width_mult,
            tcn_kernel_size=tuple(args.tcn_kernel_size), tcn_num_layers=args.tcn_num_layers,
            tcn_width_mult=args.tcn_width_mult, tcn_dropout=args.tcn_dropout, tcn_dwpw=args.tcn_dwpw,
            frames=self.train_set.num_frames, size=self.train_set.crop)
        if self.config.num_classes != len(self.words):
            raise ValueError(f"the checkpoint's network has {self.config.num_classes} classes, its word list "
                             f"{len(self.words)}")
        log.info("%d words; %d training and %d validation clips", len(self.words), len(self.train_set),
                 len(self.val_set))
        if workers.kv is not None:
            self._shard(self.train_set, workers, equal=True)
            if workers.lockstep:
                self._shard(self.val_set, workers, equal=False)
        self.sampler = data_loader.EpochShuffleSampler(len(self.train_set), args.seed)
        self.train_loader = data_loader.make_word_loader(self.train_set, args.batch_size, self.sampler,
                                                         args.num_workers)
        self.val_loader = data_loader.make_word_loader(self.val_set, args.batch_size, num_workers=args.num_workers)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        self.last_scores = None

    @staticmethod
    def _shard(dataset: data_loader.WordDataset, workers: Workers, equal: bool) -> None:
        """Keep this worker's share of a word data set's clips (``shard_records`` by clip id)."""
        dataset.clips = data_loader.shard_records(dataset.clips, workers.rank, workers.count, equal=equal)
        label = {word: i for i, word in enumerate(dataset.words)}
        dataset.labels = np.array([label[clip.word] for clip in dataset.clips], np.int64)

    def _lengths(self, data: mx.nd.NDArray) -> mx.nd.NDArray:
        return mx.nd.full((data.shape[0],), data.shape[2], ctx=data.context)  # every clip is whole (padded)

    def losses(self, net: nn.HybridBlock, parts: list[tuple], epoch: int, batch: int,
               rank: int) -> list[mx.nd.NDArray]:
        out = []
        for i, (data, labels, _) in enumerate(parts):
            if self.args.mixup_alpha > 0:
                rng = np.random.default_rng((self.args.seed, epoch, batch, rank, i))
                weight = float(rng.beta(self.args.mixup_alpha, self.args.mixup_alpha))
                order = mx.nd.array(rng.permutation(data.shape[0]), ctx=data.context)
                mixed = weight * data + (1 - weight) * data.take(order)
                scores = net(mixed, self._lengths(data))
                out.append(weight * self.loss_fn(scores, labels)
                           + (1 - weight) * self.loss_fn(scores, labels.take(order)))
            else:
                out.append(self.loss_fn(net(data, self._lengths(data)), labels))
        return out

    def evaluate(self, net: nn.HybridBlock, ctxs: Sequence[mx.Context], stop: StopFlag | None = None,
                 progress: str | None = None) -> WordScores:
        """Top-1/top-5 counts, confusion matrix and loss over the validation loader (no augmentation)."""
        return evaluate_words(net, self.val_loader, self.words, ctxs, stop, progress, self.loss_fn)

    @staticmethod
    def frame_counts(batch: tuple) -> tuple[int, int]:
        """(the clips' own frames, all frames) of a batch: word clips all have the same length."""
        frames = batch[0].shape[0] * batch[0].shape[2]
        return frames, frames

    def validate(self, net: nn.HybridBlock, ctxs: Sequence[mx.Context], workers: Workers,
                 stop: StopFlag | None) -> tuple[dict, float, str, list[str]]:
        scores = self.evaluate(net, ctxs, stop, "validation" if self.args.progress else None)
        if workers.lockstep:
            scores = WordScores.from_vector(self.words, workers.allreduce("validation", scores.to_vector()))
        self.last_scores = scores
        if workers.rank == 0:
            scores.write_csv(str(Path(self.args.save_dir) / "val_words.csv"))
        metrics = {"val_loss": scores.loss, "val_acc": scores.accuracy, "val_top5": scores.top5_accuracy,
                   "val_error": 1 - scores.accuracy, "val_top5_error": 1 - scores.top5_accuracy}
        return metrics, 1 - scores.accuracy, f"val loss {scores.loss:.4f}, {scores.summary()}", []

    def stop_reached(self, metrics: dict) -> str | None:
        if self.args.stop_accuracy is not None and metrics["val_acc"] >= self.args.stop_accuracy:
            return f"validation top-1 {metrics['val_acc']:.4f} reached stop_accuracy={self.args.stop_accuracy:g}"
        return None

    def meta(self) -> dict:
        from utils.data.word_clips import WORD_MEAN, WORD_STD

        return {"normalisation": {"mean": [WORD_MEAN], "std": [WORD_STD]}, "words": self.words,
                "region": self.region,  # side of the training mouth regions, for reading raw clips alike
                "split": {"root": str(Path(self.args.image_path).resolve()), "train": "train", "val": "val"}}


def evaluate_words(net: nn.HybridBlock, loader: gluon.data.DataLoader, words: Sequence[str],
                   ctxs: Sequence[mx.Context], stop: StopFlag | None = None, progress: str | None = None,
                   loss_fn: gluon.loss.Loss | None = None, predictions: list | None = None) -> WordScores:
    """A word classifier over a loader of ``make_word_loader``; with ``predictions`` (a list), each
    clip's ``(index, label, predicted, scores)`` is appended to it. ``infer.py`` reuses it."""
    loss_fn = loss_fn or gluon.loss.SoftmaxCrossEntropyLoss()
    scores = WordScores(list(words))
    for batch in tqdm(loader, desc=progress, disable=progress is None, unit="batch", leave=False):
        if stop is not None:
            stop.check()
        if batch is None:
            continue
        for data, labels, indices in split_batch(batch, ctxs):
            out = net(data, mx.nd.full((data.shape[0],), data.shape[2], ctx=data.context))
            losses = loss_fn(out, labels).asnumpy()
            values, label_ids = out.asnumpy(), labels.asnumpy().astype(np.int64)
            predicted = scores.add(label_ids, values, losses)
            if predictions is not None:
                predictions.extend(zip(indices.tolist(), label_ids.tolist(), predicted.tolist(), values))
    return scores


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
