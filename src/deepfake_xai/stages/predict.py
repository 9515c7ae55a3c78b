"""Stage predict: a trained model's predictions of test parts, the model loaded once. The DAG runs it
for the cross-dataset cells (a model trained on one dataset, another dataset's test parts); a
training job predicts its own dataset's parts itself (stage train)."""

from __future__ import annotations

import argparse

from .spec import Option, model_inputs

HELP = "predictions of a trained model on test parts"
EXAMPLE = ("deepfake-xai predict --weights w.safetensors --cache c.npy --cache-index c.parquet --manifest "
           "m.parquet --dataset synthetic --settings-json '{...}' --parts twitter --out twitter.parquet")
GPU_OPTION = "device"
OPTIONS = (
    *model_inputs("compute.predict_threads"),
    Option("--weights", "the trained model", required=True),
    Option("--parts", "test parts to predict", nargs="+", required=True),
    Option("--out", "one predictions Parquet per part", nargs="+", required=True),
    Option("--combined", "also write the parts pooled (the combined test set) here"),
    Option("--batch-size", "images per batch (default: the settings' inference batch size)", type=int),
)


def run(args: argparse.Namespace) -> None:
    from ..data.cache import ImageCache
    from ..data.manifest import read_manifest
    from ..evaluate import check_prediction_outputs, predict_parts, write_predictions
    from ..names import part_order
    from ..runtime import inference_batch_size

    check_prediction_outputs(args.parts, args.out, args.combined, "--out")
    manifest = read_manifest(args.manifest, args.dataset)
    check_prediction_outputs(args.parts, args.out, args.combined, "--out", part_order(manifest["platform"].unique()))
    preds = predict_parts(weights=args.weights, settings=args.settings_json,
                          cache=ImageCache(args.cache, args.cache_index).check_settings(args.settings_json), manifest=manifest, parts=args.parts,
                          batch_size=args.batch_size or inference_batch_size(args.settings_json),
                          threads=args.threads, device=args.device, show=not args.quiet)
    write_predictions(preds, args.parts, args.out, args.combined)
