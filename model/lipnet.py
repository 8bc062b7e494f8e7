"""The LipNet network (Assael et al., arXiv 1611.01599) as one configurable Gluon HybridBlock."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import mxnet as mx
from mxnet.gluon import nn, rnn

from utils.text.grid_text import NUM_CLASSES

# A packed GRU (see GRU.pack) computes with its packed copy, so Gluon would warn on every network
# loaded for inference that the GRU's own weight matrices are unused.
warnings.filterwarnings("ignore", message=r"Parameter .*[lr]\d_[ih]2h_(weight|bias).* is not used by any computation",
                        category=UserWarning)

VARIANTS = ("paper", "example")
NORMS = ("none", "instance", "batch")


@dataclass
class LipNetConfig:
    """Everything that fixes the network's shape; stored in checkpoints so loading needs no flags.

    ``paper`` follows the paper: no normalisation, conv3 padding (1,1,1). ``example`` reproduces
    the original Apache MXNet example (InstanceNorm after each convolution, conv3 padding (1,2,2)),
    whose published checkpoint then loads name for name.
    """

    variant: str = "paper"
    channels: tuple[int, int, int] = (32, 64, 96)
    hidden: int = 256
    dropout: float = 0.5
    height: int = 50
    width: int = 100
    num_classes: int = NUM_CLASSES
    norm: str | None = None  # None: the variant's own ("none" for paper, "instance" for example); or "batch"
    conv3_padding: tuple[int, int, int] | None = None  # None: the variant's own

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown LipNet variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        self.channels = tuple(self.channels)
        if self.norm is None:
            self.norm = "instance" if self.variant == "example" else "none"
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.conv3_padding is None:
            self.conv3_padding = (1, 2, 2) if self.variant == "example" else (1, 1, 1)
        self.conv3_padding = tuple(self.conv3_padding)

    def feature_size(self) -> tuple[int, int]:
        """Height and width after the three conv/pool stages."""
        def conv(n: int, k: int, s: int, p: int) -> int:
            return (n + 2 * p - k) // s + 1

        h, w = self.height, self.width
        h, w = conv(h, 5, 2, 2) // 2, conv(w, 5, 2, 2) // 2
        h, w = conv(h, 5, 1, 2) // 2, conv(w, 5, 1, 2) // 2
        _, ph, pw = self.conv3_padding
        h, w = conv(h, 3, 1, ph) // 2, conv(w, 3, 1, pw) // 2
        if h <= 0 or w <= 0:
            raise ValueError(f"input {self.width}x{self.height} is too small for three conv/pool stages")
        return h, w

    def to_dict(self) -> dict:
        return asdict(self)


class InstanceNorm(nn.HybridBlock):
    """Instance normalisation of (N, C, ...) input, with the same parameters (``gamma``, ``beta``) and
    values as ``nn.InstanceNorm``, 1.6-3.6x faster to train on MXNet 1.9.1's CPU build.

    Normalising each (sample, channel) over everything else is a layer normalisation of the
    (N, C, rest) view over its last axis, for which MXNet has a fast kernel. The per-channel scale
    and shift are a depthwise 1x1x1 convolution: as broadcasts, their backward pass (a reduction
    over all but one axis) took longer than the rest of the layer.
    """

    def __init__(self, in_channels: int, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.channels = in_channels
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=(in_channels,), init="ones", differentiable=False)
            self.beta = self.params.get("beta", shape=(in_channels,), init="zeros")

    def hybrid_forward(self, F, x, gamma, beta):  # noqa: ANN001 (Gluon's F is ndarray or symbol)
        flat = x.reshape((0, 0, -1))
        one_value = F.slice_axis(F.slice_axis(flat, axis=0, begin=0, end=1), axis=1, begin=0, end=1).reshape(-1)
        unit = F.ones_like(one_value)  # layer-norm scale of 1 and shift of 0 over the flattened axis
        normed = F.LayerNorm(flat, unit, F.zeros_like(one_value), axis=-1, eps=self.epsilon)
        return F.Convolution(F.reshape_like(normed, x), gamma.reshape((-1, 1, 1, 1, 1)), beta, kernel=(1, 1, 1),
                             num_filter=self.channels, num_group=self.channels)


class GRU(rnn.GRU):
    """Gluon's fused bidirectional GRU (TNC layout) that can be packed for inference.

    Gluon concatenates a fused RNN's weight matrices into one vector on every call; at batch 1
    on a CPU that was 19 ms of the paper network's 120 ms. ``pack`` does it once, for a network
    whose weights no longer change; the parameters and their names stay as they are.
    """

    def __init__(self, hidden_size: int, input_size: int) -> None:
        super().__init__(hidden_size, bidirectional=True, layout="TNC", input_size=input_size,
                         h2h_weight_initializer=mx.init.Orthogonal(), i2h_weight_initializer=mx.init.Xavier())

    def pack(self, ctxs: list[mx.Context]) -> None:
        names = [f"{d}{layer}_{g}_{t}" for t in ("weight", "bias") for layer in range(self._num_layers)
                 for d in "lr"[:self._dir] for g in ("i2h", "h2h")]
        flat = mx.nd.concat(*[self._reg_params[n].data().reshape(-1).as_in_context(mx.cpu()) for n in names], dim=0)
        if "packed" in self._reg_params:
            self.packed.set_data(flat)
        else:
            with self.name_scope():
                self.packed = self.params.get_constant("packed", flat)
            self.packed.initialize(ctx=ctxs)
        self._clear_cached_op()

    def _collect_params_with_prefix(self, prefix: str = "") -> dict:
        """The GRU's own parameters under their usual names: the packed copy is derived, never saved."""
        everything = self._reg_params
        self._reg_params = {k: v for k, v in everything.items() if k != "packed"}
        try:
            return super()._collect_params_with_prefix(prefix)
        finally:
            self._reg_params = everything

    def _forward_kernel(self, F, inputs, states, sequence_length, **kwargs):  # noqa: ANN001, ANN202 (Gluon's)
        packed = kwargs.get("packed")
        if packed is None:
            return super()._forward_kernel(F, inputs, states, sequence_length, **kwargs)
        out = F.RNN(inputs, packed, *states, state_size=self._hidden_size, num_layers=self._num_layers,
                    bidirectional=self._dir == 2, p=0.0, state_outputs=True, mode="gru")
        return out[0], [out[1]]


class LipNet(nn.HybridBlock):
    """STCNN x3 -> Bi-GRU x2 -> Dense; input (N, 3, T, H, W), output log-probabilities (N, T, classes).

    Attribute names (conv1, bn1, ..., gru1, gru2, dense) are the original example's, so its
    parameter file loads into ``variant='example'`` unchanged.
    """

    def __init__(self, config: LipNetConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        self.config = config or LipNetConfig(**kwargs)
        cfg = self.config
        c1, c2, c3 = cfg.channels
        fh, fw = cfg.feature_size()
        conv_init = mx.init.MSRAPrelu(factor_type="in", slope=0.0)
        with self.name_scope():
            self.conv1 = nn.Conv3D(c1, (3, 5, 5), strides=(1, 2, 2), padding=(1, 2, 2),
                                   in_channels=3, weight_initializer=conv_init)
            self.conv2 = nn.Conv3D(c2, (3, 5, 5), strides=(1, 1, 1), padding=(1, 2, 2),
                                   in_channels=c1, weight_initializer=conv_init)
            self.conv3 = nn.Conv3D(c3, (3, 3, 3), strides=(1, 1, 1), padding=cfg.conv3_padding,
                                   in_channels=c2, weight_initializer=conv_init)
            if cfg.norm == "instance":
                self.bn1 = InstanceNorm(c1)
                self.bn2 = InstanceNorm(c2)
                self.bn3 = InstanceNorm(c3)
            elif cfg.norm == "batch":
                # Applied to a 4-D view (N, C, T, H*W): BatchNorm on 5-D input fails in backward with
                # oneDNN on MXNet 1.9.1's CPU build, and on 4-D it is 3x faster than InstanceNorm.
                self.bn1 = nn.BatchNorm(in_channels=c1)
                self.bn2 = nn.BatchNorm(in_channels=c2)
                self.bn3 = nn.BatchNorm(in_channels=c3)
            # Channel-wise (spatial) dropout: one mask per feature map, shared over T, H and W.
            self.dropout = nn.Dropout(cfg.dropout, axes=(2, 3, 4))
            self.pool = nn.MaxPool3D((1, 2, 2), (1, 2, 2))
            self.gru1 = GRU(cfg.hidden, input_size=c3 * fh * fw)
            self.gru2 = GRU(cfg.hidden, input_size=2 * cfg.hidden)
            self.dense = nn.Dense(cfg.num_classes, flatten=False, in_units=2 * cfg.hidden)

    def _stage(self, F: object, x: object, conv: nn.Conv3D, norm: nn.Block | None) -> object:
        x = conv(x)
        if isinstance(norm, nn.BatchNorm):
            x = F.reshape_like(norm(x.reshape((0, 0, 0, -1))), x)
        elif norm is not None:
            x = norm(x)
        # Activation rather than relu: oneDNN's inference graph pass (hybridize(backend="MKLDNN")) fuses
        # only Activation into the convolution, which makes CPU inference 1.8x faster; same values.
        return self.pool(self.dropout(F.Activation(x, act_type="relu")))

    def hybrid_forward(self, F, x):  # noqa: ANN001 (Gluon's F is ndarray or symbol)
        normed = self.config.norm != "none"
        x = self._stage(F, x, self.conv1, self.bn1 if normed else None)
        x = self._stage(F, x, self.conv2, self.bn2 if normed else None)
        x = self._stage(F, x, self.conv3, self.bn3 if normed else None)
        x = F.transpose(x, (2, 0, 1, 3, 4)).reshape((0, 0, -1))  # (T, N, C*H*W)
        x = self.gru2(self.gru1(x))
        x = self.dense(x)
        return F.log_softmax(F.transpose(x, (1, 0, 2)), axis=-1)  # (N, T, classes)


def prepare_for_inference(net: LipNet, ctxs: list[mx.Context]) -> None:
    """Hybridize for inference, with the GRU weights packed once; on the CPU also let oneDNN rewrite
    the graph (each convolution fused with its ReLU, dropout dropped), which halves the network's
    time per clip with the same outputs. Call it after the weights are loaded; train no further."""
    for gru in (net.gru1, net.gru2):
        gru.pack(ctxs)
    fuse = all(c.device_type == "cpu" for c in ctxs) and mx.runtime.Features().is_enabled("MKLDNN")
    net.hybridize(static_alloc=True, backend="MKLDNN" if fuse else None)
