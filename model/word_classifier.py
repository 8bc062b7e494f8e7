"""A word checkpoint ready to read clips: the MXNet side of ``infer.py``'s top words.

A word checkpoint is one of our checkpoint folders (``model.checkpoint``) whose ``meta.json`` names the
word network (``"network": "word_net"``) and holds ``words``, its class list in class order (the
training tree's sorted word folders, ``data_loader.WordDataset.words``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model.backend import gluon, mx
from model.checkpoint import META_FILE, read_checkpoint, read_meta, set_parameters
from model.word_net import WordNet, prepare_word_net
from utils.reading.network import WORD_NETWORK
from utils.video.word_crops import WORD_CROP_SIZE


class WordClassifier:
    """``classifier(batch)``: class scores ``(N, len(words))`` of normalised clips ``(N, 1, T, H, W)``,
    a batch split over the given contexts."""

    def __init__(self, net: WordNet, words: list[str], ctxs: list[mx.Context], source: str,
                 region: int = WORD_CROP_SIZE, meta: dict | None = None) -> None:
        self.net = net
        self.meta = meta or {}  # the checkpoint's meta.json
        self.words = words
        self.region = region  # side of the mouth regions it was trained on (crops are cut from them)
        self.ctxs = ctxs
        self.source = source
        self.crop = net.config.size  # side of the network's input, cut from the centre of the region
        prepare_word_net(net, ctxs)

    @classmethod
    def load(cls, path: str | Path, num_gpus: int = 0) -> WordClassifier | None:
        """The word checkpoint at ``path`` (a run folder, best/ preferred, or a checkpoint folder); None when
        ``path`` holds no word checkpoint (a LipNet's, say). Raises ValueError naming the file when it is
        a word checkpoint that cannot be used."""
        from model.devices import contexts

        try:
            _, meta = read_meta(path, "best")
        except (OSError, ValueError):
            return None
        if meta.get("network") != WORD_NETWORK:
            return None
        contents = read_checkpoint(path, "best")
        words = [str(w) for w in contents.meta.get("words") or []]
        if len(words) != contents.config.num_classes:
            raise ValueError(f"{contents.folder / META_FILE}: {len(words)} words for "
                             f"{contents.config.num_classes} classes")
        ctxs = contexts(num_gpus)
        net = WordNet(contents.config)
        set_parameters(net, contents.arrays, contents.source, ctxs)
        return cls(net, words, ctxs, str(contents.folder), int(contents.meta.get("region", WORD_CROP_SIZE)),
                   contents.meta)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        lengths = np.full(len(batch), batch.shape[2], np.float32)
        ctxs = self.ctxs[: len(batch)]
        parts = gluon.utils.split_and_load(mx.nd.array(batch), ctxs, even_split=False)
        length_parts = gluon.utils.split_and_load(mx.nd.array(lengths), ctxs, even_split=False)
        return np.concatenate([self.net(part, part_lengths).asnumpy()
                               for part, part_lengths in zip(parts, length_parts)])
