"""Image-cache build rate per core: 1024 x 1024 PNG (TrueFace pre-social) and JPEG (post-social)
images decoded, resized to 256 and center-cropped, through `deepfake_xai.data.cache.build_cache` with
1 and with all cores. Prints the figures last.

    .venv/bin/python benchmarks/cache_throughput.py [--images 96] [--size 1024]

The test images are smooth random fields with noise (photo-like compressibility), written once into
a temporary folder; the same decode also gives the naive pipeline's rate (decoding every epoch).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def photo_like(rng: np.random.Generator, size: int) -> Image.Image:
    small = rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC), dtype=np.int16)
    img = img + rng.normal(0, 6, img.shape).astype(np.int16)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--resize", type=int, default=256)
    args = p.parse_args()
    from deepfake_xai.data.cache import build_cache

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    rng = np.random.default_rng(0)
    results = []
    try:
        for fmt, ext in (("PNG", ".png"), ("JPEG", ".jpg")):
            rows = []
            for i in range(args.images):
                rel = f"{fmt.lower()}/{i:05d}{ext}"
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                photo_like(rng, args.size).save(work / rel, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                rows.append({"image_id": f"{fmt}{i}", "path": rel})
            manifest = pd.DataFrame(rows)
            mb = sum((work / r["path"]).stat().st_size for r in rows) / len(rows) / 2**20
            for workers in sorted({1, cores}):
                t0 = time.perf_counter()
                n = build_cache(manifest, work, work / f"{fmt}.npy", work / f"{fmt}.parquet", resize=args.resize,
                                center_crop=args.resize, workers=workers, progress=False)
                dt = time.perf_counter() - t0
                results.append((fmt, workers, n / dt, n / dt / workers, mb))
        print(f"{'format':<6} {'workers':>7} {'images/s':>9} {'per core':>9} {'MB/image':>9}")
        for fmt, workers, rate, per_core, mb in results:
            print(f"{fmt:<6} {workers:>7} {rate:>9.1f} {per_core:>9.1f} {mb:>9.2f}")
        print(f"cache build, {args.size} px -> resize {args.resize}: "
              + "; ".join(f"{fmt} {per_core:.1f} images/s per core ({workers} workers: {rate:.1f})"
                          for fmt, workers, rate, per_core, _ in results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
