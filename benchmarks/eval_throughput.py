"""Evaluation images/s: a trained-size model predicting from the memory-mapped cache through
``deepfake_xai.train.Runner.predict`` (the path the training job's predictions take), eager and,
optionally, with torch.compile. Prints the figures last.

    python benchmarks/eval_throughput.py                                   # CPU defaults (small)
    python benchmarks/eval_throughput.py --model efficientnet_b2 --size 256 --batch 512 --images 8192
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import device_of, parser
from train_throughput import make_cache

from deepfake_xai.models import create_model
from deepfake_xai.runtime import Batches, Runner


def main() -> None:
    p = parser(__doc__, model="mnasnet_100", size=64, batch=128)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--loader-workers", type=int, default=4)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (CUDA only)")
    args = p.parse_args()
    dev = device_of(args)
    settings = {"image_size": args.size, "amp": True, "channels_last": True}
    figures = {"model": args.model, "size": args.size, "batch": args.batch, "device": str(dev),
               "card": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp), args.images, args.size)
        rows = np.arange(args.images)
        labels = np.zeros(args.images, dtype=np.int64)
        variants = [("eager", False)] + ([("compiled", True)] if args.compile and dev.type == "cuda" else [])
        for name, compiled in variants:
            runner = Runner(create_model(args.model).eval(), dev, {**settings, "compile": compiled})
            warm = Batches(cache, rows[: 2 * args.batch], labels[: 2 * args.batch], args.batch, prefetch=0)
            runner.predict(warm)  # cuDNN autotuning / compilation
            batches = Batches(cache, rows, labels, args.batch, prefetch=args.loader_workers, pin=runner.cuda)
            if runner.cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            runner.predict(batches)
            if runner.cuda:
                torch.cuda.synchronize()
            figures[f"{name}_images_per_s"] = args.images / (time.perf_counter() - t0)
            if args.json:  # after each variant: a compile stopped by a time limit keeps the eager figure
                Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
