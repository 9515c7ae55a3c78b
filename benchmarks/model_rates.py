"""Each model of a config at its own settings: training images/s fed from the memory-mapped cache (bf16
and channels_last on a GPU, as the training job runs), inference images/s, and for a linear-probe model
(``freeze_backbone``) the one feature pass instead of training; then the config's grid projected in
GPU-hours from those measured rates (training, validation, test predictions, cache and heatmaps).

    # on a GPU, the paper's config (256 px; clip_vitb16 at 224):
    python benchmarks/model_rates.py --config config/trueface.yaml --device cuda --json rates.json \\
        --cache-json cache_throughput.json --heatmap-json heatmap_throughput.json
    # a CPU rehearsal: every model and path, small sizes
    python benchmarks/model_rates.py --config config/trueface.yaml --device cpu --size 64 --batch 8 \\
        --steps 2 --warmup 1 --images 32

Weights are random (no network needed): speed does not depend on them. The image counts of the
projection come from ``--manifest`` (a real run's manifest.parquet) or, by default, from TrueFace's
published sizes (Boato et al., IJCB 2022; the slides' Tables 1 and 2) split by the config's fractions.
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import device_of, parser
from train_throughput import make_cache, run

from deepfake_xai import config as dxcfg
from deepfake_xai import sets
from deepfake_xai.explain.catalog import default_methods
from deepfake_xai.models import create_model
from deepfake_xai.runtime import Batches, Runner, inference_batch_size
from deepfake_xai.train import backbone_features, make_optimizer

REPO = Path(__file__).resolve().parents[1]

# TrueFace (Boato et al., IJCB 2022): pre-social 70K real + 80K StyleGAN/StyleGAN2; each platform 10K
# real + 10K fake (the slides' Tables 1 and 2). Used only when no --manifest is given.
TRUEFACE_PART_IMAGES = {"presocial": 150_000, "facebook": 20_000, "telegram": 20_000, "twitter": 20_000}
TOKEN_PREFIXES = ("vit_", "deit_", "eva", "beit")


def model_for(settings: dict, size_override: int | None) -> torch.nn.Module:
    """The model's architecture with random weights; a token model built for the overridden size."""
    model_args = dict(settings.get("model_args") or {})
    if size_override and settings["arch"].startswith(TOKEN_PREFIXES):
        model_args["img_size"] = size_override
    return create_model(settings["arch"], model_args=model_args or None)


def measure(name: str, settings: dict, args, dev: torch.device) -> dict:
    """One model's rates: training (or the frozen feature pass) and inference, from a cache of random
    images at the model's cached side."""
    size = args.size or int(settings["image_size"])
    side = args.size + 8 if args.size else int(settings["center_crop"])
    run_settings = {**settings, "image_size": size, "batch_size": args.batch, "compile": False,
                    "loader_workers": args.loader_workers}
    torch.manual_seed(0)
    runner = Runner(model_for(settings, args.size), dev, run_settings)
    figures = {"model": name, "arch": settings["arch"], "size": size, "cached_side": side, "batch": args.batch,
               "frozen_backbone": bool(settings.get("freeze_backbone")), "bf16": runner.amp,
               "channels_last": runner.channels_last}
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp), args.images, side)
        rows, labels = np.arange(args.images), np.random.default_rng(0).integers(0, 2, args.images)
        if settings.get("freeze_backbone"):
            backbone_features(runner, cache, rows[: 2 * args.batch], run_settings)  # warm-up
            sync(runner)
            t0 = time.perf_counter()
            backbone_features(runner, cache, rows, run_settings)
            sync(runner)
            figures["feature_images_per_s"] = args.images / (time.perf_counter() - t0)
        else:
            opt = make_optimizer(runner.model, run_settings)
            feed = Batches(cache, rows, labels, args.batch, shuffle_seed=0, prefetch=args.loader_workers,
                           pin=runner.cuda, drop_last=True)
            figures["train_images_per_s"] = run(runner, opt, feed, args.steps, args.warmup, side - size)
        runner.model.eval()
        batch = inference_batch_size(run_settings)
        runner.predict(Batches(cache, rows[:batch], labels[:batch], batch, prefetch=0))  # warm-up
        sync(runner)
        t0 = time.perf_counter()
        runner.predict(Batches(cache, rows, labels, batch, prefetch=args.loader_workers, pin=runner.cuda))
        sync(runner)
        figures["inference_images_per_s"] = args.images / (time.perf_counter() - t0)
    return figures


def sync(runner: Runner) -> None:
    if runner.cuda:
        torch.cuda.synchronize()


def part_images(config: dict, manifest: str | None) -> dict[str, dict[str, int]]:
    """Images per part and split: counted in a manifest, or TrueFace's sizes split by the config."""
    if manifest:
        import pandas as pd

        df = pd.read_parquet(manifest, columns=["platform", "split"])  # platform: the part (presocial, ...)
        return {str(p): {s: int((g["split"] == s).sum()) for s in ("train", "val", "test")}
                for p, g in df.groupby("platform")}
    fr = config["data"]["splits"]
    out = {}
    for part, n in TRUEFACE_PART_IMAGES.items():
        val, test = round(n * fr["val_fraction"]), round(n * fr["test_fraction"])
        out[part] = {"train": n - val - test, "val": val, "test": test}
    return out


def first_rate(path: str | None, pick) -> float | None:
    if not path or not Path(path).exists():
        return None
    try:
        return pick(json.loads(Path(path).read_text()))
    except (KeyError, ValueError, StopIteration, TypeError):
        return None


def projection(config: dict, rates: dict[str, dict], args) -> dict:
    """GPU-seconds of the grid from the measured rates: each training's epochs (or its one feature
    pass), its validation each epoch and BN recalibration, its test and pre-social validation
    predictions, the explained cells' robustness curves, the caches, the heatmaps; ``left_out`` names
    what is not counted."""
    counts = part_images(config, args.manifest)
    parts = list(counts)

    def images(train_set: str, split: str) -> int:
        members = parts if train_set == sets.COMBINED else [train_set]
        return sum(counts[p][split] for p in members)

    test_images = sum(c["test"] for c in counts.values())
    seconds = {"training": 0.0, "validation": 0.0, "predictions (test, pre-social val)": 0.0}
    missing, left_out = [], ["activation maximization, cascading randomization, drift, controlled check (seconds per cell)"]
    for model, train_set in dxcfg.training_pairs(config):
        r, s = rates.get(model), dxcfg.model_settings(config, model)
        if r is None or "error" in r:
            missing.append(f"{model}/{train_set}")
            continue
        if train_set not in parts and train_set != sets.COMBINED:  # a protocol: a part less held-out fakes
            missing.append(f"{model}/{train_set} (a protocol)")
            continue
        n_train, n_val, epochs = images(train_set, "train"), images(train_set, "val"), int(s["epochs"])
        if r["frozen_backbone"]:
            seconds["training"] += (n_train + n_val) / r["feature_images_per_s"]
        else:
            seconds["training"] += epochs * n_train / r["train_images_per_s"]
            recal = int(s.get("bn_recalibration") or 0)
            seconds["validation"] += epochs * (n_val + recal) / r["inference_images_per_s"]
        # the training job predicts every test image and the pre-social validation images (calibration)
        seconds["predictions (test, pre-social val)"] += (
            (test_images + counts.get(sets.PRESOCIAL, {}).get("val", 0)) / r["inference_images_per_s"])
    # the explained cells' robustness curves: the cell's test images (xai.robustness_images, 0: all),
    # clean and at every JPEG quality and scale, at the model's measured inference rate
    passes = 1 + len(config["xai"]["jpeg_qualities"]) + len(config["xai"]["scales"])
    for model, train_set, test_set in dxcfg.explain_cells(config):
        r = rates.get(model)
        if r is None or "error" in r:
            missing.append(f"robustness of {model}/{train_set}/{test_set}")
            continue
        n = images(test_set, "test")
        n = min(n, config["xai"]["robustness_images"]) if config["xai"]["robustness_images"] else n
        seconds["robustness curves"] = seconds.get("robustness curves", 0.0) + passes * n / r["inference_images_per_s"]
    total_images = sum(sum(c.values()) for c in counts.values())
    caches = {dxcfg.cache_name(dxcfg.model_settings(config, m)) for m in config["models"]}
    def cache_rate(fmt: str, decoder: str):
        return first_rate(args.cache_json, lambda rs: max(r["images_per_s"] for r in rs
                                                          if r["format"] == fmt and r["decoder"].startswith(decoder)))

    png_rate, jpeg_rate = cache_rate("PNG", "PIL"), cache_rate("JPEG", "torchvision-cuda") or cache_rate("JPEG", "PIL")
    if png_rate and jpeg_rate:  # pre-social PNGs through PIL processes; the shared JPEGs through nvJPEG if measured
        png = sum(counts.get(sets.PRESOCIAL, {}).values())
        seconds["caches"] = len(caches) * (png / png_rate + (total_images - png) / jpeg_rate)
    gradcam = first_rate(args.heatmap_json, lambda d: d["bulk_images_per_s"])
    if gradcam:
        maps = len(dxcfg.explain_cells(config)) * int(config["explain"]["n_images"]) * len(config["explain"].get("methods") or default_methods())
        seconds["heatmaps (at Grad-CAM's rate)"] = maps / gradcam
    return {"images": counts, "seconds": seconds, "not_measured": missing, "left_out": left_out, "caches": sorted(caches),
            "gpu_hours": sum(seconds.values()) / 3600}


def main() -> None:
    p = parser(__doc__, model="", size=0, batch=128)
    p.add_argument("--config", default=str(REPO / "config/trueface.yaml"), help="the config whose models and grid")
    p.add_argument("--models", nargs="*", help="measure only these (default: every model of the config)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--images", type=int, default=2048, help="images in the benchmark cache (per model)")
    p.add_argument("--loader-workers", type=int, default=4)
    p.add_argument("--manifest", help="count the projection's images in this manifest.parquet")
    p.add_argument("--cache-json", help="cache_throughput.py's JSON: adds the cache builds to the projection")
    p.add_argument("--heatmap-json", help="heatmap_throughput.py's JSON: adds the heatmaps (at Grad-CAM's rate)")
    args = p.parse_args()
    args.size = args.size or None
    dev = device_of(args)
    config = dxcfg.load(args.config, schema=str(REPO / "workflow/schemas/config.schema.yaml"))
    names = args.models or list(config["models"])
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({args.threads} threads)"
    print(f"{'model':<16} {'arch':<28} {'px':>4} {'train img/s':>12} {'features img/s':>15} {'inference img/s':>16}",
          flush=True)
    rates: dict[str, dict] = {}
    for name in names:
        settings = dxcfg.model_settings(config, name)
        try:
            r = measure(name, settings, args, dev)
        except (RuntimeError, ValueError) as err:  # out of memory, an input size the model refuses: go on
            r = {"model": name, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
            print(f"{name:<16} FAILED {r['error']}", flush=True)
        else:
            print(f"{name:<16} {r['arch']:<28} {r['size']:>4} {r.get('train_images_per_s', float('nan')):>12.1f} "
                  f"{r.get('feature_images_per_s', float('nan')):>15.1f} {r['inference_images_per_s']:>16.1f}",
                  flush=True)
        rates[name] = r
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if args.json:  # after each model: a run stopped by its time limit keeps what it measured
            Path(args.json).write_text(json.dumps({"device": card, "rates": rates}, indent=2) + "\n")
    proj = projection(config, rates, args)
    source = args.manifest or "TrueFace's published sizes"
    print(f"\nprojected grid of {args.config} ({len(dxcfg.training_pairs(config))} trainings; images from {source}) "
          f"on {card}:")
    for part, seconds in proj["seconds"].items():
        print(f"  {part:<36} {seconds / 3600:7.2f} h")
    print(f"  {'total':<36} {proj['gpu_hours']:7.2f} h on this device (target on an H100: <= 2)")
    if proj["not_measured"]:
        print(f"  not in the total (no rate): {', '.join(proj['not_measured'])}")
    for left in proj["left_out"]:
        print(f"  not in the total: {left}")
    for left in ("caches", "heatmaps (at Grad-CAM's rate)"):
        if left not in proj["seconds"]:
            print(f"  not in the total: {left} (pass --{'cache' if left == 'caches' else 'heatmap'}-json)")
    if args.size:
        print(f"  (rates measured at {args.size} px, not the config's sizes: a rehearsal, not a projection)")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": card, "rates": rates, "projection": proj}, indent=2) + "\n")


if __name__ == "__main__":
    main()
