"""The word classifier (``model/word_net.py``) as an ONNX graph, written node by node from a checkpoint's arrays.

The graph's input is the Gluon network's, ``frames`` (N, 1, T, size, size) float32 normalised grey crops, with an
optional second input ``lengths`` (N,) int32, each clip's real frames (the time average then covers those only,
as ``WordNet`` averages); its output ``log_probs`` (N, words), the log-softmax of the network's scores. Batch and
time are dynamic. Batch norms are inference's: ``BatchNormalization`` with the running statistics. The TCN runs
as the 1-D convolutions it is (ours are ``(k, 1)`` 2-D convolutions only for MXNet's sake), the front-end as the
Conv3D ``FrameStackConv`` computes. The file's metadata carries the word list, normalisation, crop framing and
frame rate, so reading needs the file alone (``utils/reading/onnx_words.py``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from model.onnx_export import METADATA_VERSIONS, OPSET, OUTPUT, _array, _Graph
from model.word_net import WordNetConfig
from utils.data.word_clips import WORD_FPS
from utils.reading.network import WORD_NETWORK
from utils.reading.onnx_network import INPUT, LENGTHS


def _activation(g: _Graph, x: str, relu_type: str, arrays: Mapping[str, np.ndarray], prefix: str, dims: int) -> str:
    if relu_type == "relu":
        return g.op("Relu", [x])
    if relu_type == "swish":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    slope = _array(arrays, f"{prefix}.alpha")
    return g.op("PRelu", [x, g.const(f"{prefix}.alpha", slope.reshape((-1,) + (1,) * (dims - 2)))])


def _batch_norm(g: _Graph, x: str, arrays: Mapping[str, np.ndarray], prefix: str) -> str:
    stats = [g.const(f"{prefix}.{s}", _array(arrays, f"{prefix}.{s}"))
             for s in ("gamma", "beta", "running_mean", "running_var")]
    # MXNet's BatchNorm epsilon is 1e-5, as PyTorch's.
    return g.op("BatchNormalization", [x, *stats], name=prefix, epsilon=1e-5)


def _conv(g: _Graph, x: str, arrays: Mapping[str, np.ndarray], prefix: str, stride: int = 1, dilation: int = 1,
          one_d: bool = False, groups: int = 1) -> str:
    """A convolution of our parameters ``prefix``.weight (and .bias where it has one), "same" padding."""
    weight = _array(arrays, f"{prefix}.weight")
    if one_d:
        weight = weight.reshape(weight.shape[:3])  # (O, I, k, 1) -> (O, I, k)
    kernel = list(weight.shape[2:])
    pads = [(k - 1) * dilation // 2 for k in kernel]
    inputs = [x, g.const(f"{prefix}.weight", weight)]
    if f"{prefix}.bias" in arrays:
        inputs.append(g.const(f"{prefix}.bias", _array(arrays, f"{prefix}.bias")))
    return g.op("Conv", inputs, name=prefix, kernel_shape=kernel, strides=[stride] * len(kernel),
                dilations=[dilation] * len(kernel), pads=pads * 2, group=groups)


def _basic_block(g: _Graph, x: str, arrays: Mapping[str, np.ndarray], prefix: str, stride: int, relu: str) -> str:
    shortcut = x
    if f"{prefix}.downsample.0.weight" in arrays:
        shortcut = _batch_norm(g, _conv(g, x, arrays, f"{prefix}.downsample.0", stride), arrays,
                               f"{prefix}.downsample.1")
    out = _activation(g, _batch_norm(g, _conv(g, x, arrays, f"{prefix}.conv1", stride), arrays, f"{prefix}.bn1"),
                      relu, arrays, f"{prefix}.act1", 4)
    out = _batch_norm(g, _conv(g, out, arrays, f"{prefix}.conv2"), arrays, f"{prefix}.bn2")
    return _activation(g, g.op("Add", [out, shortcut]), relu, arrays, f"{prefix}.act2", 4)


def _branches(g: _Graph, x: str, arrays: Mapping[str, np.ndarray], prefix: str, config: WordNetConfig,
              dilation: int) -> str:
    outs = []
    for index in range(len(config.tcn_kernel_size)):
        branch = f"{prefix}.branches.{index}"
        if config.tcn_dwpw:
            groups = _array(arrays, f"{branch}.0.weight").shape[0]
            y = _conv(g, x, arrays, f"{branch}.0", dilation=dilation, one_d=True, groups=groups)
            y = _activation(g, _batch_norm(g, y, arrays, f"{branch}.1"), config.relu_type, arrays, f"{branch}.2", 3)
            y = _activation(g, _batch_norm(g, _conv(g, y, arrays, f"{branch}.3", one_d=True), arrays, f"{branch}.4"),
                            config.relu_type, arrays, f"{branch}.5", 3)
        else:
            y = _activation(g, _batch_norm(g, _conv(g, x, arrays, f"{branch}.0", dilation=dilation, one_d=True),
                                           arrays, f"{branch}.1"), config.relu_type, arrays, f"{branch}.2", 3)
        outs.append(y)
    return outs[0] if len(outs) == 1 else g.op("Concat", outs, axis=1)


def build_word_graph(config: WordNetConfig, arrays: Mapping[str, np.ndarray],
                     with_lengths: bool = False) -> onnx.GraphProto:
    """The inference graph of a ``WordNet`` of ``config`` with the parameters ``arrays`` (name -> NumPy array,
    our names). Dropout is left out (inference)."""
    g = _Graph()
    relu = config.relu_type
    front = _array(arrays, "frontend_conv.weight")  # (C, 1, kt, k, k), the Conv3D's weight
    x = g.op("Conv", [INPUT, g.const("frontend_conv.weight", front)], name="frontend_conv",
             kernel_shape=list(front.shape[2:]), strides=[1, 2, 2],
             pads=[d // 2 for d in front.shape[2:]] * 2)
    x = _activation(g, _batch_norm(g, x, arrays, "frontend_bn"), relu, arrays, "frontend_act", 5)
    x = g.op("MaxPool", [x], name="frontend_pool", kernel_shape=[1, 3, 3], strides=[1, 2, 2], pads=[0, 1, 1] * 2)
    # (N, C, T, H, W) -> (N*T, C, H, W): every frame through the trunk
    side = ((config.size + 1) // 2 + 1) // 2  # after the stride-2 convolution and the stride-2 pool
    channels = front.shape[0]
    x = g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 1, 3, 4]),
                         g.const("frames_flat", np.array([-1, channels, side, side]))])
    block = 0
    while f"trunk.{block}.conv1.weight" in arrays:
        stride = 2 if block % 2 == 0 and block else 1
        x = _basic_block(g, x, arrays, f"trunk.{block}", stride, relu)
        block += 1
    x = g.op("GlobalAveragePool", [x])  # (N*T, C, 1, 1)
    shape = g.op("Shape", [INPUT])
    n_t = g.op("Concat", [g.op("Slice", [shape, g.const("b0", np.array([0])), g.const("e0", np.array([1]))]),
                          g.op("Slice", [shape, g.const("b2", np.array([2])), g.const("e2", np.array([3]))]),
                          g.const("minus_one", np.array([-1]))], axis=0)
    x = g.op("Transpose", [g.op("Reshape", [x, n_t])], perm=[0, 2, 1])  # (N, C, T)
    for level in range(config.tcn_num_layers):
        prefix, dilation = f"tcn.{level}", 2**level
        out = _branches(g, _branches(g, x, arrays, f"{prefix}.branches0", config, dilation), arrays,
                        f"{prefix}.branches1", config, dilation)
        x = _activation(g, g.op("Add", [out, _conv(g, x, arrays, f"{prefix}.downsample", one_d=True)]), relu,
                        arrays, f"{prefix}.act", 3)
    if with_lengths:
        # Mean over each clip's real frames: frame t of clip n counts when t < lengths[n].
        steps = g.op("Range", [g.const("zero_i", np.array(0, np.int64)),
                               g.op("Squeeze", [g.op("Slice", [shape, g.const("b2t", np.array([2])),
                                                               g.const("e3t", np.array([3]))]),
                                                g.const("axis0", np.array([0]))]),
                               g.const("one_i", np.array(1, np.int64))])
        lengths64 = g.op("Cast", [LENGTHS], to=TensorProto.INT64)
        real = g.op("Less", [g.op("Unsqueeze", [steps, g.const("axis_n", np.array([0]))]),
                             g.op("Unsqueeze", [lengths64, g.const("axis_t", np.array([1]))])])  # (N, T)
        mask = g.op("Unsqueeze", [g.op("Cast", [real], to=TensorProto.FLOAT), g.const("axis_c", np.array([1]))])
        total = g.op("ReduceSum", [g.op("Mul", [x, mask]), g.const("axis_time", np.array([2]))], keepdims=0)
        count = g.op("Max", [g.op("Cast", [lengths64], to=TensorProto.FLOAT),
                             g.const("one_f", np.array(1, np.float32))])
        x = g.op("Div", [total, g.op("Unsqueeze", [count, g.const("axis_1", np.array([1]))])])
    else:
        x = g.op("ReduceMean", [x], axes=[2], keepdims=0)
    x = g.op("Gemm", [x, g.const("output.weight", _array(arrays, "output.weight")),
                      g.const("output.bias", _array(arrays, "output.bias"))], name="output", transB=1)
    g.op("LogSoftmax", [x], name=OUTPUT, axis=-1)
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, "T", config.size, config.size])]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info(LENGTHS, TensorProto.INT32, ["N"]))
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", config.num_classes])]
    return helper.make_graph(g.nodes, "word_net", inputs, outputs, g.initializers)


def build_word_model(config: WordNetConfig, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, object],
                     with_lengths: bool = False) -> onnx.ModelProto:
    """A checked ONNX model (opset 17) with ``metadata`` as JSON-valued ``metadata_props``."""
    model = helper.make_model(build_word_graph(config, arrays, with_lengths), producer_name="lipnet-gluon",
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              doc_string="ResNet-18 + MS-TCN word classifier")
    model.ir_version = 8
    helper.set_model_props(model, {key: json.dumps(value) for key, value in metadata.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def word_metadata(config: WordNetConfig, mean: tuple[float, ...], std: tuple[float, ...], meta: Mapping,
                  source: str) -> dict[str, object]:
    """What reading words with the ONNX file alone needs, from a word checkpoint's config and description."""
    words = [str(w) for w in meta.get("words") or []]
    if len(words) != config.num_classes:
        raise ValueError(f"{len(words)} words for {config.num_classes} classes")
    return {
        "lipnet.version": METADATA_VERSIONS["dataset"],  # a word model normalises by its data set
        "lipnet.network": WORD_NETWORK,
        "lipnet.config": config.to_dict(),
        "lipnet.input": {"layout": "NCTHW", "colour": "grey", "height": config.size, "width": config.size,
                         "frames": config.frames, "scale": "pixel / 255, then (value - mean) / std"},
        "lipnet.normalisation": {"mean": list(map(float, mean)), "std": list(map(float, std))},
        "lipnet.words": words,
        "lipnet.region": int(meta.get("region") or 0) or None,
        "lipnet.frame_rate": float(meta.get("frame_rate") or WORD_FPS),
        "lipnet.source": source,
        "lipnet.crop": meta.get("crop") or {},  # an imported network's crop framing (model/tcn_weights.py)
        "lipnet.imported_from": meta.get("imported_from") or {},
        "lipnet.metrics": meta.get("metrics") or {},
        "lipnet.data": {k: v for k, v in (meta.get("args") or {}).items() if k == "image_path"},
    }
