"""A network to read with, from whatever file holds it: an ONNX file runs on onnxruntime and never
imports MXNet; anything else is one of our checkpoints (or the original example's parameter file) for
MXNet. The choice lives here, above both backends, so that the framework-free ``utils.reading`` knows
neither."""
from __future__ import annotations

from pathlib import Path

from utils.reading.network import Network, is_onnx


def load_network(model_path: str | Path, num_gpus: int = 0) -> Network:
    """The network in ``model_path``; ``num_gpus`` > 0 runs on GPUs where the backend sees any
    (onnxruntime uses one). Raises OSError or ValueError naming the file when it cannot be used."""
    if is_onnx(model_path):
        from utils.reading.onnx_network import OnnxLipNet

        return OnnxLipNet(model_path, use_gpu=num_gpus > 0)
    from model.mxnet_network import MXNetLipNet

    return MXNetLipNet.load(model_path, num_gpus)
