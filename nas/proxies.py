"""Zero-cost proxies: scores of an untrained network, from one batch, that are claimed to rank
architectures by their trained accuracy, and the counts they must beat.

- synflow, snip, grad_norm and jacob_cov follow the zero-cost-nas reference of Abdelfattah et
  al. (2021), "Zero-Cost Proxies for Lightweight NAS" (github.com/SamsungLabs/zero-cost-nas,
  foresight/pruners/measures/*.py): each score is summed over the weights of every Conv2d and
  Linear layer, as its `find_measures` sums them.
- naswot is the score of Mellor et al. (2021), "Neural Architecture Search without Training",
  ICML (github.com/BayesWatch/nas-without-training, `hook_logdet`): the log-determinant of the
  kernel of the ReLUs' binary codes. jacob_cov is the score of that paper's first version,
  as zero-cost-nas vendored it.
- params and macs are the baselines White et al. (2022) found few proxies beat.

No maintained package offers these, hence this module. Every score is oriented as in the
references: higher predicts a more accurate network. Every proxy works on a copy of the model
(the reference's `get_prunable_copy`), on the model's device, with the global RNG forked and
seeded, so the model's weights, buffers, gradients, requires_grad flags and mode, and the
caller's RNG, are as they were: training can start right after.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.builder import eval_mode
from nas.cost import count_macs, count_params
from nas.errors import UserError

ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]

# jacob_cov's regulariser of the correlation matrix's eigenvalues (the reference's k)
JACOB_COV_K = 1e-5


@dataclass(frozen=True)
class ProxyValue:
    """A proxy's score of one network and the seconds it took (copy of the model included)."""

    value: float
    seconds: float


def prunable_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights every score sums over: those of Conv2d and Linear layers, in module order
    (zero-cost-nas's `get_layer_metric_array`)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def working_copy(model: nn.Module, training: bool) -> nn.Module:
    """A copy of `model` to score: in train or eval mode, no gradients, weights requiring grad."""
    net = copy.deepcopy(model).train(training)
    for p in net.parameters():
        p.grad = None
        p.requires_grad_(True)
    return net


def weight_grads(net: nn.Module, scalar: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, d scalar / d weight) of each prunable weight; a weight the scalar does not
    depend on gets a zero gradient (the reference's `zeros_like` for a missing grad)."""
    weights = prunable_weights(net)
    grads = torch.autograd.grad(scalar, weights, allow_unused=True)
    return [(w.detach(), torch.zeros_like(w) if g is None else g) for w, g in zip(weights, grads)]


def remove_batch_norm(net: nn.Module) -> None:
    """Replaces every batch norm by the identity (the reference's `bn=False` copy)."""
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Synaptic flow (Tanaka et al. 2020), as zero-cost-nas's `synflow`: batch norm removed,
    every parameter replaced by its absolute value, float64, an all-ones input of one image;
    R = sum of the outputs; score = sum of |w * dR/dw|. Independent of the data (only x's
    shape is used). Unlike the reference the copy is in eval mode, so that dropout is off."""
    net = working_copy(model, training=False)
    remove_batch_norm(net)
    net.double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    pairs = weight_grads(net, net(ones).sum())
    return math.fsum(float((w * g).abs().sum()) for w, g in pairs)


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SNIP (Lee et al. 2019), as zero-cost-nas's `snip`: the cross-entropy of the batch in
    train mode (batch statistics in batch norm); score = sum of |w * dL/dw|, which is the
    reference's |dL/d mask| at mask = 1."""
    net = working_copy(model, training=True)
    pairs = weight_grads(net, F.cross_entropy(net(x), y))
    return math.fsum(float((w * g).abs().sum()) for w, g in pairs)


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """As zero-cost-nas's `grad_norm`: the L2 norm of dL/dw of each layer's weight (the
    cross-entropy of the batch in train mode), summed over layers."""
    net = working_copy(model, training=True)
    pairs = weight_grads(net, F.cross_entropy(net(x), y))
    return math.fsum(float(g.norm()) for _, g in pairs)


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """As zero-cost-nas's `jacob_cov` (Mellor et al.'s first version): J = d(sum of the
    outputs)/d input per image (train mode), C = the correlation matrix of J's rows, score =
    -sum(log(v + k) + 1/(v + k)) over C's eigenvalues v, k = 1e-5. C is symmetric, so its
    eigenvalues come from eigvalsh (the reference's eig gives the same, as complex numbers).
    NaN where the reference gives NaN: a constant Jacobian row, or an eigenvalue below -k."""
    net = working_copy(model, training=True)
    inputs = x.detach().clone().requires_grad_(True)
    out = net(inputs)
    (jacobian,) = torch.autograd.grad(out, inputs, torch.ones_like(out))
    corr = torch.corrcoef(jacobian.flatten(1).double())
    if not torch.isfinite(corr).all():
        return math.nan
    v = torch.linalg.eigvalsh(corr) + JACOB_COV_K
    return -float((torch.log(v) + 1.0 / v).sum())


def is_relu(module: nn.Module) -> bool:
    """The units NASWOT codes: modules whose class name says ReLU, as the reference picks them."""
    return "ReLU" in type(module).__name__


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """NASWOT (Mellor et al. 2021, `hook_logdet`): one train-mode forward of the batch; each
    ReLU's input gives every image a binary code c (unit > 0); K = sum over ReLUs of
    c c^T + (1 - c)(1 - c)^T, i.e. units minus the Hamming distance of two images' codes;
    score = log |det K|. NaN for a network without ReLUs. Unlike the reference, codes are
    read before the ReLU (a pre-hook), which gives the same signs for in-place ReLUs."""
    net = working_copy(model, training=True)
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)
    coded = [0]

    def add_codes(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        c = (inputs[0] > 0).flatten(1).float()  # counts stay exact integers in float32
        kernel.add_((c @ c.T + (1 - c) @ (1 - c).T).double())
        coded[0] += 1

    hooks = [m.register_forward_pre_hook(add_codes) for m in net.modules() if is_relu(m)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    if not coded[0]:
        return math.nan
    return float(torch.linalg.slogdet(kernel).logabsdet)


def params(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The parameter count (a baseline)."""
    return float(count_params(model))


def macs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Multiply-adds of one image's forward in eval mode (a baseline; nas.cost's count)."""
    with eval_mode(model):
        return float(count_macs(model, x[:1]))


ZERO_COST = ("synflow", "naswot", "jacob_cov", "snip", "grad_norm")
BASELINES = ("params", "macs")
PROXIES: dict[str, ProxyFn] = {"synflow": synflow, "naswot": naswot, "jacob_cov": jacob_cov,
                               "snip": snip, "grad_norm": grad_norm, "params": params,
                               "macs": macs}


def check_names(names: Sequence[str]) -> list[str]:
    """`names` if every one is a proxy; UserError naming the unknown one and the known ones."""
    for name in names:
        if name not in PROXIES:
            raise UserError(f"unknown proxy {name!r}; one of {', '.join(PROXIES)}")
    return list(names)


def model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def compute_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    names: Sequence[str] = ZERO_COST, seed: int = 0) -> dict[str, ProxyValue]:
    """Each named proxy of `model` on the batch (x, y), on the model's device, with the
    seconds it took. The model and the global RNG are left as they were; each proxy starts
    from RNG seed `seed` (dropout in train mode), so its value depends on weights and batch
    only."""
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    out = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            torch.enable_grad():
        for name in check_names(names):
            torch.manual_seed(seed)
            start = time.perf_counter()
            value = PROXIES[name](model, x, y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out[name] = ProxyValue(value, time.perf_counter() - start)
    return out


def proxy_fields(values: dict[str, ProxyValue]) -> dict[str, dict[str, float]]:
    """The TrialRecord fields `proxies` and `proxy_seconds` of computed proxies; a score that is
    not finite (NaN: undefined for this network) is left out, its seconds kept."""
    return {"proxies": {k: v.value for k, v in values.items() if math.isfinite(v.value)},
            "proxy_seconds": {k: v.seconds for k, v in values.items()}}


@dataclass(frozen=True)
class Prescreen:
    """Which of K candidates a proxy ranks best, every candidate's score and the time taken."""

    proxy: str
    index: int
    values: list[float]
    seconds: float


def best_index(values: Sequence[float]) -> int:
    """The highest score's index, the first on ties; NaN never wins unless all are NaN."""
    ranked = [(-v if not math.isnan(v) else math.inf, i) for i, v in enumerate(values)]
    return min(ranked)[1]


def prescreen(candidates: Sequence[Any], proxy: str, x: torch.Tensor, y: torch.Tensor,
              seed: int = 0, device: str | torch.device | None = None) -> Prescreen:
    """Builds each candidate spec with weights from `seed` (as a trial builds it) on `device`
    (default: x's), scores it by `proxy` on the batch and returns the best one's index."""
    from nas.train import seeded_build

    if not candidates:
        raise ValueError("prescreen needs at least one candidate")
    [proxy] = check_names([proxy])
    start = time.perf_counter()
    values = []
    for spec in candidates:
        model = seeded_build(spec, seed).to(device or x.device)
        values.append(compute_proxies(model, x, y, [proxy], seed)[proxy].value)
        del model
    return Prescreen(proxy, best_index(values), values, time.perf_counter() - start)


def proxy_batch(data: Any, input_size: int, batch_size: int = 64, seed: int = 0,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the training split (`nas.data.DataSplits`), normalised and resized as
    training does (no augmentation), drawn by `seed`: the batch the proxies see."""
    from nas.data import BatchMaker

    n = data.train_x.shape[0]
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:batch_size]
    pick = pick.to(data.train_x.device)
    maker = BatchMaker(data, input_size, channels_last=False)
    return maker(data.train_x[pick]), data.train_y[pick]


__all__ = ["BASELINES", "PROXIES", "ZERO_COST", "Prescreen", "ProxyValue", "compute_proxies",
           "grad_norm", "jacob_cov", "macs", "naswot", "params", "prescreen", "proxy_batch",
           "proxy_fields", "snip", "synflow"]
