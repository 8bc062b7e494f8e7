"""A network to read with, from whatever file holds it: an ONNX file runs on onnxruntime and never
imports MXNet; anything else is one of our checkpoints (or the original example's parameter file) for
MXNet. The choice lives here, above both backends, so that the framework-free ``utils.reading`` knows
neither."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from utils.reading.network import WORD_NETWORK, Network, is_onnx

if TYPE_CHECKING:
    from model.word_classifier import WordClassifier
    from utils.reading.onnx_words import OnnxWordClassifier


def load_network(model_path: str | Path, num_gpus: int = 0) -> Network:
    """The network in ``model_path``; ``num_gpus`` > 0 runs on GPUs where the backend sees any
    (onnxruntime uses one). Raises OSError or ValueError naming the file when it cannot be used."""
    if is_onnx(model_path):
        from utils.reading.onnx_network import OnnxLipNet

        return OnnxLipNet(model_path, use_gpu=num_gpus > 0)
    from model.mxnet_network import MXNetLipNet

    return MXNetLipNet.load(model_path, num_gpus)


def load_word_classifier(model_path: str | Path, num_gpus: int = 0) -> WordClassifier | OnnxWordClassifier | None:
    """The word classifier in ``model_path`` (a word checkpoint on MXNet, or a word ONNX file on onnxruntime);
    None when it holds a LipNet (``load_network`` then reads it). OSError or ValueError naming the file when it
    cannot be used."""
    if is_onnx(model_path):
        from utils.reading.onnx_network import network_kind, open_session
        from utils.reading.onnx_words import OnnxWordClassifier

        opened = open_session(model_path, use_gpu=num_gpus > 0)
        if network_kind(opened[0]) == WORD_NETWORK:
            return OnnxWordClassifier(model_path, opened=opened)
        return None  # a LipNet's: load_network opens it again (a small file)
    from model.word_classifier import WordClassifier

    return WordClassifier.load(model_path, num_gpus)
