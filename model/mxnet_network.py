"""A loaded checkpoint as a ``utils.reading.network.Network``: MXNet's side of reading."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model.backend import MXNetError, gluon, mx
from model.checkpoint import LoadedLipNet, load_lipnet
from model.lipnet import prepare_for_inference
from utils.reading.network import Network, NetworkError
from utils.video.reader import MODEL_FPS


class MXNetLipNet(Network):
    """Our checkpoints and the original example's parameter file, run by MXNet (hybridized and packed
    for inference by ``prepare_for_inference``), a batch split over the given contexts."""

    def __init__(self, loaded: LoadedLipNet, ctxs: list[mx.Context]) -> None:
        config = loaded.config
        super().__init__(config.variant, config.norm, config.width, config.height, loaded.mean, loaded.std,
                         float(loaded.meta.get("frame_rate") or MODEL_FPS), str(loaded.path), "mxnet",
                         loaded.meta, loaded.alphabet)
        self.loaded = loaded
        self.ctxs = list(ctxs)
        prepare_for_inference(loaded.net, self.ctxs)

    @classmethod
    def load(cls, path: str | Path, num_gpus: int = 0) -> MXNetLipNet:
        from model.devices import contexts

        ctxs = contexts(num_gpus)
        return cls(load_lipnet(path, ctxs), ctxs)

    def log_probs(self, batch: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Each clip is read up to its length (``LipNet.read``): padding never changes its frames' values.
        MXNet's errors (raised when the result is copied out) come as NetworkError."""
        try:
            return self._read(batch, lengths)
        except MXNetError as err:  # a C++ traceback whose last line says what went wrong
            reason = (str(err).strip().splitlines() or ["unknown error"])[-1].removeprefix("MXNetError: ")
            raise NetworkError(f"MXNet could not read a batch of shape {batch.shape}: {reason}") from err

    def _read(self, batch: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        ctxs = self.ctxs[: len(batch)]
        lengths = np.full(len(batch), batch.shape[2]) if lengths is None else np.asarray(lengths)
        net = self.loaded.net
        if len(ctxs) == 1:
            return net.read(mx.nd.array(batch, ctx=ctxs[0]), mx.nd.array(lengths, ctx=ctxs[0])).asnumpy()
        parts = gluon.utils.split_and_load(mx.nd.array(batch), ctxs, even_split=False)
        length_parts = gluon.utils.split_and_load(mx.nd.array(lengths), ctxs, even_split=False)
        return np.concatenate([net.read(part, part_lengths).asnumpy()
                               for part, part_lengths in zip(parts, length_parts)])
