"""`nas bench`: training throughput of the nas engine against the book's loop, same model.

The book's loop is the seed code's `train_on_FashionMNIST`: a torchvision dataset with
per-sample `Resize`/`ToTensor` transforms, a shuffling `DataLoader`, plain SGD and
`CrossEntropyLoss(reduction='none')`. On a user's images its dataset decodes each file per
sample (Pillow, resized and cropped as nas prepares them), as an ImageFolder with those
transforms would. Both sides train the same spec from the same initial weights, at the same
batch size, for the same number of steps, after the same warm-up.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.data import (
    DataSplits,
    Progress,
    dataset_info,
    decode,
    is_builtin,
    load_data,
    peek,
    torchvision_root,
)
from nas.device import environment, synchronize
from nas.train import Budget, TrainConfig, fit, learning_rate, seeded_build
from nas.train.policy import model_input_size


@dataclass
class BenchResult:
    """Training throughput of both loops (images/s, best of the runs) and their ratio."""

    spec: str
    dataset: str
    batch_size: int
    steps: int
    warmup_steps: int
    book_workers: int
    nas_images_per_second: float
    book_images_per_second: float
    speedup: float
    nas_runs: list[float] = field(default_factory=list)
    book_runs: list[float] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def book_loader(dataset: str, root: Path, size: int, batch_size: int,
                workers: int) -> torch.utils.data.DataLoader:
    """The seed's `load_dataset`: torchvision dataset, per-sample transforms, DataLoader."""
    import torchvision.datasets as tvd
    from torchvision.transforms import Compose, Resize, ToTensor

    info = dataset_info(dataset)
    transform = Compose([ToTensor()] if size == info.image_size else [Resize(size), ToTensor()])
    train = getattr(tvd, info.torchvision_class)(str(root), train=True, transform=transform)
    return torch.utils.data.DataLoader(train, batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=torch.cuda.is_available())


class ImageFiles(torch.utils.data.Dataset):
    """A user's training images decoded per sample, as ToTensor gives them ([0, 1] floats)."""

    def __init__(self, items: list[tuple[str, int]], size: int, channels: int) -> None:
        self.items, self.size, self.channels = items, size, channels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        return torch.from_numpy(decode(path, self.size, self.channels)).float() / 255, label


def files_loader(source: str | Path, size: int, channels: int, batch_size: int,
                 workers: int) -> torch.utils.data.DataLoader:
    """The book's loop over a user's readable training files."""
    summary = peek(source)
    index = {c: i for i, c in enumerate(summary.classes)}
    items = [(e.path, index[e.label]) for i, e in enumerate(summary.listing.entries)
             if e.split == "train" and i not in summary.scan.errors]
    return torch.utils.data.DataLoader(ImageFiles(items, size, channels), batch_size,
                                       shuffle=True, num_workers=workers,
                                       pin_memory=torch.cuda.is_available())


def batches(loader: torch.utils.data.DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches epoch after epoch, as the book's loop draws them."""
    while True:
        yield from loader


def book_images_per_second(model: nn.Module, loader: torch.utils.data.DataLoader,
                           device: torch.device, steps: int, warmup: int,
                           lr: float) -> float:
    """The seed's training loop for `warmup` then `steps` timed steps; images per second."""
    model.to(device).train()
    criterion = nn.CrossEntropyLoss(reduction="none")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    stream, seen, start = batches(loader), 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start, seen = time.perf_counter(), 0
        x, y = next(stream)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
        seen += y.numel()
    synchronize(device)
    return seen / (time.perf_counter() - start)


def nas_images_per_second(model: nn.Module, data: DataSplits, steps: int, warmup: int,
                          batch_size: int, config: TrainConfig) -> float:
    """The nas engine's training throughput over `steps` steps, after a warm-up fit."""
    fit(copy.deepcopy(model), data, Budget(epochs=1, max_steps=warmup, batch_size=batch_size),
        config)
    budget = Budget(epochs=1, max_steps=steps, batch_size=batch_size)
    return fit(model, data, budget, config).images_per_second


def bench(
    spec: Any,
    steps: int = 100,
    batch_size: int = 256,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    device: torch.device | None = None,
    book_workers: int = 0,
    warmup: int = 5,
    repeats: int = 1,
    config: TrainConfig | None = None,
    name: str = "",
    channels: int | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Both loops on the same spec, alternating `repeats` times; the best of each and the ratio.

    The best run is reported (as timeit does): other processes on the machine only ever slow a
    run down, so the fastest is the least disturbed. Every run is kept in the result.
    """
    device = device or torch.device("cpu")
    config = config or TrainConfig()
    model = seeded_build(spec, config.seed)
    size = model.spec.input_size
    data = load_data(dataset, data_dir, device, input_size=size, channels=channels,
                     progress=progress)
    model_input_size(model, data)  # a spec that does not fit the data: one line, before work
    steps = min(steps, data.train_x.shape[0] // batch_size)
    if is_builtin(dataset):
        loader = book_loader(dataset, torchvision_root(dataset, data_dir), size, batch_size,
                             book_workers)
    else:
        loader = files_loader(dataset, size, data.in_channels, batch_size, book_workers)
    nas_runs, book_runs = [], []
    for _ in range(repeats):
        nas_runs.append(nas_images_per_second(copy.deepcopy(model), data, steps, warmup,
                                              batch_size, config))
        book_runs.append(book_images_per_second(copy.deepcopy(model), loader, device, steps,
                                                warmup, learning_rate(model, config, batch_size)))
    nas_ips, book_ips = max(nas_runs), max(book_runs)
    return BenchResult(
        spec=name or str(spec), dataset=data.name, batch_size=batch_size, steps=steps,
        warmup_steps=warmup, book_workers=book_workers, nas_images_per_second=nas_ips,
        book_images_per_second=book_ips, speedup=nas_ips / book_ips, nas_runs=nas_runs,
        book_runs=book_runs, environment=environment(device),
    )


__all__ = ["BenchResult", "ImageFiles", "bench", "book_images_per_second", "book_loader",
           "files_loader"]
