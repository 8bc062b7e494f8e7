"""The network as reading sees it: clips in, log-probabilities out, whatever runs it.

Two backends give the same interface: ``model.mxnet_network.MXNetLipNet`` (our checkpoints and the
original example's parameter file, on MXNet) and ``utils.reading.onnx_network.OnnxLipNet`` (an ONNX file
from utils/export_onnx.py, on onnxruntime, with no MXNet anywhere). ``model.loading.load_network`` picks
one by the file, so that reading with an ONNX file never imports MXNet.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.text.alphabet import GRID, Alphabet
from utils.video.framing import DEFAULT_CHANNEL_ORDER, DEFAULT_FRAMING, recorded_crop

ONNX_SUFFIX = ".onnx"
WORD_NETWORK = "word_net"  # the "network" of a word classifier, in meta.json and an ONNX file's metadata


class NetworkError(RuntimeError):
    """The backend (MXNet, onnxruntime) failed to read a batch: its own error, named, as one type that
    reading can catch per utterance without importing the backend."""


@dataclass
class Network(ABC):
    """A LipNet ready to read, and everything needed to feed it and decode what it says.

    ``meta`` holds the checkpoint's description as far as reading uses it: at least ``decoder``
    (``{"method": ..., "beam_width": ...}``), the default decoder. ``alphabet`` is the one its output
    spells with (the checkpoint's; GRID's for checkpoints that record none).
    """

    variant: str
    norm: str
    width: int
    height: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    frame_rate: float
    source: str
    backend: str
    meta: dict = field(default_factory=dict)
    alphabet: Alphabet = GRID

    @abstractmethod
    def log_probs(self, batch: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """``(N, T, classes)`` float32 log-probabilities of a batch ``(N, 3, T, H, W)`` float32 of
        normalised clips; ``lengths`` (N,) are the clips' real frame counts (the rest is padding).
        NetworkError when the backend fails on this batch."""

    def __post_init__(self) -> None:
        """ValueError naming the file where its framing or channel order is not one this reader knows."""
        try:
            recorded_crop(self.meta)
        except ValueError as err:
            raise ValueError(f"{self.source}: {err}") from None

    @property
    def framing(self) -> str:
        """How the network's crops are framed (``utils.video.framing``): meta.json's ``crop.framing``, else the
        default."""
        return recorded_crop(self.meta)[0]

    @property
    def channel_order(self) -> str:
        """The channel order the network takes (``rgb`` or ``bgr``): meta.json's ``crop.channel_order``, else RGB."""
        return recorded_crop(self.meta)[1]

    def describe(self) -> str:
        framing = "" if self.framing == DEFAULT_FRAMING else f" {self.framing} framing"
        order = "" if self.channel_order == DEFAULT_CHANNEL_ORDER else f" {self.channel_order.upper()}"
        return (f"{self.source} ({self.variant}, norm {self.norm}, input {self.width}x{self.height}{framing}{order}, "
                f"{self.backend})")


def is_onnx(model_path: str | Path) -> bool:
    return Path(model_path).suffix.lower() == ONNX_SUFFIX
