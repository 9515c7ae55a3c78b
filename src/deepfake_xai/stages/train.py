"""Stage train: one model on one train set (weights, per-epoch log, train.json), then its predictions
of the configured test parts with the saved best-epoch weights, pooled into ``combined``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..sets import parts_of
from .spec import Option, json_object, model_inputs

HELP = "train one model on one train set"
EXAMPLE = ("deepfake-xai train --cache cache/native_c64.npy --cache-index cache/native_c64.parquet "
           "--manifest manifest.parquet --dataset synthetic --settings-json '{\"arch\": \"mnasnet_100\", ...}' "
           "--train-set presocial --out-dir models/mnasnet_100/presocial")
GPU_OPTION = "device"
OPTIONS = (
    *model_inputs("compute.train_threads"),
    Option("--train-set", "presocial, a platform, combined or a protocol", required=True),
    Option("--train-rows", "a protocol train set's rows: {\"part\": ..., \"generators\": [...]} (the reals of the part "
           "and the fakes of those generators)", type=json_object),
    Option("--out-dir", "gets model.safetensors, log.csv and train.json", required=True),
    Option("--parts", "test parts to predict with the saved weights right after training", nargs="*",
           default=[], config=lambda c: parts_of(c["test_sets"], c["data"]["parts"])),
    Option("--predictions", "one predictions Parquet per --parts entry", nargs="*", default=[]),
    Option("--combined", "also write the parts pooled (the combined test set) here"),
    Option("--validation", "also write the pre-social validation images' predictions here (the calibration "
           "report chooses its decision threshold on them)"),
    Option("--model", "the config's name for the model, recorded in train.json (default: its arch)"),
    Option("--init-weights", "the pretrained backbone to start from (the pretrained stage's safetensors), "
           "required when the settings say pretrained: true"),
    Option("--loader-workers", "batches one background thread reads ahead (default: the settings' "
           "loader_workers, else 2)", type=int, speed="model.loader_workers"),
)


def run(args: argparse.Namespace) -> None:
    from ..data.cache import ImageCache
    from ..data.manifest import read_manifest
    from ..evaluate import check_prediction_outputs, predict_parts, write_predictions
    from ..names import part_order
    from ..runtime import inference_batch_size
    from ..train import train

    check_prediction_outputs(args.parts, args.predictions, args.combined, "--predictions")
    if args.loader_workers is not None:
        args.settings_json = {**args.settings_json, "loader_workers": args.loader_workers}
    cache = ImageCache(args.cache, args.cache_index).check_settings(args.settings_json)
    manifest = read_manifest(args.manifest, args.dataset)
    check_prediction_outputs(args.parts, args.predictions, args.combined, "--predictions",
                             part_order(manifest["platform"].unique()))
    summary = train(cache=cache, manifest=manifest, train_set=args.train_set, settings=args.settings_json,
                    out_dir=args.out_dir, threads=args.threads, device=args.device, progress=not args.quiet,
                    model_name=args.model, train_rows=args.train_rows,
                    init_weights=args.init_weights)
    if summary.get("rank", 0) != 0:  # another torchrun process: rank 0 writes every output
        return
    print(f"best epoch {summary['best_epoch']}: val balanced accuracy "
          f"{summary['best_val_balanced_accuracy']:.4f}; {summary['images_per_s']:.1f} images/s on {summary['device']}")
    if args.parts or args.validation:
        # The saved (best-epoch) weights, read back exactly as a separate `predict` would read them.
        preds = predict_parts(weights=Path(args.out_dir) / "model.safetensors", settings=args.settings_json,
                              cache=cache, manifest=manifest, parts=args.parts,
                              batch_size=inference_batch_size(args.settings_json), threads=args.threads,
                              device=args.device, validation=bool(args.validation), show=not args.quiet)
        write_predictions(preds, args.parts, args.predictions, args.combined, args.validation)
