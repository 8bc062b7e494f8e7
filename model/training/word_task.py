"""The word classifier with cross-entropy and mixup: the task the training loop runs for
``task=words``, and ``evaluate_words`` (which ``infer.py`` reuses)."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

import data_loader
from model.backend import gluon, mx, nn
from model.devices import split_batch
from model.training.distributed import Workers
from model.training.interruption import StopFlag
from model.training.state import Start
from utils.scoring.word_metrics import WordScores

log = logging.getLogger("lipnet")


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
