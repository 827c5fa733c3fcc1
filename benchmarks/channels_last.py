"""Does channels_last pay on this CPU for MBConv networks (depthwise convs), side by side?

For each model, alternating NCHW and channels_last runs in one process: training images/s
(forward, backward and an SGD step at --batch-size on 28x28 inputs, as a search trial trains)
and eval latency at batch 1 (nas.train.latency_ms, as the search's latency objective measures
it), each the median of --repeats alternating rounds. One intra-op thread, as each search worker
uses on a CPU. Run under `nice` on a shared machine and quote `uptime` beside the figures.
Run: python benchmarks/channels_last.py [--repeats 3] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from nas.builder import build
from nas.cost import MetaCost
from nas.io import load_spec
from nas.search.space import load_space
from nas.train import latency_ms

SMALL = {"in_channels": 1, "num_classes": 10, "input_size": 28}
MBCONV = {"family": "mbconv", **SMALL, **load_space("mbconv").fixed}
# Three points of spaces/mbconv.yaml (small, middle, large) and controls without depthwise convs.
MODELS: dict[str, Any] = {
    "mbconv small (k3 e3 16-48)": {**MBCONV, "depths": [2, 2, 2, 2], "widths": [16, 24, 32, 48],
                                   "expansions": [3] * 4, "kernels": [3] * 4,
                                   "se_ratios": [0] * 4},
    "mbconv middle (k5 e4 24-64, SE)": {**MBCONV, "depths": [3] * 4,
                                        "widths": [24, 32, 48, 64], "expansions": [4] * 4,
                                        "kernels": [5] * 4, "se_ratios": [0.25] * 4},
    "mbconv large (k7 e6 48-64, SE)": {**MBCONV, "depths": [4] * 4, "widths": [48, 64, 64, 64],
                                       "expansions": [6] * 4, "kernels": [7] * 4,
                                       "se_ratios": [0.25] * 4},
    "regnet_y small (SE, no depthwise)": {
        "family": "regnet", **SMALL, "depth": 4, "w0": 16, "wa": 8.0, "wm": 2.0,
        "group_width": 8, "se_ratio": 0.25},
    "resnet_small (no depthwise)": "resnet_small",
    "mobilenet_v2 at 224 (latency only)": "mobilenet_v2",
    "efficientnet_b0 at 224 (latency only)": "efficientnet_b0",
}


def train_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Training images/s over `steps` SGD steps after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - start)


def measure(spec: Any, layout: torch.memory_format, batch: int, steps: int,
            train: bool) -> tuple[float, float]:
    """(training images/s or nan, latency ms at batch 1) of one model in one layout."""
    arch = load_spec(spec)
    model = build(arch).to(memory_format=layout)
    shape = (arch.in_channels, arch.input_size, arch.input_size)
    rate = float("nan")
    if train:
        x = torch.randn(batch, *shape).contiguous(memory_format=layout)
        y = torch.randint(0, arch.num_classes, (batch,))
        rate = train_rate(model, x, y, steps)
    return rate, latency_ms(model, shape, warmup=5, repeats=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| model | MACs | train img/s NCHW | channels_last | ratio | latency ms NCHW "
          "| channels_last | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for label, spec in MODELS.items():
        train = "latency only" not in label
        runs: dict[str, list[tuple[float, float]]] = {"nchw": [], "cl": []}
        for _ in range(args.repeats):  # alternating, so load changes hit both alike
            runs["nchw"].append(measure(spec, torch.contiguous_format, args.batch_size,
                                        args.steps, train))
            runs["cl"].append(measure(spec, torch.channels_last, args.batch_size, args.steps,
                                      train))
        med = {k: [statistics.median(v[i] for v in runs[k]) for i in (0, 1)] for k in runs}
        macs = MetaCost(spec).cost.macs
        print(f"| {label} | {macs / 1e6:.1f} M | {med['nchw'][0]:.0f} | {med['cl'][0]:.0f} | "
              f"{med['cl'][0] / med['nchw'][0]:.2f}x | {med['nchw'][1]:.2f} | "
              f"{med['cl'][1]:.2f} | {med['nchw'][1] / med['cl'][1]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
