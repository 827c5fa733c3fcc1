"""Blocks with more than one path: residual, inverted residual (MBConv), dense, inception,
squeeze-excitation."""

from __future__ import annotations

import torch
from torch import nn

from nas.builder.layers import ConvNormAct, StochasticDepth, activation
from nas.specs import DenseStage, InceptionStage, MBConvStage, ResidualStage


class SqueezeExcite(nn.Module):
    """Channel gating: global pool -> 1x1 reduce -> act -> 1x1 expand -> gate."""

    def __init__(self, width: int, squeeze: int, act: str = "relu", gate: str = "sigmoid",
                 ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(width, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, width, 1)
        self.act, self.gate = activation(act), activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class ResidualBlock(nn.Module):
    """Basic (3x3, 3x3) or bottleneck (1x1, grouped 3x3, 1x1) branch plus a shortcut."""

    def __init__(self, w_in: int, stage: ResidualStage, stride: int) -> None:
        super().__init__()
        w, bias = stage.width, stage.bias
        shortcut: nn.Module = nn.Identity()
        if stride != 1 or w_in != w:
            shortcut = ConvNormAct(
                w_in, w, 1, stride, bias=bias, norm=stage.shortcut_norm, act="none"
            )
        branch = self._branch(w_in, stage, stride)
        # Registration order is the state_dict's order, which checkpoints are loaded by.
        if stage.shortcut_first:
            self.shortcut, self.branch = shortcut, branch
        else:
            self.branch, self.shortcut = branch, shortcut
        self.act = nn.ReLU(inplace=True)

    @staticmethod
    def _branch(w_in: int, stage: ResidualStage, stride: int) -> nn.Sequential:
        w, bias = stage.width, stage.bias
        if stage.block == "basic":
            return nn.Sequential(
                ConvNormAct(w_in, w, 3, stride, bias=bias),
                ConvNormAct(w, w, 3, bias=bias, act="none"),
            )
        wb = stage.bottleneck_width
        layers: list[nn.Module] = [
            ConvNormAct(w_in, wb, 1, bias=bias),
            ConvNormAct(wb, wb, 3, stride, groups=stage.groups, bias=bias),
        ]
        if stage.se_ratio > 0:
            layers.append(SqueezeExcite(wb, max(1, int(round(stage.se_ratio * w_in)))))
        layers.append(ConvNormAct(wb, w, 1, bias=bias, act="none"))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class InvertedResidual(nn.Module):
    """A branch (built by the subclass) plus the input when stride 1 keeps the width;
    stochastic depth drops the branch per sample in training."""

    def __init__(self, w_in: int, stage: MBConvStage, stride: int, drop: float) -> None:
        super().__init__()
        self.block = nn.Sequential(*self._layers(w_in, stage, stride))
        self.residual = stage.residual and stride == 1 and w_in == stage.width
        self.drop = StochasticDepth(drop) if drop > 0 else nn.Identity()

    def _layers(self, w_in: int, stage: MBConvStage, stride: int) -> list[nn.Module]:
        raise NotImplementedError

    @staticmethod
    def _se(stage: MBConvStage, w_in: int, wide: int) -> list[nn.Module]:
        """The squeeze-and-excitation of a block whose input has w_in channels, if any."""
        squeeze = stage.squeeze(w_in)
        return [SqueezeExcite(wide, squeeze, stage.se_act, stage.se_gate)] if squeeze else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return self.drop(out) + x if self.residual else out


class MBConv(InvertedResidual):
    """1x1 expansion (left out at expansion 1), depthwise kxk, [SE], 1x1 projection."""

    def _layers(self, w_in: int, stage: MBConvStage, stride: int) -> list[nn.Module]:
        wide, k, act = stage.expanded(w_in), stage.kernel, stage.act
        norm = {"eps": stage.norm_eps, "momentum": stage.norm_momentum}
        layers = [ConvNormAct(w_in, wide, 1, act=act, **norm)] if wide != w_in else []
        layers.append(ConvNormAct(wide, wide, k, stride, groups=wide, act=act, **norm))
        layers += self._se(stage, w_in, wide)
        layers.append(ConvNormAct(wide, stage.width, 1, act="none", **norm))
        return layers


class FusedMBConv(InvertedResidual):
    """kxk expansion, [SE], 1x1 projection; at expansion 1 one kxk conv (EfficientNetV2)."""

    def _layers(self, w_in: int, stage: MBConvStage, stride: int) -> list[nn.Module]:
        wide, k, act = stage.expanded(w_in), stage.kernel, stage.act
        norm = {"eps": stage.norm_eps, "momentum": stage.norm_momentum}
        if wide == w_in:
            return [ConvNormAct(w_in, stage.width, k, stride, act=act, **norm),
                    *self._se(stage, w_in, stage.width)]
        return [ConvNormAct(w_in, wide, k, stride, act=act, **norm),
                *self._se(stage, w_in, wide),
                ConvNormAct(wide, stage.width, 1, act="none", **norm)]


class DenseBlock(nn.Module):
    """Each layer sees the concatenation of the block input and every earlier layer's output."""

    def __init__(self, w_in: int, stage: DenseStage) -> None:
        super().__init__()
        layers = []
        for i in range(stage.depth):
            w, bias, parts = w_in + i * stage.growth_rate, stage.bias, []
            if stage.bottleneck_width is not None:
                parts.append(ConvNormAct(w, stage.bottleneck_width, 1, bias=bias, preact=True))
                w = stage.bottleneck_width
            parts.append(ConvNormAct(w, stage.growth_rate, 3, bias=bias, preact=True))
            layers.append(nn.Sequential(*parts))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat((x, layer(x)), dim=1)
        return x


class Inception(nn.Module):
    """Four parallel branches concatenated on channels (GoogLeNet)."""

    def __init__(self, w_in: int, stage: InceptionStage) -> None:
        super().__init__()
        kw = {"bias": stage.bias, "norm": stage.norm, "eps": stage.norm_eps}
        (a2, b2), (a3, b3), k3 = stage.c2, stage.c3, stage.c3_kernel
        self.branches = nn.ModuleList(
            [
                ConvNormAct(w_in, stage.c1, 1, **kw),
                nn.Sequential(ConvNormAct(w_in, a2, 1, **kw), ConvNormAct(a2, b2, 3, **kw)),
                nn.Sequential(ConvNormAct(w_in, a3, 1, **kw), ConvNormAct(a3, b3, k3, **kw)),
                nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvNormAct(w_in, stage.c4, 1, **kw)),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)
