"""Training images/s fed from the uint8 memory-mapped cache vs from tensors already on the device.

Both paths run the same model, optimizer and on-device crop/flip/normalize code of
``deepfake_xai.train``; only the feeding differs. Prints the two rates and their ratio last
(target on a GPU: >= 0.95).

    python benchmarks/train_throughput.py                       # CPU defaults (small)
    python benchmarks/train_throughput.py --model efficientnet_b2 --size 256 --batch 128 --steps 40
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from common import device_of, parser

from deepfake_xai.data.cache import ImageCache
from deepfake_xai.models import create_model
from deepfake_xai.runtime import Batches, Runner
from deepfake_xai.train import make_optimizer


def make_cache(folder: Path, n: int, side: int, seed: int = 0) -> ImageCache:
    """A cache file of ``n`` random images (content does not change the speed)."""
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(folder / "bench.npy", mode="w+", dtype=np.uint8, shape=(n, side, side, 3))
    for i in range(0, n, 256):
        arr[i : i + 256] = rng.integers(0, 256, (min(256, n - i), side, side, 3), dtype=np.uint8)
    arr.flush()
    del arr
    pd.DataFrame({"image_id": [f"img{i}" for i in range(n)], "row": np.arange(n)}).to_parquet(folder / "bench.parquet")
    return ImageCache(folder / "bench.npy", folder / "bench.parquet")


def run(runner: Runner, optimizer, batches, steps: int, warmup: int, crop: int) -> float:
    """Images/s over ``steps`` training steps after ``warmup`` steps."""
    runner.model.train()
    seen, t0, done = 0, None, 0
    gen = torch.Generator().manual_seed(0)
    while done < warmup + steps:
        for x, y in batches:
            if done == warmup:
                if runner.cuda:
                    torch.cuda.synchronize()
                t0, seen = time.perf_counter(), 0
            b = len(y)
            offsets = torch.randint(0, crop + 1, (b, 2), generator=gen).to(runner.device)
            flips = (torch.rand(b, generator=gen) < 0.5).to(runner.device)
            logits = runner.logits(runner.inputs(x, offsets, flips))
            loss = F.cross_entropy(logits, y.to(runner.device, non_blocking=True))
            optimizer.zero_grad(set_to_none=runner.cuda)
            loss.backward()
            optimizer.step()
            seen += b
            done += 1
            if done == warmup + steps:
                break
    if runner.cuda:
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


class InMemory:
    """Batches of a uint8 tensor already on the device (the upper bound for any loader)."""

    def __init__(self, data: torch.Tensor, batch: int):
        self.data, self.batch = data, batch
        self.labels = torch.randint(0, 2, (len(data),), device=data.device)

    def __iter__(self):
        perm = torch.randperm(len(self.data), device=self.data.device)
        for i in range(0, len(perm) - self.batch + 1, self.batch):
            idx = perm[i : i + self.batch]
            yield self.data[idx], self.labels[idx]


def main() -> None:
    p = parser(__doc__, model="mnasnet_100", size=64, batch=32)
    p.add_argument("--cached", type=int, default=None, help="cached image side (default size + 8)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--loader-workers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per feeder (best kept)")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    device = device_of(args)
    cached = args.cached or args.size + 8
    settings = {"image_size": args.size, "amp": True, "channels_last": True, "compile": args.compile,
                "lr": 1e-3, "weight_decay": 1e-4, "optimizer": "adamw"}
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp), args.images, cached)
        torch.manual_seed(0)
        runner = Runner(create_model(args.model), device, settings)
        opt = make_optimizer(runner.model, settings)
        mem = InMemory(torch.from_numpy(np.array(cache.array)).to(device), args.batch)
        labels = np.random.default_rng(0).integers(0, 2, args.images)
        from_cache = Batches(cache, np.arange(args.images), labels, args.batch, shuffle_seed=0,
                             prefetch=args.loader_workers, pin=runner.cuda)
        run(runner, opt, mem, 2, args.warmup, cached - args.size)  # shared warm-up (kernels, compile)
        # Alternate the feeders so clock boost and allocator state favour neither; keep each best.
        rates_mem, rates_cache = [], []
        for _ in range(args.rounds):
            rates_mem.append(run(runner, opt, mem, args.steps, args.warmup, cached - args.size))
            rates_cache.append(run(runner, opt, from_cache, args.steps, args.warmup, cached - args.size))
        rate_mem, rate_cache = max(rates_mem), max(rates_cache)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({args.threads} threads)"
    figures = {"model": args.model, "size": args.size, "batch": args.batch, "device": dev_name,
               "in_memory_images_per_s": round(rate_mem, 1), "cache_images_per_s": round(rate_cache, 1),
               "ratio": round(rate_cache / rate_mem, 3)}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(f"model {args.model}, {args.size} px, batch {args.batch}, on {dev_name}")
    print(f"in-memory tensors: {rate_mem:.1f} images/s")
    print(f"memory-mapped cache: {rate_cache:.1f} images/s")
    print(f"ratio cache / in-memory: {rate_cache / rate_mem:.3f}")


if __name__ == "__main__":
    main()
