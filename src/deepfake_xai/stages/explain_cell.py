"""Stage explain-cell: bulk heatmaps of one (model, train set, test set) cell, every configured method
from one capture per batch, written as one maps file and a few PNG panels."""

from __future__ import annotations

import argparse
from pathlib import Path

from .spec import Option, weights_inputs

HELP = "bulk heatmaps of one (model, train set, test set) cell"
EXAMPLE = ("deepfake-xai explain-cell --weights models/m/presocial/model.safetensors --settings-json '{...}' "
           "--cache cache/native_c64.npy --cache-index cache/native_c64.parquet --manifest manifest.parquet "
           "--dataset synthetic --predictions predictions/m/presocial/twitter.parquet --out maps.npz "
           "--panels-dir panels")
GPU_OPTION = "device"
OPTIONS = (
    *weights_inputs("compute.predict_threads"),
    Option("--cache", "cache array (.npy)", required=True),
    Option("--cache-index", "cache index (.parquet)", required=True),
    Option("--manifest", "manifest.parquet", required=True),
    Option("--dataset", "the dataset name the manifest must carry", required=True, config="dataset"),
    Option("--predictions", "the cell's predictions (for the sample)", required=True),
    Option("--methods", "explanation methods (default: every method that is not opt-in; explain/catalog.py)",
           nargs="+", config="explain.methods"),
    Option("--n-images", "test images explained", type=int, default=16, config="explain.n_images"),
    Option("--shared", "model-independent images first (montages)", type=int, default=4,
           config="explain.shared_images"),
    Option("--panels", "PNG panels written", type=int, default=4, config="explain.panels"),
    Option("--target", "the class explained", choices=("predicted", "fake", "real"), default="predicted",
           config="explain.target"),
    Option("--threshold", "P(fake) at or above which an image is predicted fake (evaluate.threshold)",
           type=float, default=0.5, config="evaluate.threshold"),
    Option("--batch-size", "images per capture", type=int, default=16, config="explain.batch_size"),
    Option("--seed", "sample seed", type=int, default=0, config="explain.seed"),
    Option("--amp", "bf16 forward on CUDA (maps within ~3e-2 of fp32)", switch=True, config="explain.amp"),
    Option("--out", "maps file (.npz)", required=True),
    Option("--panels-dir", "folder of the PNG panels", required=True),
)


def run(args: argparse.Namespace) -> None:
    import torch

    from ..data.cache import ImageCache
    from ..data.manifest import read_manifest
    from ..evaluate import read_prediction_arrays
    from ..explain.bulk import explain_cell, select_sample, write_maps
    from ..explain.catalog import default_methods
    from ..explain.panels import gradcam_panel, save_png
    from ..runtime import crop_batch, explained_model

    settings = args.settings_json
    runner, layer = explained_model(args.weights, settings, args.device, args.threads)
    preds = read_prediction_arrays(args.predictions)
    ids = select_sample(preds, args.n_images, args.shared, args.seed, threshold=args.threshold)
    manifest = read_manifest(args.manifest, args.dataset).set_index("image_id")
    cache = ImageCache(args.cache, args.cache_index).check_settings(args.settings_json)
    crops = crop_batch(torch.from_numpy(cache.read(cache.rows_for(ids))), runner.image_size).numpy()
    images = runner.inputs(torch.from_numpy(crops))
    result = explain_cell(model=runner.model, target_layer=layer, images=images,
                          methods=args.methods or default_methods(), targets=args.target,
                          batch_size=args.batch_size, amp=args.amp, progress=not args.quiet, threshold=args.threshold)
    labels = manifest.loc[ids, "label"].to_numpy()
    write_maps(args.out, image_ids=ids, labels=labels, crops=crops, result=result,
               meta={"arch": settings["arch"], "target_layer": settings.get("target_layer"),
                     "target": args.target, "threshold": args.threshold, "device": str(runner.device)})
    Path(args.panels_dir).mkdir(parents=True, exist_ok=True)
    for i in range(min(args.panels, len(ids))):
        maps = {k: v[i] for k, v in result["maps"].items()}
        save_png(gradcam_panel(crops[i], maps, int(labels[i]), float(result["probs"][i]), args.threshold),
                 Path(args.panels_dir) / f"panel_{i:02d}.png")
    rate = len(ids) / max(1e-9, sum(result["seconds"].values()))
    na = "; ".join(f"{k}: not applicable ({v})" for k, v in result["not_applicable"].items())
    print(f"{len(ids)} images x {len(result['maps'])} methods -> {args.out} ({rate:.1f} images/s)"
          + (f"; {na}" if na else ""))
