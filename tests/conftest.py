"""Shared test helpers: a reproducible hypothesis profile, the CLI driver, small torch utilities."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

# Reproducible property tests: the same examples on every run and every machine.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", deadline=None)  # fresh random examples on each run
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# One intra-op thread: on a shared machine OpenMP threads that wait on busy cores made each
# convolution ~30 ms slower (a 96 px GoogLeNet forward 1.9 s instead of 0.06 s).
torch.set_num_threads(int(os.environ.get("NAS_TEST_THREADS", "1")))

# The shipped presets that existed when the spec/builder issue was closed; others may be added.
SHIPPED_PRESETS = (
    "d2l_alexnet", "d2l_densenet", "d2l_googlenet", "d2l_lenet_bn", "d2l_nin", "d2l_resnet18",
    "d2l_vgg11", "d2l_vgg11_small", "densenet121", "resnet18", "resnet50", "resnext50_32x4d",
    "vgg11", "vgg16",
)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    """Every test starts from the same torch RNG state and leaves grad mode as it found it."""
    torch.manual_seed(0)
    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)


@dataclass(frozen=True)
class CliResult:
    """What one `nas` invocation did: exit code and the text on each stream."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


CliRunner = Callable[..., CliResult]


@pytest.fixture
def run_nas(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Runs `nas ARGS...` through the real entry point `nas.cli.main` in this process."""
    from nas.cli import main

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def count_params(model: nn.Module) -> int:
    """Number of parameters, counted independently of nas.cost."""
    return sum(p.numel() for p in model.parameters())


def state_shapes(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    """Shapes of every parameter and buffer of a state dict, in its order."""
    return [tuple(v.shape) for v in state.values()]


def randomise_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics, so that they change outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))


def copy_state_in_order(source: Mapping[str, torch.Tensor], target: nn.Module) -> None:
    """Loads `source`'s tensors into `target`'s parameters and buffers, position by position."""
    dst = target.state_dict()
    assert len(source) == len(dst), f"{len(source)} tensors in source, {len(dst)} in target"
    target.load_state_dict({k: v.clone() for k, v in zip(dst, source.values())}, strict=True)
