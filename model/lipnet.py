"""The LipNet network (Assael et al., arXiv 1611.01599) as one configurable Gluon HybridBlock."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

from model.backend import mx, nn, rnn
from utils.text.grid_text import NUM_CLASSES

# A packed GRU (see GRU.pack) computes with its packed copy, so Gluon would warn on every network
# loaded for inference that the GRU's own weight matrices are unused.
warnings.filterwarnings("ignore", message=r"Parameter .*[lr]\d_[ih]2h_(weight|bias).* is not used by any computation",
                        category=UserWarning)
# The length-aware view (LipNet.padded) reads the GRUs' own matrices, so their packed copy is unused there.
warnings.filterwarnings("ignore", message=r"Parameter .*packed.* is not used by any computation", category=UserWarning)

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

    def hybrid_forward(self, F, x, mask=None, gamma=None, beta=None):  # noqa: ANN001 (Gluon's F is ndarray or symbol)
        if mask is not None:
            return self._masked(F, x, mask, gamma, beta)
        flat = x.reshape((0, 0, -1))
        one_value = F.slice_axis(F.slice_axis(flat, axis=0, begin=0, end=1), axis=1, begin=0, end=1).reshape(-1)
        unit = F.ones_like(one_value)  # layer-norm scale of 1 and shift of 0 over the flattened axis
        normed = F.LayerNorm(flat, unit, F.zeros_like(one_value), axis=-1, eps=self.epsilon)
        return F.Convolution(F.reshape_like(normed, x), gamma.reshape((-1, 1, 1, 1, 1)), beta, kernel=(1, 1, 1),
                             num_filter=self.channels, num_group=self.channels)

    def _masked(self, F, x, mask, gamma, beta):  # noqa: ANN001, ANN202
        """Statistics over the frames that ``mask`` (N, 1, T, 1, 1) keeps, so padding does not shift them."""
        full = F.broadcast_like(mask, x)
        count = F.sum(full, axis=(2, 3, 4), keepdims=True)
        mean = F.broadcast_div(F.sum(x * full, axis=(2, 3, 4), keepdims=True), count)
        centred = F.broadcast_sub(x, mean) * full
        var = F.broadcast_div(F.sum(F.square(centred), axis=(2, 3, 4), keepdims=True), count)
        normed = F.broadcast_div(centred, F.sqrt(var + self.epsilon))
        return F.broadcast_add(F.broadcast_mul(normed, gamma.reshape((1, -1, 1, 1, 1))), beta.reshape((1, -1, 1, 1, 1)))


class GRU(rnn.GRU):
    """Gluon's fused bidirectional GRU (TNC layout) that can be packed for inference and can read
    padded sequences.

    Gluon concatenates a fused RNN's weight matrices into one vector on every call; at batch 1
    on a CPU that was 19 ms of the paper network's 120 ms. ``pack`` does it once, for a network
    whose weights no longer change; the parameters and their names stay as they are.

    Called with ``sequence_length`` (N,), the backward direction reads each sequence from its own
    last valid step instead of from the padding: MXNet 1.9.1's fused RNN takes sequence lengths
    only with cuDNN, so the two directions run as two unidirectional GRUs with the same weights,
    the backward one over each sequence reversed within its length (``SequenceReverse``). The
    forward direction needs nothing: its outputs before a length never see what follows it.
    """

    def __init__(self, hidden_size: int, input_size: int) -> None:
        super().__init__(hidden_size, bidirectional=True, layout="TNC", input_size=input_size,
                         use_sequence_length=True,  # lets Gluon pass sequence_length through (or None)
                         h2h_weight_initializer=mx.init.Orthogonal(), i2h_weight_initializer=mx.init.Xavier())
        self.one_hot_steps = False  # set only while ``_OneHotSteps`` traces its graph

    def _names(self, directions: str = "lr") -> list[str]:
        return [f"{d}{layer}_{g}_{t}" for t in ("weight", "bias") for layer in range(self._num_layers)
                for d in directions for g in ("i2h", "h2h")]

    def pack(self, ctxs: list[mx.Context]) -> None:
        flat = mx.nd.concat(*[self._reg_params[n].data().reshape(-1).as_in_context(mx.cpu()) for n in self._names()],
                            dim=0)
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

    def _run_one_hot_steps(self, F, inputs, state, params):  # noqa: ANN001, ANN202
        """The same GRU with its input projection taken out of the fused operator: one matrix product
        gives every step's projection ``P`` (T*N, 3H) per direction, and the operator then reads one-hot
        steps (step k is column k of the identity) with ``P`` transposed as its input weights, so that
        step k's input term is exactly row k of ``P``. With MXNet 1.9.1's oneDNN GRU at batch 1, the
        input term costs each step a pass over the whole input matrix (1728 x 768 per direction in
        the paper network: its first GRU took 18 ms, against 5.6 ms this way, same outputs); it
        pays only while T*N is below the input size (``LipNet.read`` checks)."""
        steps = inputs.reshape((-3, 0))  # (T*N, C)
        flat = []
        for d in "lr":
            projected = F.FullyConnected(steps, params[f"{d}0_i2h_weight"], no_bias=True, flatten=False,
                                         num_hidden=3 * self._hidden_size)
            flat += [projected.transpose().reshape(-1), params[f"{d}0_h2h_weight"].reshape(-1)]
        flat += [params[n].reshape(-1) for n in self._names() if n.endswith("bias")]
        index = F.contrib.arange_like(steps, axis=0)
        one_hot = F.broadcast_equal(index.reshape((-1, 1)), index.reshape((1, -1)))
        one_hot = F.reshape_like(one_hot, inputs, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)  # (T, N, T*N)
        return self._run(F, one_hot, F.concat(*flat, dim=0), state, True)

    def _run(self, F, inputs, flat, state, bidirectional: bool):  # noqa: ANN001, ANN202
        """The fused RNN operator as Gluon calls it (so exported graphs keep the same node)."""
        return F.RNN(inputs, flat, state, state_size=self._hidden_size, num_layers=self._num_layers,
                     bidirectional=bidirectional, p=0.0, state_outputs=True, mode="gru")[0]

    def _forward_kernel(self, F, inputs, states, sequence_length, **kwargs):  # noqa: ANN001, ANN202 (Gluon's)
        concat = F._internal._rnn_param_concat
        if sequence_length is None and self.one_hot_steps:
            return self._run_one_hot_steps(F, inputs, states[0], kwargs), states
        if sequence_length is None:
            flat = kwargs.get("packed")
            if flat is None:
                flat = concat(*[kwargs[n].reshape(-1) for n in self._names()], dim=0)
            return self._run(F, inputs, flat, states[0], True), states
        if self._num_layers != 1:
            raise ValueError("sequence lengths are implemented for one-layer GRUs")
        forward_flat = concat(*[kwargs[n].reshape(-1) for n in self._names("l")], dim=0)
        backward_flat = concat(*[kwargs[n].reshape(-1) for n in self._names("r")], dim=0)
        # Zero starting states of one direction; a symbol's batch size (0) is filled in by the RNN's shape
        # inference, which a slice of Gluon's two-direction states would hide from it.
        start = F.zeros((1, inputs.shape[1], self._hidden_size), ctx=inputs.context) if F is mx.nd \
            else F.zeros(shape=(1, 0, self._hidden_size))
        forward = self._run(F, inputs, forward_flat, start, False)
        reversed_inputs = F.SequenceReverse(inputs, sequence_length, use_sequence_length=True)
        backward = self._run(F, reversed_inputs, backward_flat, start, False)
        backward = F.SequenceReverse(backward, sequence_length, use_sequence_length=True)
        return F.concat(forward, backward, dim=2), states


class LipNet(nn.HybridBlock):
    """STCNN x3 -> Bi-GRU x2 -> Dense; input (N, 3, T, H, W), output log-probabilities (N, T, classes).

    Attribute names (conv1, bn1, ..., gru1, gru2, dense) are the original example's, so its
    parameter file loads into ``variant='example'`` unchanged.
    """

    def __init__(self, config: LipNetConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        self._hybrid_flags: dict | None = None
        self._padded_view = _Unregistered()
        self._one_hot_view = _Unregistered()  # made by prepare_for_inference on the CPU
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

    def _stage(self, F: object, x: object, conv: nn.Conv3D, norm: nn.Block | None, mask: object = None) -> object:
        x = conv(x)
        if isinstance(norm, nn.BatchNorm):
            x = F.reshape_like(norm(x.reshape((0, 0, 0, -1))), x)
        elif norm is not None:
            x = norm(x) if mask is None else norm(x, mask)
        # ReLU and dropout after the max-pooling, on a quarter of the values: both commute with the max
        # (ReLU is monotone, dropout's mask is one non-negative factor per feature map), so values and
        # gradients are those of the paper's order (ReLU, dropout, pooling).
        x = self.dropout(F.Activation(self.pool(x), act_type="relu"))
        return x if mask is None else F.broadcast_mul(x, mask)

    def hybrid_forward(self, F, x, lengths=None):  # noqa: ANN001 (Gluon's F is ndarray or symbol)
        mask = None
        if lengths is not None:
            # (N, 1, T, 1, 1): 1 on each clip's frames, 0 on its padding. Zeroing the padding before
            # every convolution makes a clip's last frames see what a clip alone sees there (the
            # convolution's zero padding); a kernel 3 in time would otherwise carry the padding
            # three frames into the clip.
            steps = F.contrib.arange_like(x, axis=2).reshape((1, -1))
            mask = F.broadcast_lesser(steps, lengths.reshape((-1, 1))).reshape((0, 1, -1, 1, 1))
            x = F.broadcast_mul(x, mask)
        normed = self.config.norm != "none"
        x = self._stage(F, x, self.conv1, self.bn1 if normed else None, mask)
        x = self._stage(F, x, self.conv2, self.bn2 if normed else None, mask)
        x = self._stage(F, x, self.conv3, self.bn3 if normed else None, mask)
        x = F.transpose(x, (2, 0, 1, 3, 4)).reshape((0, 0, -1))  # (T, N, C*H*W)
        x = self.gru2(self.gru1(x, None, lengths), None, lengths)
        x = self.dense(x)
        return F.log_softmax(F.transpose(x, (1, 0, 2)), axis=-1)  # (N, T, classes)

    @property
    def padded(self) -> _Padded:
        """The same network, called as ``net.padded(data, lengths)``, that reads each clip only up to its
        length: padding then never changes a clip's outputs over its frames (with ``norm='batch'`` in
        inference mode; in training, batch statistics include the padding).

        A separate cached graph: a hybridized block has one input signature, and the fused
        bidirectional GRU of ``net(data)`` is kept for batches of full-length clips (see ``read``).
        """
        if self._padded_view.block is None:
            view = _Padded(self)
            if self._hybrid_flags is not None:
                view.hybridize(**self._hybrid_flags)
            self._padded_view.block = view
        return self._padded_view.block

    def hybridize(self, active: bool = True, **kwargs: object) -> None:
        super().hybridize(active, **kwargs)
        self._hybrid_flags = dict(active=active, **kwargs)
        for view in (self._padded_view.block, self._one_hot_view.block):
            if view is not None:
                view.hybridize(active, **kwargs)

    def read(self, data: mx.nd.NDArray, lengths: mx.nd.NDArray | None = None) -> mx.nd.NDArray:
        """Log-probabilities (N, T, classes) of a batch whose clips have ``lengths`` frames (None: all T).

        A batch of full-length clips goes through ``net(data)`` (the fused bidirectional GRU), anything
        shorter through ``net.padded``; both give the same values where both apply. After
        ``prepare_for_inference`` on the CPU, a small batch of full-length clips (N*T steps at most the
        GRUs' smallest input size) goes through the GRUs' one-hot form (``GRU._run_one_hot_steps``).
        """
        if lengths is not None and float(lengths.min().asscalar()) < data.shape[2]:
            return self.padded(data, lengths)
        one_hot = self._one_hot_view.block
        if one_hot is not None and data.shape[0] * data.shape[2] <= min(g._input_size for g in (self.gru1, self.gru2)):
            return one_hot(data)
        return self(data)


class _Padded(nn.HybridBlock):
    """A second entry point into a LipNet's graph, with sequence lengths; owns no parameters."""

    def __init__(self, net: LipNet) -> None:
        super().__init__(prefix=net.prefix + "padded_")
        self._net = _Unregistered(net)  # not a child, so hybridizing the net cannot recurse into it

    def collect_params(self, select: str | None = None) -> mx.gluon.ParameterDict:
        return self._net.block.collect_params(select)

    def hybrid_forward(self, F, x, lengths):  # noqa: ANN001
        return self._net.block.hybrid_forward(F, x, lengths)


class _OneHotSteps(nn.HybridBlock):
    """A third entry point into a LipNet's graph, whose GRUs take their input projection out of the fused
    operator (``GRU._run_one_hot_steps``); owns no parameters."""

    def __init__(self, net: LipNet) -> None:
        super().__init__(prefix=net.prefix + "one_hot_")
        self._net = _Unregistered(net)

    def collect_params(self, select: str | None = None) -> mx.gluon.ParameterDict:
        return self._net.block.collect_params(select)

    def hybrid_forward(self, F, x):  # noqa: ANN001
        net = self._net.block
        grus = (net.gru1, net.gru2)
        for gru in grus:  # read while this graph is traced, once
            gru.one_hot_steps = True
        try:
            return net.hybrid_forward(F, x)
        finally:
            for gru in grus:
                gru.one_hot_steps = False


class _Unregistered:
    """Holds a block that Gluon must not register as a child (a Block attribute, or one in a list, would be)."""

    def __init__(self, block: nn.HybridBlock | None = None) -> None:
        self.block = block


def prepare_for_inference(net: LipNet, ctxs: list[mx.Context]) -> None:
    """Hybridize for inference, with the GRU weights packed once; on the CPU also let oneDNN rewrite
    the graph (its own convolution operators, dropout dropped), with the same outputs. Call it after
    the weights are loaded; train no further.

    ``static_shape`` lets MXNet keep the fused GRUs' operator state from one call to the next, and with it
    oneDNN's copy of their weights, reordered into its own layout; without it MXNet 1.9.1 makes that
    state afresh, reordering the weights again, on every call. A call with other input shapes than
    the last plans the graph again."""
    for gru in (net.gru1, net.gru2):
        gru.pack(ctxs)
    fuse = all(c.device_type == "cpu" for c in ctxs) and mx.runtime.Features().is_enabled("MKLDNN")
    if all(c.device_type == "cpu" for c in ctxs) and net._one_hot_view.block is None:
        net._one_hot_view.block = _OneHotSteps(net)
    net.hybridize(static_alloc=True, static_shape=True, backend="MKLDNN" if fuse else None)
