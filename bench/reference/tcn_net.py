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
        self.act1 = activation(relu_type, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = activation(relu_type, channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + shortcut)


class TemporalBranches(nn.Module):
    """One Conv1d + BN + activation per kernel size, concatenated along channels."""

    def __init__(self, in_channels: int, dilation: int, relu_type: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv1d(in_channels, TCN_HIDDEN, k, padding=(k - 1) * dilation // 2, dilation=dilation),
                          nn.BatchNorm1d(TCN_HIDDEN), activation(relu_type, TCN_HIDDEN))
            for k in TCN_KERNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class MultiscaleBlock(nn.Module):
    """Two multi-branch convolutions with dropout, a 1x1-convolution shortcut and a last activation."""

    def __init__(self, in_channels: int, dilation: int, relu_type: str) -> None:
        super().__init__()
        out_channels = TCN_HIDDEN * len(TCN_KERNELS)
        self.branches0 = TemporalBranches(in_channels, dilation, relu_type)
        self.dropout0 = nn.Dropout(TCN_DROPOUT)
        self.branches1 = TemporalBranches(out_channels, dilation, relu_type)
        self.dropout1 = nn.Dropout(TCN_DROPOUT)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1)
        self.act = activation(relu_type, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout1(self.branches1(self.dropout0(self.branches0(x))))
        return self.act(out + self.downsample(x))


class TcnWordNet(nn.Module):
    """``net(frames, lengths)``: frames (N, 1, T, H, W), lengths (N,) real frames per clip -> word scores
    (N, classes)."""

    def __init__(self, num_classes: int = 500, relu_type: str = "swish") -> None:
        super().__init__()
        self.frontend = nn.Sequential(
            nn.Conv3d(1, TRUNK_CHANNELS[0], (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(TRUNK_CHANNELS[0]), activation(relu_type, TRUNK_CHANNELS[0]),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        blocks, in_channels = [], TRUNK_CHANNELS[0]
        for stage, channels in enumerate(TRUNK_CHANNELS):
            for block in range(2):
                blocks.append(BasicBlock(in_channels, channels, 2 if stage and not block else 1, relu_type))
                in_channels = channels
        self.trunk = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        tcn_channels = TCN_HIDDEN * len(TCN_KERNELS)
        self.tcn = nn.Sequential(*(MultiscaleBlock(TRUNK_CHANNELS[-1] if level == 0 else tcn_channels, 2**level,
                                                   relu_type) for level in range(TCN_LEVELS)))
        self.output = nn.Linear(tcn_channels, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n, _, t = x.shape[:3]
        y = self.frontend(x)  # (N, C, T, H, W)
        y = y.transpose(1, 2).reshape(n * t, *y.shape[1:2], *y.shape[3:])  # (N*T, C, H, W)
        y = self.pool(self.trunk(y)).flatten(1)  # (N*T, C)
        seq = self.tcn(y.view(n, t, -1).transpose(1, 2))  # (N, C, T)
        mask = (torch.arange(t, device=x.device)[None, :] < lengths[:, None]).to(seq.dtype)  # (N, T)
        mean = (seq * mask[:, None, :]).sum(dim=2) / lengths.clamp(min=1)[:, None].to(seq.dtype)
        return self.output(mean)


def count_trainable(net: nn.Module) -> int:
    """Parameters that training updates (batch-norm running statistics are buffers, not parameters)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
