"""Preparing a user's image folder: decoding throughput, the second run's load time, and the
memory of worker processes that share the prepared cache.

Writes (once, under --root) Fashion-MNIST's 60,000 training images as a PNG ImageFolder and
--jpegs colour JPEGs of about 256 px (Fashion-MNIST images tinted per class and enlarged), then
for each folder, with an empty cache:

- first run: a fresh process loads the folder (lists files, reads headers, decodes with every
  core into the prepared cache, computes the training statistics); images/s of decoding;
- second run: another fresh process loads it again (lists and stats the files, maps the cache);
- workers: 1, 2 and 4 processes started together each load the prepared data by its
  fingerprint (as search workers do), train a few steps and read every training image once
  (as an epoch would); when all have, each reports its peak RSS (VmHWM), RSS, USS (private:
  Private_Clean + Private_Dirty), anonymous memory and shared file pages, from
  /proc/self/smaps_rollup. The cache's pages count in RSS; with one worker they are also
  "private" (no other process maps them), with several they are shared. A baseline worker
  does the same with 1,024 images held in memory, indexed to the data set's split sizes (the
  same batches, validation and pass, only the storage differs): what training itself needs.

Run under nice on a quiet machine: python benchmarks/data_prepare.py --root /tmp/nas-bench-data
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SPECS = {  # a small ResNet per data set (1 channel at 28 px, 3 channels at 64 px)
    1: {"family": "resnet", "in_channels": 1, "num_classes": 10, "input_size": 28,
        "depths": [1, 1], "widths": [16, 32], "stem": "small", "stem_width": 16},
    3: {"family": "resnet", "in_channels": 3, "num_classes": 10, "input_size": 64,
        "depths": [1, 1], "widths": [16, 32], "stem": "small", "stem_width": 16},
}


def fashion() -> tuple[np.ndarray, np.ndarray]:
    import nas.data as nd

    raw = nd.load_raw(nd.DATASETS["fashion-mnist"])
    return raw.train_x[:, 0].numpy(), raw.train_y.numpy()


def write_pngs(items: Sequence[tuple[str, np.ndarray]]) -> list[None]:
    from PIL import Image

    for path, pixels in items:
        Image.fromarray(pixels).save(path)
    return [None] * len(items)


def write_jpegs(items: Sequence[tuple[str, np.ndarray, int, int]]) -> list[None]:
    from PIL import Image

    tints = np.random.default_rng(0).uniform(0.3, 1.0, (10, 3)).astype(np.float32)
    for path, pixels, label, width in items:
        rgb = (pixels[..., None].astype(np.float32) * tints[label]).astype(np.uint8)
        image = Image.fromarray(rgb, "RGB").resize((width, 256), Image.Resampling.BICUBIC)
        image.save(path, quality=90)
    return [None] * len(items)


def write_folders(root: Path, pngs_wanted: int, jpegs: int) -> dict[str, Path]:
    """The two folders, written with every core unless they exist already."""
    from nas.data.pool import map_chunks

    x, y = fashion()
    x, y = x[:pngs_wanted], y[:pngs_wanted]
    pngs, colour = root / f"fashion-png-{pngs_wanted}", root / f"colour-jpeg-{jpegs}"
    if not (pngs / "done").exists():
        shutil.rmtree(pngs, ignore_errors=True)
        for label in range(10):
            (pngs / f"class-{label}").mkdir(parents=True)
        items = [(str(pngs / f"class-{y[i]}" / f"{i:05d}.png"), x[i]) for i in range(len(y))]
        map_chunks(write_pngs, items, "writing PNGs", None, 512)
        (pngs / "done").write_text("")
    if not (colour / "done").exists():
        shutil.rmtree(colour, ignore_errors=True)
        for label in range(10):
            (colour / f"class-{label}").mkdir(parents=True)
        items = [(str(colour / f"class-{y[i % len(y)]}" / f"{i:05d}.jpg"), x[i % len(y)],
                  int(y[i % len(y)]), 256 + 32 * (i % 3)) for i in range(jpegs)]
        map_chunks(write_jpegs, items, "writing JPEGs", None, 256)
        (colour / "done").write_text("")
    return {"fashion-png": pngs, "colour-jpeg": colour}


def memory() -> dict[str, int]:
    """This process's memory figures in bytes (smaps_rollup, and VmHWM: peak RSS)."""
    figures: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        figures[name.rstrip(":")] = int(value) * 1024
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            figures["VmHWM"] = int(line.split()[1]) * 1024
    figures["USS"] = figures["Private_Clean"] + figures["Private_Dirty"]
    return figures


def load_once(folder: str, size: int, cache: str, out: Any) -> None:
    """A fresh process: load the folder once; its phases' durations."""
    os.environ["NAS_DATA_DIR"] = cache
    import nas.data as nd

    marks: dict[str, list[float]] = {}

    def progress(phase: str, done: int, total: int) -> None:
        marks.setdefault(phase, [time.perf_counter(), 0.0])[1] = time.perf_counter()

    start = time.perf_counter()
    data = nd.load_data(folder, input_size=size, progress=progress)
    seconds = time.perf_counter() - start
    out.put({"seconds": seconds, "phases": {k: v[1] - v[0] for k, v in marks.items()},
             "images": sum(data.counts().values()), "fingerprint": data.fingerprint,
             "counts": data.counts(),
             "cache_bytes": int(data.train_x.base.numel())})


def in_memory(counts: dict[str, int], size: int, channels: int) -> Any:
    """1,024 random images in memory, viewed as splits of the given sizes."""
    import torch

    import nas.data as nd

    base = torch.randint(0, 256, (1024, channels, size, size), dtype=torch.uint8)
    labels = torch.randint(0, 10, (1024,))

    def split(n: int) -> tuple[Any, torch.Tensor]:
        index = torch.arange(n) % 1024
        return nd.IndexView(base, index), labels[index]

    return nd.DataSplits("memory", *split(counts["train"]), *split(counts["val"]),
                         *split(0), 10, channels, size, (0.5,) * channels,
                         (0.25,) * channels, torch.device("cpu"))


def train_worker(folder: str | None, size: int, channels: int, cache: str, steps: int,
                 fingerprint: str, counts: dict[str, int], barriers: Any, out: Any) -> None:
    """Loads the prepared data (or 1,024 in-memory images when `folder` is None), trains a
    few steps, reads every training image once; reports its memory."""
    os.environ["NAS_DATA_DIR"] = cache
    import torch

    import nas.data as nd
    from nas.train import Budget, TrainConfig, fit, seeded_build

    torch.set_num_threads(1)
    barriers[0].wait()
    if folder is None:
        data = in_memory(counts, size, channels)
    else:
        data = nd.load_data(folder, input_size=size, fingerprint=fingerprint)
    model = seeded_build(SPECS[channels])
    fit(model, data, Budget(epochs=1, max_steps=steps, batch_size=128), TrainConfig(threads=1))
    for start in range(0, len(data.train_x), 4096):  # every page of the training images
        data.train_x[start:start + 4096].float().sum()
    barriers[1].wait()  # every worker has mapped every page: shared pages show as shared
    out.put(memory())
    barriers[2].wait()


def run_memory(folder: Path | None, size: int, channels: int, cache: Path, workers: int,
               steps: int, fingerprint: str, counts: dict[str, int]) -> list[dict[str, int]]:
    ctx = mp.get_context("spawn")
    queue, barriers = ctx.Queue(), [ctx.Barrier(workers) for _ in range(3)]
    procs = [ctx.Process(target=train_worker, args=(None if folder is None else str(folder),
                                                    size, channels, str(cache), steps,
                                                    fingerprint, counts, barriers, queue))
             for _ in range(workers)]
    for p in procs:
        p.start()
    found = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    return found


def fresh(target: Any, *args: Any) -> Any:
    """target(*args, queue) in a fresh (spawned) process; what it put."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, queue))
    p.start()
    found = queue.get(timeout=3600)
    p.join()
    return found


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/nas-bench-data"))
    parser.add_argument("--pngs", type=int, default=60_000, help="at most 60,000")
    parser.add_argument("--jpegs", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"{len(os.sched_getaffinity(0))} cores", flush=True)
    folders = write_folders(args.root, args.pngs, args.jpegs)
    settings = {"fashion-png": (28, 1), "colour-jpeg": (64, 3)}
    loads, mem = [], []
    for name, folder in folders.items():
        size, channels = settings[name]
        cache = args.root / f"cache-{name}"
        shutil.rmtree(cache, ignore_errors=True)
        first = fresh(load_once, str(folder), size, str(cache))
        second = fresh(load_once, str(folder), size, str(cache))
        loads.append((name, size, channels, first, second))
        print(f"{name}: first {first['seconds']:.1f} s, second {second['seconds']:.2f} s",
              flush=True)
        for workers in map(int, args.workers.split(",")):
            for figures in run_memory(folder, size, channels, cache, workers, args.steps,
                                      first["fingerprint"], first["counts"]):
                mem.append((name, workers, first["cache_bytes"], figures))
        for figures in run_memory(None, size, channels, cache, 1, args.steps, "",
                                  first["counts"]):
            mem.append((f"{name} baseline (1,024 images in memory)", 1, 0, figures))
    report(loads, mem)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def report(loads: list[tuple], mem: list[tuple]) -> None:
    """The tables, in Markdown."""
    print("\n| data set | images | prepared at | first load | headers | decoding | decoded "
          "images/s | second load | second / first |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, size, channels, first, second in loads:
        headers_s = first["phases"].get("reading image headers", float("nan"))
        decode_s = first["phases"].get("decoding images", float("nan"))
        print(f"| {name} | {first['images']:,} | {channels}x{size}x{size} | "
              f"{first['seconds']:.1f} s | {headers_s:.1f} s | {decode_s:.1f} s | "
              f"{first['images'] / decode_s:,.0f} | {second['seconds']:.2f} s | "
              f"{second['seconds'] / first['seconds']:.3f} |")
    print("\n| data set | workers | cache MiB | peak RSS MiB | RSS MiB | USS MiB | anonymous MiB "
          "| shared file MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    grouped: dict[tuple[str, int], list[dict[str, int]]] = {}
    sizes: dict[str, int] = {}
    for name, workers, cache_bytes, figures in mem:
        grouped.setdefault((name, workers), []).append(figures)
        sizes[name] = cache_bytes
    for (name, workers), rows in grouped.items():
        def worst(key: str, rows: list[dict[str, int]] = rows) -> str:
            return mib(max(r[key] for r in rows))
        print(f"| {name} | {workers} | {mib(sizes[name]) if sizes[name] else '-'} | "
              f"{worst('VmHWM')} | {worst('Rss')} | {worst('USS')} | {worst('Anonymous')} | "
              f"{worst('Shared_Clean')} |")


if __name__ == "__main__":
    main()
