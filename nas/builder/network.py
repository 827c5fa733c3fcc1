"""build(spec) -> nn.Module: stages from the registry, then the head."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nas.builder.layers import activation
from nas.builder.stages import STAGE_BUILDERS
from nas.builder.weights import load_weights
from nas.specs import HeadSpec, NetworkSpec


def dropout(p: float) -> list[nn.Module]:
    """A dropout layer, or none when p is 0."""
    return [nn.Dropout(p)] if p > 0 else []


class Head(nn.Sequential):
    """Pool -> flatten -> hidden ([dropout], Linear, [BN1d], act, [dropout]) -> classifier."""

    def __init__(self, head: HeadSpec, channels: int, size: int, num_classes: int) -> None:
        if head.pool == "avg":
            layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1)]
            features = channels
        elif head.pool == "flatten":
            layers, features = [], channels * size * size
        else:
            layers, features = [nn.AdaptiveAvgPool2d(head.pool)], channels * head.pool**2
        layers.append(nn.Flatten())
        for width in head.hidden:
            layers += dropout(head.dropout) if head.dropout_before else []
            layers.append(nn.Linear(features, width))
            layers += [nn.BatchNorm1d(width)] if head.norm else []
            layers.append(activation(head.act))
            layers += [] if head.dropout_before else dropout(head.dropout)
            features = width
        if head.linear:
            layers += dropout(head.classifier_dropout)
            layers.append(nn.Linear(features, num_classes))
        super().__init__(*layers)


class Network(nn.Module):
    """A built network: `stages` (one module per stage spec) then `head`."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        channels, modules = spec.in_channels, []
        for stage, (out_channels, _) in zip(spec.stages, spec.trace()):
            modules.append(STAGE_BUILDERS[stage.kind](channels, stage))
            channels = out_channels
        self.stages = nn.Sequential(*modules)
        size = spec.trace()[-1][1]
        self.head = Head(spec.head, channels, size, spec.num_classes)
        initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(x))


def initialise(model: nn.Module) -> None:
    """Kaiming-normal convs (fan-out, as torchvision), unit BN, PyTorch's default Linear."""
    if any(p.is_meta for p in model.parameters()):
        return  # no values to set; normal_ on meta would import torch._dynamo (5 s here)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build(spec: object, weights: str | Path | None = None) -> Network:
    """A module from a family spec, a NetworkSpec, a dict, a path or a preset name.

    `weights`: a state_dict file (torchvision checkpoint or .safetensors) loaded by order.
    """
    from nas.io import load_spec

    if not isinstance(spec, NetworkSpec):
        spec = load_spec(spec).lower()  # type: ignore[arg-type]
    if weights is None:
        return Network(spec)
    with torch.device("meta"):  # every tensor is overwritten: initialising them is wasted time
        model = Network(spec)
    model.to_empty(device="cpu")
    load_weights(model, weights)
    return model
