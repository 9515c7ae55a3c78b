"""Image-cache build rate per core: 1024 x 1024 PNG (TrueFace pre-social) and JPEG (post-social)
images decoded, resized to 256 and center-cropped, through `deepfake_xai.data.cache.build_cache` with
1 and with all cores. Prints the figures last.

    .venv/bin/python benchmarks/cache_throughput.py [--images 96] [--size 1024] [--jpeg-device cpu|cuda]

``--jpeg-device`` adds rows for the JPEGs decoded by torchvision on that device (``cuda``: nvJPEG,
batched; ``cpu``: libjpeg-turbo in this process), next to PIL in 1 and in all-core processes.

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
    p.add_argument("--jpeg-device", action="append", default=[],
                   help="also decode the JPEGs with torchvision on this device (repeatable)")
    p.add_argument("--json", help="also write the figures to this JSON file")
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
                rows.append({"image_id": f"{fmt}{i}", "path": rel, "format": fmt, "mode": "RGB"})
            manifest = pd.DataFrame(rows)
            mb = sum((work / r["path"]).stat().st_size for r in rows) / len(rows) / 2**20
            runs = [("PIL", w, None) for w in sorted({1, cores})]
            if fmt == "JPEG":
                runs += [(f"torchvision-{d}", 1, d) for d in args.jpeg_device]
            for decoder, workers, device in runs:
                if device:  # warm-up: CUDA context, nvJPEG handles
                    build_cache(manifest.head(8), work, work / "w.npy", work / "w.parquet", resize=args.resize,
                                center_crop=args.resize, progress=False, jpeg_device=device)
                t0 = time.perf_counter()
                n = build_cache(manifest, work, work / f"{fmt}.npy", work / f"{fmt}.parquet", resize=args.resize,
                                center_crop=args.resize, workers=workers, progress=False, jpeg_device=device)
                dt = time.perf_counter() - t0
                results.append({"format": fmt, "decoder": decoder, "workers": workers, "images_per_s": n / dt,
                                "per_core": n / dt / workers, "mb_per_image": mb})
        print(f"{'format':<6} {'decoder':<17} {'workers':>7} {'images/s':>9} {'per core':>9} {'MB/image':>9}")
        for r in results:
            print(f"{r['format']:<6} {r['decoder']:<17} {r['workers']:>7} {r['images_per_s']:>9.1f} "
                  f"{r['per_core']:>9.1f} {r['mb_per_image']:>9.2f}")
        if args.json:
            import json

            Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"cache build, {args.size} px -> resize {args.resize}: "
              + "; ".join(f"{r['format']} {r['decoder']} {r['per_core']:.1f} images/s per core "
                          f"({r['workers']} workers: {r['images_per_s']:.1f})" for r in results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
