"""A word checkpoint ready to read clips: the MXNet side of ``infer.py``'s top words.

A word checkpoint is one of our checkpoint folders (``model.checkpoint``) whose ``meta.json`` holds
the word network's config (``model.word_net.WordNetConfig``) and ``words``, its class list in class
order (the training tree's sorted word folders, ``data_loader.WordDataset.words``).
"""
from __future__ import annotations

from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon

from model.checkpoint import META_FILE, PARAMS_FILE, load_param_file, read_meta, set_parameters, verify_files
from model.word_net import WordNet, WordNetConfig, prepare_word_net


def is_word_meta(meta: dict) -> bool:
    """A word checkpoint's description: the word network's config and its class list."""
    return isinstance(meta.get("words"), list) and "tcn_num_layers" in (meta.get("config") or {})


class WordClassifier:
    """``classifier(batch)``: class scores ``(N, len(words))`` of normalised clips ``(N, 1, T, H, W)``,
    a batch split over the given contexts."""

    def __init__(self, net: WordNet, words: list[str], ctxs: list[mx.Context], source: str) -> None:
        self.net = net
        self.words = words
        self.ctxs = ctxs
        self.source = source
        prepare_word_net(net, ctxs)

    @classmethod
    def load(cls, path: str | Path, num_gpus: int = 0) -> WordClassifier | None:
        """The word checkpoint at ``path`` (a run folder, best/ preferred, or a checkpoint folder); None when
        ``path`` holds no word checkpoint (a LipNet's, say). Raises ValueError naming the file when it is
        a word checkpoint that cannot be used."""
        from trainer import contexts

        try:
            folder, meta = read_meta(path, "best")
        except (OSError, ValueError):
            return None
        if not is_word_meta(meta):
            return None
        verify_files(folder, meta, (PARAMS_FILE,))
        try:
            config = WordNetConfig(**meta["config"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{folder / META_FILE}: not a usable word network config ({err})") from None
        words = [str(w) for w in meta["words"]]
        if len(words) != config.num_classes:
            raise ValueError(f"{folder / META_FILE}: {len(words)} words for {config.num_classes} classes")
        ctxs = contexts(num_gpus)
        net = WordNet(config)
        set_parameters(net, load_param_file(folder / PARAMS_FILE), folder / PARAMS_FILE, ctxs)
        return cls(net, words, ctxs, str(folder))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        lengths = np.full(len(batch), batch.shape[2], np.float32)
        ctxs = self.ctxs[: len(batch)]
        parts = gluon.utils.split_and_load(mx.nd.array(batch), ctxs, even_split=False)
        length_parts = gluon.utils.split_and_load(mx.nd.array(lengths), ctxs, even_split=False)
        return np.concatenate([self.net(part, part_lengths).asnumpy()
                               for part, part_lengths in zip(parts, length_parts)])
