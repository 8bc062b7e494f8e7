"""LipNet as an ONNX graph, written node by node with ``onnx.helper`` from a checkpoint's arrays.

Why by hand: MXNet 1.9.1's own exporter (``mx.onnx``) imports ``onnx.mapping``, which onnx removed in
1.16, so it cannot run beside a maintained onnx; and this network is small (three convolution
stages, two bidirectional GRUs, a dense layer), each a standard ONNX operator. The GRUs become ONNX
``GRU`` ops: MXNet orders a GRU's gates (r, z, n) where ONNX orders them (z, r, h), and MXNet, like
cuDNN, applies the reset gate after the recurrent product (``linear_before_reset=1``).

The graph's input is the Gluon network's, ``frames`` (N, 3, T, H, W) float32 normalised; its output
``log_probs`` (N, T, classes). Batch and time are dynamic. With ``with_lengths`` the graph takes a
second input ``lengths`` (N,) int32, each clip's frame count, for a network whose results must
not depend on padding (see ``build_graph``). The file's metadata carries everything reading needs
(``utils/reading/onnx_network.py`` reads it), so the file alone is enough.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.lipnet import LipNetConfig
from utils.data.light import recorded_input_norm
from utils.data.sentence_clips import NUM_FRAMES
from utils.reading.onnx_network import INPUT, LENGTHS
from utils.text.alphabet import alphabet_from_record
from utils.video.framing import recorded_crop
from utils.video.reader import MODEL_FPS

OPSET = 17
OUTPUT = "log_probs"
# Version 2 is written for a network normalised per clip, which a version-1 reader would read as normalised by
# the data set's statistics, silently wrong: such a reader refuses it instead. Everything else stays version 1.
METADATA_VERSIONS = {"dataset": "1", "clip": "2"}
# How the reader turns pixels into the graph's input, in words, for whoever reads the metadata by hand.
SCALES = {"dataset": "pixel / 255, then (value - mean) / std per channel",
          "clip": "pixel / 255, then each channel standardised by its own mean and std over the clip's frames"}


def _gru_gates(array: np.ndarray) -> np.ndarray:
    """MXNet's stacked (r, z, n) gate blocks along the first axis, in ONNX's order (z, r, h)."""
    r, z, n = np.split(array, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


class _Graph:
    """Nodes and initialisers in the making, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, outputs: int = 1, **attrs: object) -> str:
        self._count += 1
        name = name or f"{op_type.lower()}_{self._count}"
        names = [name] if outputs == 1 else [f"{name}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=name, **attrs))
        return names[0]


def _array(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return np.asarray(arrays[name], np.float32)
    except KeyError:
        raise ValueError(f"no parameter {name!r} in the checkpoint") from None


def build_graph(config: LipNetConfig, arrays: Mapping[str, np.ndarray], with_lengths: bool = False) -> onnx.GraphProto:
    """The inference graph of a LipNet of ``config`` with the parameters ``arrays`` (name -> NumPy array).

    Dropout is left out (inference). With ``with_lengths`` the GRUs take each clip's length as ONNX's
    ``sequence_lens`` (the backward direction then starts at each clip's last real frame, and outputs
    past it are zero), and every convolution stage's input is zeroed past the clip's length, as a clip
    read alone is zero-padded there; instance-norm statistics are then taken over the real frames only.
    """
    g = _Graph()
    x = INPUT
    mask = None
    if with_lengths:
        # (N, 1, T, 1, 1) float mask: frame t of clip n is real when t < lengths[n].
        steps = g.op("Range", [g.const("zero_i", np.array(0, np.int64)),
                               g.op("Squeeze", [g.op("Slice", [g.op("Shape", [INPUT]), g.const("two", np.array([2])),
                                                               g.const("three", np.array([3]))]),
                                                g.const("axis0", np.array([0]))]),
                               g.const("one_i", np.array(1, np.int64))])
        lengths64 = g.op("Cast", [LENGTHS], to=TensorProto.INT64)
        real = g.op("Less", [g.op("Unsqueeze", [steps, g.const("axis_n", np.array([0]))]),
                             g.op("Unsqueeze", [lengths64, g.const("axis_t", np.array([1]))])])  # (N, T)
        mask = g.op("Unsqueeze", [g.op("Cast", [real], to=TensorProto.FLOAT),
                                  g.const("axes_mask", np.array([1, 3, 4]))], name="mask")
        count = g.op("Cast", [lengths64], to=TensorProto.FLOAT)
    strides = {1: [1, 2, 2], 2: [1, 1, 1], 3: [1, 1, 1]}
    pads = {1: [1, 2, 2], 2: [1, 2, 2], 3: list(config.conv3_padding)}
    for i in (1, 2, 3):
        weight = _array(arrays, f"conv{i}.weight")
        if mask is not None:
            x = g.op("Mul", [x, mask])
        bias = g.const(f"conv{i}.bias", _array(arrays, f"conv{i}.bias"))
        x = g.op("Conv", [x, g.const(f"conv{i}.weight", weight), bias], name=f"conv{i}",
                 kernel_shape=list(weight.shape[2:]), strides=strides[i], pads=pads[i] * 2)
        gamma = g.const(f"bn{i}.gamma", _array(arrays, f"bn{i}.gamma")) if config.norm != "none" else None
        beta = g.const(f"bn{i}.beta", _array(arrays, f"bn{i}.beta")) if config.norm != "none" else None
        if config.norm == "batch":
            stats = [g.const(f"bn{i}.{s}", _array(arrays, f"bn{i}.{s}")) for s in ("running_mean", "running_var")]
            x = g.op("BatchNormalization", [x, gamma, beta, *stats], name=f"bn{i}", epsilon=1e-5)
        elif config.norm == "instance" and mask is None:
            x = g.op("InstanceNormalization", [x, gamma, beta], name=f"bn{i}", epsilon=1e-5)
        elif config.norm == "instance":
            x = _masked_instance_norm(g, x, mask, count, gamma, beta, f"bn{i}")
        x = g.op("MaxPool", [g.op("Relu", [x])], name=f"pool{i}", kernel_shape=[1, 2, 2], strides=[1, 2, 2])
    # (N, C, T, H, W) -> (T, N, C*H*W), as the Gluon network flattens it
    x = g.op("Reshape", [g.op("Transpose", [x], perm=[2, 0, 1, 3, 4]), g.const("tn_flat", np.array([0, 0, -1]))])
    lengths32 = g.op("Cast", [LENGTHS], to=TensorProto.INT32) if with_lengths else None
    for gru in ("gru1", "gru2"):
        prefix = f"{gru}._unfused.0"
        w, r, b = [], [], []
        for direction in "lr":  # forward, backward
            cell = f"{prefix}.{direction}_cell"
            w.append(_gru_gates(_array(arrays, f"{cell}.i2h_weight")))
            r.append(_gru_gates(_array(arrays, f"{cell}.h2h_weight")))
            b.append(np.concatenate([_gru_gates(_array(arrays, f"{cell}.i2h_bias")),
                                     _gru_gates(_array(arrays, f"{cell}.h2h_bias"))]))
        y = g.op("GRU", [x, g.const(f"{gru}.W", np.stack(w)), g.const(f"{gru}.R", np.stack(r)),
                         g.const(f"{gru}.B", np.stack(b))] + ([lengths32] if with_lengths else []),
                 name=gru, outputs=2, hidden_size=config.hidden, direction="bidirectional", linear_before_reset=1)
        # Y is (T, 2, N, hidden); the Gluon GRU's output (T, N, 2*hidden) is forward then backward.
        x = g.op("Reshape", [g.op("Transpose", [y], perm=[0, 2, 1, 3]), g.const(f"{gru}_flat", np.array([0, 0, -1]))])
    x = g.op("Transpose", [x], perm=[1, 0, 2])  # (N, T, 2*hidden)
    x = g.op("Add", [g.op("MatMul", [x, g.const("dense.weight_t", _array(arrays, "dense.weight").T)]),
                     g.const("dense.bias", _array(arrays, "dense.bias"))], name="dense")
    g.op("LogSoftmax", [x], name=OUTPUT, axis=-1)
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, "T", config.height, config.width])]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info(LENGTHS, TensorProto.INT32, ["N"]))
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", "T", config.num_classes])]
    return helper.make_graph(g.nodes, "lipnet", inputs, outputs, g.initializers)


def _masked_instance_norm(g: _Graph, x: str, mask: str, count: str, gamma: str, beta: str, name: str) -> str:
    """Instance normalisation over each clip's real frames only (``mask`` (N, 1, T, 1, 1), ``count`` (N,) frames)."""
    axes = g.const(f"{name}.axes", np.array([2, 3, 4]))
    height_width = g.op("Slice", [g.op("Shape", [x]), g.const(f"{name}.b", np.array([3])),
                                  g.const(f"{name}.e", np.array([5]))])
    area = g.op("Mul", [g.op("Cast", [g.op("ReduceProd", [height_width], keepdims=0)], to=TensorProto.FLOAT), count])
    size = g.op("Reshape", [area, g.const(f"{name}.shape", np.array([-1, 1, 1, 1, 1]))])  # values per clip and channel
    mean = g.op("Div", [g.op("ReduceSum", [g.op("Mul", [x, mask]), axes], keepdims=1), size])
    centred = g.op("Mul", [g.op("Sub", [x, mean]), mask])
    var = g.op("Div", [g.op("ReduceSum", [g.op("Mul", [centred, centred]), axes], keepdims=1), size])
    eps = g.const(f"{name}.eps", np.array(1e-5, np.float32))
    normed = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [var, eps])])])
    shape = g.const(f"{name}.cshape", np.array([-1, 1, 1, 1]))
    scaled = g.op("Mul", [normed, g.op("Reshape", [gamma, shape])])
    return g.op("Add", [scaled, g.op("Reshape", [beta, shape])], name=name)


def build_model(config: LipNetConfig, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, object],
                with_lengths: bool = False) -> onnx.ModelProto:
    """A checked ONNX model (opset 17) with ``metadata`` as JSON-valued ``metadata_props``."""
    model = helper.make_model(build_graph(config, arrays, with_lengths), producer_name="lipnet-gluon",
                              opset_imports=[helper.make_opsetid("", OPSET)], doc_string="LipNet lipreading network")
    model.ir_version = 8  # opset 17's; onnxruntime 1.14 and newer read it
    helper.set_model_props(model, {key: json.dumps(value) for key, value in metadata.items()})
    onnx.checker.check_model(model, full_check=True)  # full_check runs strict shape inference too
    return model


def reading_metadata(config: LipNetConfig, mean: tuple[float, ...], std: tuple[float, ...], meta: Mapping,
                     source: str) -> dict[str, object]:
    """What reading with the ONNX file alone needs, from a checkpoint's config and description. The input
    normalisation is the reader's to apply (``utils.data.sentence_clips.Normaliser.recorded``), as it is for a
    checkpoint: ``input`` names it (``utils.data.light``)."""
    input_norm = recorded_input_norm(meta)
    decoder = dict(meta.get("decoder") or {"method": "greedy"})
    framing, channel_order = recorded_crop(meta)
    return {
        "lipnet.version": METADATA_VERSIONS[input_norm],
        "lipnet.config": config.to_dict(),
        "lipnet.input": {"layout": "NCTHW", "colour": channel_order.upper(), "height": config.height,
                         "width": config.width, "frames": NUM_FRAMES, "scale": SCALES[input_norm]},
        "lipnet.normalisation": {"mean": list(map(float, mean)), "std": list(map(float, std)), "input": input_norm},
        "lipnet.frame_rate": float(meta.get("frame_rate") or MODEL_FPS),
        # how its crops are cut (with ``upright`` where recorded: utils.video.roll) and ordered
        "lipnet.crop": {**(meta.get("crop") or {}), "framing": framing, "channel_order": channel_order},
        "lipnet.alphabet": alphabet_from_record(meta.get("alphabet")).to_dict(),
        "lipnet.decoder": {"method": decoder.get("method", "greedy"), "beam_width": decoder.get("beam_width"),
                           **{k: decoder[k] for k in ("lm_path", "lm_weight", "word_bonus") if k in decoder}},
        "lipnet.source": source,
        "lipnet.metrics": meta.get("metrics") or {},
        # The clips the checkpoint trained and validated on, so that scoring a data set with the ONNX file
        # selects what the checkpoint would (without it, a file scored its run's training speakers as valid).
        "lipnet.split": meta.get("split") or {},
        "lipnet.data": {k: v for k, v in (meta.get("args") or {}).items() if k in ("image_path", "align_path")},
    }
