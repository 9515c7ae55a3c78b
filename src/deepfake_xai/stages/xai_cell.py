"""Stage xai-cell: how faithful each method's maps of one explained cell are (deletion/insertion AUC,
ROAD, confidence with the top pixels kept), how well they localize the recorded evidence of fakes
(pointing game, energy in the region), whether they pass the sanity check (randomized weights), and
how robust the model is to re-compression and rescaling."""

from __future__ import annotations

import argparse

from .spec import Option, model_inputs

HELP = "faithfulness, localization, sanity and robustness of one explained cell"
EXAMPLE = ("deepfake-xai xai-cell --weights model.safetensors --settings-json '{...}' --cache c.npy "
           "--cache-index c.parquet --manifest manifest.parquet --dataset synthetic --maps maps.npz "
           "--predictions twitter.parquet --model m --train-set presocial --test-set twitter --out xai.json")
GPU_OPTION = "device"
OPTIONS = (
    *model_inputs("compute.predict_threads"),
    Option("--weights", "the trained model (model.safetensors)", required=True),
    Option("--maps", "the explain stage's maps file of the cell", required=True),
    Option("--predictions", "the cell's predictions (its test images)", required=True),
    Option("--model", "the config's model name (recorded)", required=True),
    Option("--train-set", "recorded", required=True),
    Option("--test-set", "recorded", required=True),
    Option("--n-images", "explained images scored (the first n)", type=int, default=16, config="xai.n_images"),
    Option("--threshold", "P(fake) at or above which an image is predicted fake (robustness accuracy)",
           type=float, default=0.5, config="evaluate.threshold"),
    Option("--steps", "deletion/insertion steps", type=int, default=8, config="xai.steps"),
    Option("--keep", "fraction of pixels kept for the confidence score", type=float, default=0.2, config="xai.keep"),
    Option("--road-percentiles", "ROAD's removed percentiles", type=int, nargs="*", default=[20, 50, 80],
           config="xai.road_percentiles"),
    Option("--jpeg", "JPEG qualities (robustness)", type=int, nargs="*", default=[90, 70, 50, 30],
           config="xai.jpeg_qualities"),
    Option("--scales", "rescale factors (robustness)", type=float, nargs="*", default=[0.5, 0.75, 1.5],
           config="xai.scales"),
    Option("--robustness-images", "test images for robustness (0: all)", type=int, default=0,
           config="xai.robustness_images"),
    Option("--controlled-images", "controlled fakes of the test set scored beside the oracle and random maps "
           "(0: none)", type=int, default=64, config="xai.controlled_images"),
    Option("--replacements", "deletion/insertion curves with these replacements of the removed pixels too "
           "(black, mean, blur, noise, jpeg)", nargs="*", default=[], config="xai.replacements"),
    Option("--cascade-images", "explained images whose maps are recomputed after each step of the cascading "
           "randomization (0: none)", type=int, default=8, config="xai.cascade_images"),
    Option("--drift-images", "pre-social test images with shared copies whose maps are compared with their "
           "copies' (the explained ones first; 0: none)", type=int, default=16, config="xai.drift_images"),
    Option("--batch-size", "images per batch", type=int, default=64, config="xai.batch_size"),
    Option("--seed", "seed of the random parts (robustness subset, randomized weights)", type=int, default=0,
           config="xai.seed"),
    Option("--out", "JSON file", required=True),
)


def _boxes(cell: dict, manifest, settings: dict, size: int) -> list:
    """Each explained image's evidence box in the model's input (None for a real image)."""
    from ..explain.quality import box_in_crop

    boxes = []
    for image_id in cell["image_ids"]:
        row = manifest.loc[str(image_id)]
        box = [row["evidence_x0"], row["evidence_y0"], row["evidence_x1"], row["evidence_y1"]]
        boxes.append(box_in_crop(box, int(row["width"]), int(row["height"]), settings.get("resize"),
                                 int(settings["center_crop"]), size) if row["label"] == 1 else None)
    return boxes


def _controlled(args, runner, layer, cell: dict, manifest, preds, cache, settings: dict, size: int) -> dict | None:
    """The controlled check's scores on this cell's controlled fakes (None where the test set has none)."""
    import torch

    from ..explain.assess import assess_controlled
    from ..explain.quality import box_in_crop
    from ..runtime import crop_batch

    ids = [str(i) for i, y in zip(preds["image_id"], preds["label"], strict=True) if y == 1]
    rows = manifest.loc[ids]
    rows = rows[(rows["generator"] == "controlled") & rows["evidence_x0"].notna()]
    if not args.controlled_images or rows.empty:
        return None
    rows = rows.iloc[: args.controlled_images]
    boxes = [box_in_crop([r.evidence_x0, r.evidence_y0, r.evidence_x1, r.evidence_y1], int(r.width), int(r.height),
                         settings.get("resize"), int(settings["center_crop"]), size) for r in rows.itertuples()]
    keep = [i for i, b in enumerate(boxes) if b is not None]
    ids = list(rows.index[keep])
    crops = crop_batch(torch.from_numpy(cache.read(cache.rows_for(ids))), size).numpy()
    # each fake's real twin (the same file name below Real/): the counterfactual baseline
    twin_of = _twins(manifest, rows.iloc[keep])
    twins = None
    if all(t is not None for t in twin_of):
        twins = crop_batch(torch.from_numpy(cache.read(cache.rows_for(twin_of))), size).numpy()
    return assess_controlled(runner=runner, layer=layer, crops=crops, boxes=[boxes[i] for i in keep],
                             methods=sorted(cell["maps"]), steps=args.steps, batch_size=args.batch_size,
                             seed=args.seed, twins=twins, replacements=args.replacements, image_ids=[str(i) for i in ids],
                             threshold=args.threshold)


def _drift(args, runner, layer, cell: dict, manifest, cache, settings: dict, size: int) -> dict | None:
    """Explanation drift under sharing for up to ``--drift-images`` pre-social test images that have
    shared copies: the cell's explained ones first, then others of the test split in a seeded order."""
    import numpy as np
    import torch

    from ..explain.assess import assess_drift
    from ..explain.quality import input_window
    from ..runtime import crop_batch
    from ..sets import PRESOCIAL

    test = manifest[manifest["split"] == "test"]
    shared = test[test["platform"] != PRESOCIAL]
    pre = test[(test["platform"] == PRESOCIAL) & test["source_id"].isin(set(shared["source_id"]))]
    if not args.drift_images or pre.empty or not sorted(cell["maps"]):
        return None
    explained = [str(i) for i in cell["image_ids"] if str(i) in pre.index]
    rest = [i for i in np.random.default_rng(args.seed).permutation(sorted(pre.index)) if i not in set(explained)]
    ids = (explained + rest)[: args.drift_images]

    def crops_and_windows(image_ids):
        rows = manifest.loc[image_ids]
        crops = crop_batch(torch.from_numpy(cache.read(cache.rows_for(image_ids))), size).numpy()
        return crops, [input_window(int(r.width), int(r.height), settings.get("resize"), int(settings["center_crop"]),
                                    size) for r in rows.itertuples()]

    originals, windows = crops_and_windows(ids)
    position = {s: i for i, s in enumerate(manifest.loc[ids, "source_id"])}
    repeated = shared[shared["source_id"].isin(set(position))].groupby(["platform", "source_id"]).size()
    if (repeated > 1).any():
        raise SystemExit(f"error: {args.manifest}: {int((repeated > 1).sum())} source image(s) have more than one "
                         f"test copy on one platform (e.g. {repeated[repeated > 1].index[0]}); a platform part holds "
                         "one copy per source_id: check the manifest's source_id column")
    copies = {}
    for platform, group in shared[shared["source_id"].isin(set(position))].groupby("platform", sort=True):
        crops, copy_windows = crops_and_windows(list(group.index))
        copies[platform] = (crops, np.array([position[s] for s in group["source_id"]]), copy_windows)
    return assess_drift(runner=runner, layer=layer, originals=originals, windows=windows, copies=copies,
                        methods=sorted(cell["maps"]), batch_size=args.batch_size)


def _twins(manifest, fakes) -> list:
    """The image id of each controlled fake's real twin (same file stem, a real of the same part)."""
    from pathlib import PurePosixPath

    reals = manifest[(manifest["label"] == 0)]
    by_stem = {(PurePosixPath(p).stem, part): i for i, p, part in zip(reals.index, reals["path"], reals["platform"],
                                                                       strict=True)}
    return [by_stem.get((PurePosixPath(r.path).stem, r.platform)) for r in fakes.itertuples()]


def run(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from ..data.cache import ImageCache
    from ..data.manifest import read_manifest
    from ..evaluate import read_prediction_arrays
    from ..explain.assess import assess_cascade, assess_cell, nan_to_none, robustness_subset
    from ..explain.bulk import read_maps
    from ..io import write_json
    from ..progress import progress_bar
    from ..runtime import crop_batch, explained_model

    settings = args.settings_json
    runner, layer = explained_model(args.weights, settings, args.device, args.threads)
    cell = read_maps(args.maps)
    manifest = read_manifest(args.manifest, args.dataset).set_index("image_id")
    size = runner.image_size
    boxes = _boxes(cell, manifest, settings, size)
    preds = read_prediction_arrays(args.predictions)
    cache = ImageCache(args.cache, args.cache_index).check_settings(settings)
    # only the test images the robustness curves use are read: xai.robustness_images of them, or all
    # (robustness_images: 0, 8 GB of crops for TrueFace's combined test set)
    pick = robustness_subset(len(preds["image_id"]), args.robustness_images, args.seed)
    ids = [str(preds["image_id"][i]) for i in pick]
    test_crops = crop_batch(torch.from_numpy(cache.read(cache.rows_for(ids))), size).numpy()
    bar = progress_bar(total=4, desc="explanation quality", unit="part", disable=args.quiet, step=25)
    bar.set_postfix(now="faithfulness, localization, sanity, robustness")
    bar.refresh()  # the longest part: say so in the log before it starts
    result = assess_cell(runner=runner, layer=layer, cell=cell, boxes=boxes, settings=settings,
                         n_images=args.n_images, steps=args.steps, keep=args.keep,
                         road_percentiles=args.road_percentiles, seed=args.seed, test_crops=test_crops,
                         test_labels=np.asarray(preds["label"])[pick], jpeg_qualities=args.jpeg, scales=args.scales,
                         batch_size=args.batch_size, robustness_images=args.robustness_images,
                         threshold=args.threshold, replacements=args.replacements)
    bar.set_postfix(done="scores", now="cascading randomization")
    bar.update()
    result["cascade"] = assess_cascade(runner=runner, layer=layer, cell=cell, n_images=args.cascade_images,
                                       batch_size=args.batch_size, seed=args.seed)
    bar.set_postfix(done="cascade", now="drift under sharing")
    bar.update()
    result["sharing_drift"] = _drift(args, runner, layer, cell, manifest, cache, settings, size)
    bar.set_postfix(done="drift", now="controlled check")
    bar.update()
    result["controlled"] = _controlled(args, runner, layer, cell, manifest, preds, cache, settings, size)
    bar.set_postfix(done="controlled check")
    bar.update()
    bar.close()
    result.update({"model": args.model, "train_set": args.train_set, "test_set": args.test_set})
    write_json(args.out, nan_to_none(result))
    print(_summary(result, args.out))


def _summary(result: dict, out: str) -> str:
    scored = {m: e for m, e in result["methods"].items() if not e["flat_maps"]}
    best = max(scored, key=lambda m: scored[m]["insertion_auc"]["mean"] - scored[m]["deletion_auc"]["mean"],
               default="none")
    fails = [m for m, e in result["methods"].items() if e["sanity"] == "fails"]
    flat = sorted(set(result["methods"]) - set(scored))
    some_flat = ", ".join(f"{m} {e['flat_images']}" for m, e in sorted(scored.items()) if e.get("flat_images"))
    return (f"{len(result['methods'])} methods on {result['n_images']} images ({result['n_with_box']} with an "
            f"evidence box): most faithful by insertion - deletion: {best}; failing the sanity check: "
            f"{', '.join(fails) or 'none'}; flat maps, not scored: {', '.join(flat) or 'none'}; images left out "
            f"as flat: {some_flat or 'none'} -> {out} ({result['seconds']:.1f} s)")
