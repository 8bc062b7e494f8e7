"""LipNet on sentence clips with CTC: the task the training loop runs for ``task=sentences``, and
the validation pass ``evaluate`` (which ``infer.py`` reuses through the reading path)."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

import data_loader
from model.backend import gluon, mx
from model.devices import split_batch
from model.lipnet import LipNet, LipNetConfig
from model.training.distributed import Workers, combine_evaluations
from model.training.interruption import StopFlag
from model.training.state import Start
from utils.data import splits
from utils.data.light import DEFAULT_INPUT_NORM, Light, recorded_input_norm
from utils.data.manifest import load_manifest
from utils.scoring.sentence_evaluation import Evaluation, score_batch
from utils.scoring.sentence_metrics import GroupedErrorRates
from utils.text.alphabet import GRID, Alphabet, choose_alphabet
from utils.text.lm_decoder import LMDecoder, lm_decoder_for
from utils.video.framing import recorded_crop
from utils.video.roll import data_upright

log = logging.getLogger("lipnet")


def evaluate(net: LipNet, loader: gluon.data.DataLoader, dataset: data_loader.SentenceDataset,
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


def choose_input_norm(given: str | None, start: Start) -> str:
    """The input normalisation of a run: a checkpoint's own when starting from one (its weights expect it; the
    original example's parameters: ``dataset``), else ``given`` or ``dataset``. ValueError when ``given``
    differs from the checkpoint's."""
    if start.arrays is None:
        return given or DEFAULT_INPUT_NORM
    recorded = recorded_input_norm(start.meta)
    if given is not None and given != recorded:
        raise ValueError(f"input_norm={given} differs from that of {start.source} ({recorded}), whose weights "
                         f"expect its input normalised as they were trained: leave input_norm out, or start a "
                         f"new run without model_path")
    return recorded


def training_light(args: argparse.Namespace) -> Light:
    """The photometric augmentation ``args`` ask for (off for namespaces from before the setting)."""
    return Light(*(getattr(args, f"light_{name}", default) for name, default in zip(Light._fields, Light())))


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
        # Whether the crops were turned upright (utils.video.roll), so that reading cuts them alike; {}: not recorded.
        self.upright = data_upright(load_manifest(args.image_path), Path(args.image_path))
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
        self.framing = data_loader.data_framing(args.image_path, train_records + val_records)
        started, channel_order = recorded_crop(start.meta)
        if start.config is not None and started != self.framing:
            log.warning("%s was trained on crops in the %s framing, these clips are in the %s framing: it will read "
                        "them less well at first", start.source, started, self.framing)
        self.channel_order = channel_order  # a fresh network's: RGB
        mean, std = (start.mean, start.std) if start.mean else data_loader.channel_stats(train_records, seed=args.seed)
        self.mean, self.std = mean, std
        self.input_norm = choose_input_norm(getattr(args, "input_norm", None), start)
        per_clip = self.input_norm == "clip"
        self.config = config = start.config or build_config(args, probe_frame_size(train_records), alphabet)
        size = (config.width, config.height)
        log.info("%d training and %d validation clips; input %dx%d; normalisation: %s", len(train_records),
                 len(val_records), config.width, config.height, "each clip by its own mean and std" if per_clip
                 else f"mean {[round(v, 4) for v in mean]} std {[round(v, 4) for v in std]}")
        if workers.kv is not None:
            self.val_groups = sorted({r.speaker for r in val_records})
            train_records = data_loader.shard_records(train_records, workers.rank, workers.count)
            if workers.lockstep:
                val_records = data_loader.shard_records(val_records, workers.rank, workers.count, equal=False)
            log.info("worker %d of %d (%s): %d training clips of its own, %d validation clips",
                     workers.rank, workers.count, args.kvstore, len(train_records), len(val_records))

        train_set = data_loader.SentenceDataset(train_records, size=size, num_frames=args.frames, train=True,
                                           flip_prob=args.flip_prob, jitter_prob=args.jitter_prob,
                                           word_prob=args.word_prob, seed=args.seed, alphabet=alphabet,
                                           recode_prob=args.recode_prob, low_rate_prob=args.low_rate_prob,
                                           light=training_light(args))
        val_set = data_loader.SentenceDataset(val_records, size=size, num_frames=args.frames, alphabet=alphabet)
        if args.frames is None and args.bucket:
            lengths = data_loader.clip_lengths(train_records)
            sampler = data_loader.BucketSampler(lengths, args.batch_size, args.seed)
            log.info("clips of %d to %d frames, batched by length", min(lengths), max(lengths))
        else:
            sampler = data_loader.EpochShuffleSampler(len(train_set), args.seed)
        self.train_set, self.val_set, self.sampler = train_set, val_set, sampler
        self.train_loader = data_loader.make_loader(train_set, args.batch_size, mean, std, sampler, args.num_workers,
                                                    channel_order=self.channel_order, per_clip=per_clip)
        self.val_loader = data_loader.make_loader(val_set, args.batch_size, mean, std, num_workers=args.num_workers,
                                                  channel_order=self.channel_order, per_clip=per_clip)
        self.loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
        self._clip_frames: dict[int, int] = {}

    def losses(self, net: LipNet, parts: list[tuple], epoch: int, batch: int, rank: int) -> list[mx.nd.NDArray]:
        """Per-clip losses of each context's part of a batch (inside ``autograd.record``)."""
        if self.args.aligned_ctc:
            return [self._aligned_losses(net.read(d, dl), lab, dl, ll, idx, epoch) for d, lab, dl, ll, idx in parts]
        return [self.loss_fn(net.read(d, dl), lab, dl, ll) for d, lab, dl, ll, _ in parts]

    def _segments(self, epoch: int, index: int) -> list[tuple[int, int, str]] | None:
        """The aligned segments of training sample ``(epoch, index)`` when it holds its clip's sentence, moved
        with the frames its plan (``SentenceDataset.plan``, replayed) cut and jittered."""
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
        return {"normalisation": {"mean": self.mean, "std": self.std, "input": self.input_norm},
                "decoder": self.decoder, "crop": {"framing": self.framing, "channel_order": self.channel_order,
                                                  **self.upright},
                "split": self.selection, "alphabet": self.alphabet.to_dict()}
