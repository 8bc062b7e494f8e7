"""The word-level network ``lrw_resnet18_mstcn`` of "Lipreading using Temporal Convolutional Networks" (Martinez
et al., ICASSP 2020) in PyTorch: the reference ``bench/words.py``'s timings are compared with.

Only the bench-only venv (``bench/requirements.txt``) has torch; nothing of the project imports this module. The
layers are ``model/word_net.py``'s, in PyTorch's plain forms (Conv3d, Conv2d, Conv1d, BatchNorm, PReLU or
swish), which is how the reference implementation builds them:

- front-end: Conv3d(1->64, kernel 5x7x7, stride 1x2x2, padding 2x3x3, no bias), BatchNorm3d, activation,
  MaxPool3d(1x3x3, stride 1x2x2, padding 0x1x1); the frames then fold into the batch, (N*T, 64, H, W);
- trunk: ResNet-18's four stages of two BasicBlocks (64-128-256-512 channels, the first block of each later
  stage strided by 2 with a 1x1 convolution + batch norm shortcut), global average pooling per frame;
- back-end: a multi-scale TCN of 4 blocks with dilation 1, 2, 4, 8; each block twice runs one Conv1d (with
  bias) + BatchNorm1d + activation per kernel size 3, 5, 7 (256 channels each, "same" padding), concatenates
  the branches and drops out (0.2); a 1x1 Conv1d (with bias) of the block's input is added before a last
  activation;
- the TCN's output averaged over each clip's real frames, a linear layer to the words.

The modules carry the reference's names (``frontend3D``, ``trunk.layer1.0.conv1``,
``tcn.mb_ms_tcn.network.0.cbcr0_0.conv``, ``tcn.tcn_output``, ...), so a ``state_dict`` of this network is laid out
as the published ``.pth`` files are (``model/tcn_weights.py`` maps them), and its TCN pads by ``(k-1)*d`` and
chomps half of it from each end after the batch norm, as the reference does. ``width_mult`` scales the trunk and
``hidden`` the TCN's branches, for the small models of the numerical tests (``bench/tcn_reference_outputs.py``).

With 500 classes and swish (``configs/lrw_resnet18_mstcn.json``'s ``relu_type``) it has 36,361,396 trainable
parameters, ``WordNet``'s count; PReLU adds one slope per channel of every activation (13,120 more).
"""
from __future__ import annotations

import torch
from torch import nn

TRUNK_CHANNELS = (64, 128, 256, 512)
TCN_HIDDEN = 256  # channels per kernel size
TCN_KERNELS = (3, 5, 7)
TCN_LEVELS = 4
TCN_DROPOUT = 0.2


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def activation(relu_type: str, channels: int) -> nn.Module:
    if relu_type == "prelu":
        return nn.PReLU(num_parameters=channels)
    if relu_type == "swish":
        return Swish()
    return nn.ReLU()


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with a shortcut (a strided 1x1 convolution + BN where the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int, relu_type: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = activation(relu_type, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = activation(relu_type, channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + shortcut)


class ResNetTrunk(nn.Module):
    """ResNet-18's four stages (``layer1``-``layer4``) and the global average pool."""

    def __init__(self, channels: tuple[int, ...], relu_type: str) -> None:
        super().__init__()
        in_channels = channels[0]
        for stage, width in enumerate(channels):
            blocks = []
            for block in range(2):
                blocks.append(BasicBlock(in_channels, width, 2 if stage and not block else 1, relu_type))
                in_channels = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.stages = len(channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in range(self.stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return self.avgpool(x).flatten(1)


class ConvBatchChompRelu(nn.Module):
    """A dilated Conv1d padded by (k-1)*d on both sides, batch norm, half the padding chomped from each end."""

    def __init__(self, in_channels: int, channels: int, kernel: int, dilation: int, relu_type: str) -> None:
        super().__init__()
        self.chomp = (kernel - 1) * dilation // 2
        self.conv = nn.Conv1d(in_channels, channels, kernel, padding=2 * self.chomp, dilation=dilation)
        self.batchnorm = nn.BatchNorm1d(channels)
        self.non_lin = activation(relu_type, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.batchnorm(self.conv(x))
        return self.non_lin(out[:, :, self.chomp:out.shape[2] - self.chomp] if self.chomp else out)


class MultiscaleBlock(nn.Module):
    """Two multi-branch convolutions (``cbcr0_*``, ``cbcr1_*``) with dropout, a 1x1-convolution shortcut and a
    last activation."""

    def __init__(self, in_channels: int, hidden: int, kernels: tuple[int, ...], dilation: int,
                 relu_type: str) -> None:
        super().__init__()
        out_channels = hidden * len(kernels)
        self.kernels = len(kernels)
        for half, inputs in enumerate((in_channels, out_channels)):
            for index, kernel in enumerate(kernels):
                setattr(self, f"cbcr{half}_{index}", ConvBatchChompRelu(inputs, hidden, kernel, dilation, relu_type))
        self.dropout0 = nn.Dropout(TCN_DROPOUT)
        self.dropout1 = nn.Dropout(TCN_DROPOUT)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1)
        self.relu_final = activation(relu_type, out_channels)

    def _branches(self, half: int, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, f"cbcr{half}_{i}")(x) for i in range(self.kernels)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout1(self._branches(1, self.dropout0(self._branches(0, x))))
        return self.relu_final(out + self.downsample(x))


class MultiscaleTCN(nn.Module):
    """``mb_ms_tcn.network``: the TCN's blocks at dilation 1, 2, 4, ...; ``tcn_output``: the linear layer."""

    def __init__(self, in_channels: int, hidden: int, kernels: tuple[int, ...], levels: int, num_classes: int,
                 relu_type: str) -> None:
        super().__init__()
        tcn_channels = hidden * len(kernels)
        self.mb_ms_tcn = nn.Module()
        self.mb_ms_tcn.network = nn.Sequential(*(
            MultiscaleBlock(in_channels if level == 0 else tcn_channels, hidden, kernels, 2**level, relu_type)
            for level in range(levels)))
        self.tcn_output = nn.Linear(tcn_channels, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        seq = self.mb_ms_tcn.network(x)  # (N, C, T)
        t = seq.shape[2]
        mask = (torch.arange(t, device=x.device)[None, :] < lengths[:, None]).to(seq.dtype)  # (N, T)
        mean = (seq * mask[:, None, :]).sum(dim=2) / lengths.clamp(min=1)[:, None].to(seq.dtype)
        return self.tcn_output(mean)


class TcnWordNet(nn.Module):
    """``net(frames, lengths)``: frames (N, 1, T, H, W), lengths (N,) real frames per clip -> word scores
    (N, classes)."""

    def __init__(self, num_classes: int = 500, relu_type: str = "swish", width_mult: float = 1.0,
                 hidden: int = TCN_HIDDEN, kernels: tuple[int, ...] = TCN_KERNELS, levels: int = TCN_LEVELS) -> None:
        super().__init__()
        channels = tuple(max(int(c * width_mult), 1) for c in TRUNK_CHANNELS)
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, channels[0], (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(channels[0]), activation(relu_type, channels[0]),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        self.trunk = ResNetTrunk(channels, relu_type)
        self.tcn = MultiscaleTCN(channels[-1], hidden, tuple(kernels), levels, num_classes, relu_type)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n, _, t = x.shape[:3]
        y = self.frontend3D(x)  # (N, C, T, H, W)
        y = y.transpose(1, 2).reshape(n * t, *y.shape[1:2], *y.shape[3:])  # (N*T, C, H, W)
        y = self.trunk(y)  # (N*T, C)
        return self.tcn(y.view(n, t, -1).transpose(1, 2), lengths)


def count_trainable(net: nn.Module) -> int:
    """Parameters that training updates (batch-norm running statistics are buffers, not parameters)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
