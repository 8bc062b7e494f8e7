"""Word-level lipreading network: 3-D front-end, ResNet-18 per frame, multi-scale TCN, word classes.

The recipe of "Lipreading using Temporal Convolutional Networks" (Martinez et al., ICASSP 2020),
configuration ``lrw_resnet18_mstcn``, as one Gluon HybridBlock:

- front-end: Conv3D(1->64, 5x7x7, stride 1x2x2, padding 2x3x3, no bias), batch norm, activation,
  max-pool 1x3x3 (stride 1x2x2, padding 0x1x1);
- trunk: ResNet-18's four stages of two BasicBlocks (64-128-256-512 channels) on every frame,
  global average pooling to one 512-vector per frame;
- back-end: a multi-scale TCN of ``tcn_num_layers`` blocks with dilation 1, 2, 4, 8. Each block
  runs one branch per kernel size (3, 5, 7), each a dilated temporal convolution + batch norm + activation with
  "same" padding (the reference pads by (k-1)*d and chomps half of it from each end: the same
  thing), concatenates the branches, does that twice with dropout after each, and adds a 1x1
  convolution of its input (every block has one: the reference compares ``n_inputs // branches``
  with ``n_outputs``, which never agree for 768 channels over 3 branches) before a last activation;
- the TCN's output averaged over each clip's real frames, then a linear layer to the words.

With 500 classes and the reference configuration this has 36,361,396 trainable parameters
(batch-norm running statistics excluded), the reference PyTorch implementation's count
(``tests/model/test_word_net.py``). ``width_mult`` (scales the trunk; the reference uses it only for its
ShuffleNet trunk) and a fractional ``tcn_width_mult`` give the small models of the tests.

MXNet 1.9.1's oneDNN batch norm fails in backward on 5-D input, so the front-end's output is
folded to (N*T, C, H, W) before its batch norm: per-channel statistics over N, T, H and W are
the same either way, and the 1x3x3 max-pool is a 2-D pool of each frame. Its batch norm after a
Conv1D on (N, C, T) fails likewise ("Check failed: !is_view" once channels reach 16), so the TCN
runs on (N, C, T, 1) with (k, 1) Conv2D kernels: the same arithmetic and parameter count.

The front-end is one 2-D convolution of stacked neighbour frames (``FrameStackConv``, no 5-D transpose),
the last stage's and the TCN's convolutions are an im2col and a matrix product (``GemmConv``), and swish
uses oneDNN's sigmoid: each computes the same sums as the plain form (``tests/model/test_word_net.py``
checks outputs and gradients) in less CPU time (``bench/words.py``; docs/speed.md gives the figures).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from model.backend import mx, nn

RELU_TYPES = ("relu", "prelu", "swish")
TCN_HIDDEN = 256  # channels per kernel size at tcn_width_mult 1 (the reference's hidden_dim)
TRUNK_CHANNELS = (64, 128, 256, 512)
# The reference initialises convolutions with N(0, sqrt(2 / (k * out_channels))): MSRA, fan-out.
_CONV_INIT = mx.init.MSRAPrelu(factor_type="out", slope=0.0)


@dataclass
class WordNetConfig:
    """Everything that fixes the network's shape; stored in checkpoints so loading needs no flags."""

    num_classes: int = 500
    relu_type: str = "swish"
    width_mult: float = 1.0
    tcn_kernel_size: tuple[int, ...] = (3, 5, 7)
    tcn_num_layers: int = 4
    tcn_width_mult: float = 1.0
    tcn_dropout: float = 0.2
    tcn_dwpw: bool = False
    frames: int = 29  # clip length the network is trained on (LRW: 29 frames)
    size: int = 88  # side of the square crop it reads (LRW recipe: 88 from 96)

    def __post_init__(self) -> None:
        if self.relu_type not in RELU_TYPES:
            raise ValueError(f"relu_type must be one of {', '.join(RELU_TYPES)}, got {self.relu_type!r}")
        self.tcn_kernel_size = tuple(int(k) for k in self.tcn_kernel_size)
        if not self.tcn_kernel_size or any(k < 1 or k % 2 == 0 for k in self.tcn_kernel_size):
            raise ValueError(f"tcn_kernel_size must be odd sizes, got {list(self.tcn_kernel_size)}")
        if self.num_classes < 2 or self.tcn_num_layers < 1 or self.width_mult <= 0 or self.tcn_width_mult <= 0:
            raise ValueError("num_classes must be at least 2, tcn_num_layers at least 1 and the width "
                             "multipliers positive")
        if not 0 <= self.tcn_dropout < 1:
            raise ValueError(f"tcn_dropout must be in [0, 1), got {self.tcn_dropout}")

    def trunk_channels(self) -> tuple[int, ...]:
        return tuple(max(int(c * self.width_mult), 1) for c in TRUNK_CHANNELS)

    def tcn_branch_channels(self) -> int:
        return max(int(TCN_HIDDEN * self.tcn_width_mult), 1)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["tcn_kernel_size"] = list(self.tcn_kernel_size)
        return out


def activation(relu_type: str, channels: int) -> nn.HybridBlock:
    if relu_type == "prelu":
        return nn.PReLU(in_channels=channels)
    if relu_type == "swish":
        return Swish()
    return nn.Activation("relu")


class Swish(nn.HybridBlock):
    """``x * sigmoid(x)`` (Gluon's ``nn.Swish`` with its fixed beta of 1), the sigmoid taken by oneDNN.

    ``nn.Swish`` computes ``x * sigmoid(1.0 * x)`` with MXNet's own ``sigmoid``: a scalar product, a
    scalar exp per element and their backward passes. ``Activation(act_type="sigmoid")`` runs oneDNN's
    vectorised eltwise kernel forward and backward, and the product by one is gone.
    """

    def hybrid_forward(self, F, x):  # noqa: ANN001 (Gluon's F is ndarray or symbol)
        return x * F.Activation(x, act_type="sigmoid")


class FrameStackConv(nn.HybridBlock):
    """The front-end's Conv3D(1->C, kt x k x k, stride 1 x s x s, padding kt//2 x k//2 x k//2, no bias),
    computed per frame: each frame's kt neighbours (zeros past either end) stacked as kt channels, one
    2-D convolution of every frame with the (C, 1, kt, k, k) weight seen as (C, kt, k, k).

    (N, 1, T, H, W) -> (N*T, C, H/s, W/s): the frames come out batched as the ResNet trunk reads them.
    MXNet 1.9.1's Conv3D output had to be transposed to (N*T, C, H, W) in the plain layout (one more pass
    over the largest tensor), and its batch norm then ran oneDNN's slow plain-layout kernel; the 2-D
    convolution writes oneDNN's blocked layout directly. Both forms take the weight gradient with
    oneDNN's im2col + GEMM kernel at 5 input channels; at 8 (``training_kernels``) with its blocked
    AVX2 kernel: forward and backward over 232 frames 1.7-2.5 s instead of 3.8-6.6 s (2 threads, under
    load), for a forward of 0.75 s instead of 0.53 s, so reading keeps 5.
    """

    def __init__(self, channels: int, kernel: tuple[int, int, int], stride: int) -> None:
        super().__init__()
        self._channels, self._kernel, self._stride = channels, kernel, stride
        self.training_kernels = True  # 8 channels (see hybrid_forward); prepare_word_net turns it off
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(channels, 1) + kernel, init=_CONV_INIT)

    def hybrid_forward(self, F, x, weight):  # noqa: ANN001
        kt, kh, kw = self._kernel
        half = kt // 2
        padded = F.pad(x, mode="constant", pad_width=(0, 0, 0, 0, half, half, 0, 0, 0, 0))  # (N, 1, T+kt-1, H, W)
        # Frame t's neighbours t-half..t+half, each (N, 1, T, H, W), stacked to (N, 1, T, kt, H, W).
        shifted = [F.slice_axis(padded, axis=2, begin=i, end=(i - 2 * half) or None) for i in range(kt)]
        weight = weight.reshape((0, -3, -2))  # (C, kt, k, k)
        if self.training_kernels and kt % 8:
            # Zero frames and zero weights up to a multiple of 8 channels: the same sums, and oneDNN then takes
            # the weight gradient with its blocked AVX2 kernel instead of im2col + GEMM (see above).
            extra = 8 - kt % 8
            shifted += [F.zeros_like(shifted[0])] * extra
            weight = F.concat(weight, F.zeros_like(F.slice_axis(weight, axis=1, begin=0, end=1)).tile((1, extra, 1, 1)),
                              dim=1)
        frames = F.stack(*shifted, axis=3).reshape((-3, -2)).reshape((-3, -2))  # (N*T, channels, H, W)
        return F.Convolution(frames, weight, kernel=(kh, kw), stride=(self._stride,) * 2,
                             pad=(kh // 2, kw // 2), num_filter=self._channels, no_bias=True)


class GemmConv(nn.HybridBlock):
    """``nn.Conv2D`` with "same" padding and stride 1 (the same ``weight`` and ``bias``) as im2col and one
    matrix product (``FullyConnected``): for the maps where oneDNN's direct AVX2 kernels do poorly.

    - The TCN's (k, 1) convolutions of (N, 768, T, 1): a (7, 1) kernel at dilation 4 over a batch of 8
      took 87-96 ms of CPU forward and backward, 57-66 ms as a matrix product; at batch 1, forward, 5-6 ms
      and 3-4 ms (one thread, alternated 5 times, under load). Always a matrix product.
    - The last stage's 3x3 convolutions of 512 channels on 3x3 maps: over 232 frames 1.0-1.4 s of CPU
      forward and backward, 0.7-1.0 s as a matrix product (alternated 4 times), but its forward alone is
      slower, as is the third stage's 6x6 (0.8-0.9 s against 0.4-0.6 s): with ``direct_inference``
      ``prepare_word_net`` turns it back into oneDNN's convolution for reading (``training_kernels``).
    """

    def __init__(self, channels: int, in_channels: int, kernel: tuple[int, int] = (3, 3), dilation: int = 1,
                 use_bias: bool = False, direct_inference: bool = False) -> None:
        super().__init__()
        pad = tuple((k - 1) * dilation // 2 for k in kernel)
        self._conv = {"kernel": kernel, "pad": pad, "dilate": (dilation, dilation), "num_filter": channels,
                      "no_bias": not use_bias}
        self._direct_inference = direct_inference
        self.training_kernels = True
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(channels, in_channels) + kernel, init=_CONV_INIT)
            self.bias = self.params.get("bias", shape=(channels,), init="zeros") if use_bias else None

    def hybrid_forward(self, F, x, weight, bias=None):  # noqa: ANN001
        if self._direct_inference and not self.training_kernels:
            return F.Convolution(x, weight, bias, **self._conv)
        cols = F.im2col(x, kernel=self._conv["kernel"], pad=self._conv["pad"], dilate=self._conv["dilate"])
        cols = cols.transpose((0, 2, 1))  # (N, H*W, C*kh*kw)
        out = F.FullyConnected(cols.reshape((-3, -2)), weight.reshape((0, -1)), bias,
                               num_hidden=self._conv["num_filter"], no_bias=self._conv["no_bias"])  # (N*H*W, out)
        out = F.reshape_like(out, cols, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2).transpose((0, 2, 1))
        return F.reshape_like(out, x, lhs_begin=2, lhs_end=3, rhs_begin=2, rhs_end=4)  # (N, out, H, W)


class BasicBlock(nn.HybridBlock):
    """ResNet's two 3x3 convolutions with a shortcut (a strided 1x1 convolution + BN where the shape changes).
    ``gemm``: its stride-1 3x3 convolutions are ``GemmConv``s (the last stage)."""

    def __init__(self, in_channels: int, channels: int, stride: int, relu_type: str, gemm: bool = False) -> None:
        super().__init__()
        with self.name_scope():
            if gemm and stride == 1:
                self.conv1 = GemmConv(channels, in_channels, direct_inference=True)
            else:
                self.conv1 = nn.Conv2D(channels, 3, stride, 1, use_bias=False, in_channels=in_channels,
                                       weight_initializer=_CONV_INIT)
            self.bn1 = nn.BatchNorm(in_channels=channels)
            self.act1 = activation(relu_type, channels)
            if gemm:
                self.conv2 = GemmConv(channels, channels, direct_inference=True)
            else:
                self.conv2 = nn.Conv2D(channels, 3, 1, 1, use_bias=False, in_channels=channels,
                                       weight_initializer=_CONV_INIT)
            self.bn2 = nn.BatchNorm(in_channels=channels)
            self.act2 = activation(relu_type, channels)
            self.downsample = None
            if stride != 1 or in_channels != channels:
                self.downsample = nn.HybridSequential()
                self.downsample.add(nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels,
                                              weight_initializer=_CONV_INIT),
                                    nn.BatchNorm(in_channels=channels))

    def hybrid_forward(self, F, x):  # noqa: ANN001 (Gluon's F is ndarray or symbol)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + shortcut)


class TemporalBranches(nn.HybridBlock):
    """One Conv1D + BN + activation per kernel size, concatenated along channels ("same" padding).

    With ``dwpw`` each branch is a depthwise convolution (+ BN + activation) followed by a
    pointwise one, as the reference's ``tcn_dwpw`` option.
    """

    def __init__(self, in_channels: int, branch_channels: int, kernel_sizes: tuple[int, ...], dilation: int,
                 relu_type: str, dwpw: bool) -> None:
        super().__init__()
        with self.name_scope():
            self.branches = nn.HybridSequential()
            for k in kernel_sizes:
                pad = (k - 1) * dilation // 2
                branch = nn.HybridSequential()
                if dwpw:
                    branch.add(nn.Conv2D(in_channels, (k, 1), 1, (pad, 0), (dilation, 1), groups=in_channels,
                                         use_bias=False, in_channels=in_channels, weight_initializer=_CONV_INIT),
                               nn.BatchNorm(in_channels=in_channels), activation(relu_type, in_channels),
                               nn.Conv2D(branch_channels, 1, use_bias=False, in_channels=in_channels,
                                         weight_initializer=_CONV_INIT))
                else:
                    branch.add(GemmConv(branch_channels, in_channels, (k, 1), dilation, use_bias=True))
                branch.add(nn.BatchNorm(in_channels=branch_channels), activation(relu_type, branch_channels))
                self.branches.add(branch)

    def hybrid_forward(self, F, x):  # noqa: ANN001
        outs = [branch(x) for branch in self.branches]
        return outs[0] if len(outs) == 1 else F.concat(*outs, dim=1)


class MultiscaleBlock(nn.HybridBlock):
    """Two multi-branch convolutions with dropout, a 1x1-convolution shortcut and a last activation."""

    def __init__(self, in_channels: int, branch_channels: int, kernel_sizes: tuple[int, ...], dilation: int,
                 dropout: float, relu_type: str, dwpw: bool) -> None:
        super().__init__()
        out_channels = branch_channels * len(kernel_sizes)
        with self.name_scope():
            self.branches0 = TemporalBranches(in_channels, branch_channels, kernel_sizes, dilation, relu_type, dwpw)
            self.dropout0 = nn.Dropout(dropout)
            self.branches1 = TemporalBranches(out_channels, branch_channels, kernel_sizes, dilation, relu_type, dwpw)
            self.dropout1 = nn.Dropout(dropout)
            self.downsample = nn.Conv2D(out_channels, 1, in_channels=in_channels, weight_initializer=_CONV_INIT)
            self.act = activation(relu_type, out_channels)

    def hybrid_forward(self, F, x):  # noqa: ANN001
        out = self.dropout1(self.branches1(self.dropout0(self.branches0(x))))
        # broadcast_add, not +: oneDNN's graph rewrite would fuse a "+" into the 1x1 convolution (conv + sum)
        # and MXNet 1.9.1 then wires that fused graph's inputs wrongly ("Shape inconsistent, Provided = [256],
        # inferred shape=(256,512,3,1)"); the tensors are small, (N, 768, T, 1).
        return self.act(F.broadcast_add(out, self.downsample(x)))


class WordNet(nn.HybridBlock):
    """``net(frames, lengths)``: frames (N, 1, T, H, W) normalised grey crops, lengths (N,) real frames
    per clip (frames past a clip's length are left out of its time average) -> word scores (N, classes),
    unnormalised (softmax gives probabilities)."""

    def __init__(self, config: WordNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or WordNetConfig()
        trunk = config.trunk_channels()
        branch = config.tcn_branch_channels()
        tcn_channels = branch * len(config.tcn_kernel_size)
        with self.name_scope():
            self.frontend_conv = FrameStackConv(trunk[0], (5, 7, 7), 2)
            self.frontend_bn = nn.BatchNorm(in_channels=trunk[0])
            self.frontend_act = activation(config.relu_type, trunk[0])
            self.frontend_pool = nn.MaxPool2D(3, 2, 1)
            self.trunk = nn.HybridSequential()
            in_channels = trunk[0]
            for stage, channels in enumerate(trunk):
                for block in range(2):
                    self.trunk.add(BasicBlock(in_channels, channels, 2 if stage and not block else 1,
                                              config.relu_type, gemm=stage == len(trunk) - 1))
                    in_channels = channels
            self.pool = nn.GlobalAvgPool2D()
            self.tcn = nn.HybridSequential()
            in_channels = trunk[-1]
            for level in range(config.tcn_num_layers):
                self.tcn.add(MultiscaleBlock(in_channels, branch, config.tcn_kernel_size, 2**level,
                                             config.tcn_dropout, config.relu_type, config.tcn_dwpw))
                in_channels = tcn_channels
            self.output = nn.Dense(config.num_classes, in_units=tcn_channels, flatten=False)

    def hybrid_forward(self, F, x, lengths):  # noqa: ANN001
        frames = self.frontend_conv(x)  # (N*T, C, H, W)
        y = self.frontend_pool(self.frontend_act(self.frontend_bn(frames)))
        y = self.pool(self.trunk(y)).reshape((0, -1))  # (N*T, C)
        # (N, T, C) -> (N, C, T): reshape_like takes N and T from the input's (N, 1*T, H, W) view.
        seq = F.reshape_like(y, x.reshape((0, -3, -2)), lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)
        # (N, C, T, 1); transposing the 3-D (N, T, C) instead fails in a hybridized backward pass (oneDNN:
        # "could not create a primitive descriptor for a reorder primitive").
        seq = self.tcn(F.transpose(seq.expand_dims(3), (0, 2, 1, 3)))
        steps = F.contrib.arange_like(seq, axis=2)  # 0..T-1
        mask = F.broadcast_lesser(steps.reshape((1, 1, -1, 1)), lengths.reshape((-1, 1, 1, 1)))  # (N, 1, T, 1)
        total = F.sum(F.broadcast_mul(seq, mask), axis=(2, 3))
        mean = F.broadcast_div(total, F.maximum(lengths, 1).reshape((-1, 1)))
        return self.output(mean)


def count_trainable(net: nn.Block) -> int:
    """Parameters that training updates (batch-norm running statistics are not)."""
    total = 0
    for param in net.collect_params().values():
        if param.grad_req != "null":
            size = 1
            for dim in param.shape:
                size *= dim
            total += size
    return total


def prepare_word_net(net: WordNet, ctxs: list[mx.Context]) -> None:
    """Make ``net`` ready to read clips on ``ctxs``; call it after the weights are loaded, and train no further.

    The front-end and the last stage go back to their faster forward forms (``training_kernels``). On the
    CPU, oneDNN's graph rewrite (``optimize_for(backend="MKLDNN")``) then folds the batch norms that follow
    the trunk's convolutions into them, and its residual sums: the same sums, 4% faster (module docstring).
    Elsewhere, the hybridized graph with static memory.
    """
    # No weight gradient to take: the 5-channel front-end and oneDNN's direct convolutions are faster forward.
    net.apply(lambda block: setattr(block, "training_kernels", False) if hasattr(block, "training_kernels") else None)
    if any(ctx.device_type != "cpu" for ctx in ctxs):
        net.hybridize(static_alloc=True, static_shape=True)
        return
    config = net.config
    frames = mx.nd.zeros((1, 1, config.frames, config.size, config.size), ctx=ctxs[0])
    net.optimize_for(frames, mx.nd.full((1,), config.frames, ctx=ctxs[0]), backend="MKLDNN",
                     static_alloc=True, static_shape=True)
