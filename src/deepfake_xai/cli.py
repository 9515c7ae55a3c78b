"""The ``deepfake-xai`` command line. ``workflow/scripts/*.py`` call these same subcommands, so the
Snakemake rules, the DVC stages and a person at a terminal run one code path."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def cmd_synth(args: argparse.Namespace) -> None:
    from .data.social import profile_from_config
    from .data.synth import SynthConfig, generate

    cfg = dict(args.config_json or {})
    platforms_cfg = cfg.pop("platforms", {}) or {}
    for key in ("seed", "image_size", "real", "workers"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    platforms = {p: profile_from_config(p, platforms_cfg.get(p)) for p in ("facebook", "telegram", "twitter")}
    synth_cfg = SynthConfig.from_dict(cfg, platforms)
    if args.archive:
        import shutil
        import tempfile

        from .data.archive import pack

        Path(args.archive).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=Path(args.archive).parent) as tmp:
            root = generate(Path(tmp) / "data", synth_cfg, progress=not args.quiet)
            pack(root, args.archive)
            shutil.rmtree(root)
        print(f"wrote synthetic TrueFace-like dataset as {args.archive}")
    if args.out:
        root = generate(args.out, synth_cfg, progress=not args.quiet)
        print(f"wrote synthetic TrueFace-like dataset to {root}")
    if not (args.out or args.archive):
        raise SystemExit("error: give --out DIR and/or --archive FILE.tar")


def cmd_share(args: argparse.Namespace) -> None:
    from .data.social import profile_from_config, share_folder

    overrides = {k: v for k, v in (("scale", args.scale), ("jpeg_quality", args.quality)) if v is not None}
    profile = profile_from_config(args.platform, overrides)
    written = share_folder(args.src, args.dst, profile, progress=not args.quiet)
    print(f"{len(written)} images shared on {profile.name} ({profile.as_dict()}) into {args.dst}")


def cmd_download(args: argparse.Namespace) -> None:
    from .data.download import download

    path = download(args.url, args.out, args.sha256, retries=args.retries, backoff=args.backoff,
                    progress=not args.quiet)
    print(f"downloaded and verified {path}")


def cmd_extract(args: argparse.Namespace) -> None:
    from .data.archive import extract_all, list_archives

    archives = list_archives(args.archives)
    print(f"extracted {len(archives)} archive(s) into {extract_all(archives, args.out)}")


def cmd_manifest(args: argparse.Namespace) -> None:
    from .data.manifest import ManifestError, build_manifest, summarize, unpartnered_copies, write_manifest
    from .io import write_csv, write_parquet

    cfg = args.config_json or {}
    splits = cfg.get("splits", {})
    try:
        manifest, rejected = build_manifest(
            args.root,
            val_fraction=splits.get("val_fraction", 0.15),
            test_fraction=splits.get("test_fraction", 0.2),
            seed=splits.get("seed", 0),
            max_rejected_fraction=cfg.get("max_rejected_fraction", 0.01),
            ignore=cfg.get("ignore", []),
            workers=args.workers or cfg.get("workers", 4),
            verify=cfg.get("verify", "quick"),
            progress=not args.quiet,
        )
    except ManifestError as err:
        rejected = getattr(err, "rejected", None)
        if rejected is not None:
            write_parquet(rejected, args.rejected)
            print(f"rejected files listed in {args.rejected}", file=sys.stderr)
        raise SystemExit(f"error: {err}") from None
    write_parquet(rejected, args.rejected)
    summary = summarize(manifest)
    write_csv(summary, args.summary)
    empty = [p for p in args.require_test_parts
             if not ((manifest["platform"] == p) & (manifest["split"] == "test")).any()]
    if empty:  # fail here, before any training job, rather than after the GPU work
        raise SystemExit(
            f"error: no test images for {', '.join(empty)} under {args.root} (counts per platform and split: "
            f"{args.summary}); check that folder, or remove these test sets from test_sets in the config")
    limit = float(cfg.get("max_unpartnered_fraction", 0.05))
    alone = unpartnered_copies(manifest)
    over = {p: v for p, v in alone.items() if v[0] / v[1] > limit}
    if over:  # fail before training on splits that put copies of one image on both sides
        raise SystemExit(
            "error: " + "; ".join(f"{n} of {total} {p} images ({n / total:.1%}, e.g. {', '.join(ex)})"
                                  for p, (n, total, ex) in over.items())
            + f" have no pre-social image of the same source, more than data.max_unpartnered_fraction={limit:g}. "
            "If they are shared copies, their names differ from the pre-social ones in a way the manifest does "
            "not recognize and each copy would be split on its own (test images seen in training): rename them, "
            "or, if they really have no pre-social original, raise the limit")
    write_manifest(manifest, args.out, args.dataset)
    print(summary.to_string(index=False))
    print(f"{len(manifest)} images in {args.out}; {len(rejected)} rejected (see {args.rejected})")
    for path, reason in rejected.head(10).itertuples(index=False):
        print(f"  rejected {path}: {reason}")
    for platform, (n, total, examples) in alone.items():
        print(f"warning: {n} of {total} {platform} images have no pre-social image of the same source "
              f"(e.g. {', '.join(examples)}); if they are shared copies, their file names differ from the "
              "pre-social ones in a way the manifest does not recognize, and they are split apart from them",
              file=sys.stderr)


def cmd_cache(args: argparse.Namespace) -> None:
    from .data.cache import build_cache
    from .data.manifest import read_manifest

    manifest = read_manifest(args.manifest, args.dataset)
    n = build_cache(manifest, args.root, args.out, args.index, resize=args.resize,
                    center_crop=args.center_crop, workers=args.workers or 1, progress=not args.quiet,
                    jpeg_device=args.jpeg_device)
    print(f"cached {n} images ({args.center_crop} px, resize={args.resize}, JPEG decoder "
          f"{'torchvision on ' + args.jpeg_device if args.jpeg_device else 'PIL'}) in {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    from .data.cache import ImageCache
    from .data.manifest import read_manifest
    from .train import train

    _check_prediction_args(args.parts, args.predictions, args.combined, "--predictions")
    if args.loader_workers is not None:
        args.settings_json = {**args.settings_json, "loader_workers": args.loader_workers}
    cache = ImageCache(args.cache, args.cache_index)
    manifest = read_manifest(args.manifest, args.dataset)
    summary = train(
        cache=cache, manifest=manifest, train_set=args.train_set, settings=args.settings_json,
        out_dir=args.out_dir, threads=args.threads, device=args.device, progress=not args.quiet,
        model_name=args.model,
    )
    if summary.get("rank", 0) != 0:  # another torchrun process: rank 0 writes every output
        return
    print(f"best epoch {summary['best_epoch']}: val balanced accuracy "
          f"{summary['best_val_balanced_accuracy']:.4f}; {summary['images_per_s']:.1f} images/s on {summary['device']}")
    if args.parts:
        from .evaluate import inference_batch_size, predict_parts

        # The saved (best-epoch) weights, read back exactly as a separate `predict` would read them.
        preds = predict_parts(weights=Path(args.out_dir) / "model.safetensors", settings=args.settings_json,
                              cache=cache, manifest=manifest, parts=args.parts,
                              batch_size=inference_batch_size(args.settings_json), threads=args.threads,
                              device=args.device)
        _write_predictions(preds, args.parts, args.predictions, args.combined)


def _check_prediction_args(parts: list[str], outs: list[str], combined: str | None, outs_flag: str) -> None:
    """Before any work: one output per part, and "combined" only from all four parts."""
    from .data.layout import PLATFORM_PARTS

    if len(parts) != len(outs):
        raise SystemExit(f"error: give one {outs_flag} file per --parts entry ({len(parts)} parts, {len(outs)} files)")
    if combined and sorted(parts) != sorted(PLATFORM_PARTS):
        raise SystemExit(f"error: --combined pools all four parts ({' '.join(PLATFORM_PARTS)}), but --parts is "
                         f"{' '.join(parts) or 'empty'}: add the missing parts or drop --combined")


def _write_predictions(preds: dict, parts: list[str], outs: list[str], combined: str | None) -> None:
    from .evaluate import pool
    from .io import write_parquet

    for part, out in zip(parts, outs):
        write_parquet(preds[part], out)
        print(f"{part}: {len(preds[part])} predictions -> {out}")
    if combined:
        write_parquet(pool([preds[p] for p in parts]), combined)
        print(f"combined: {sum(len(preds[p]) for p in parts)} pooled predictions -> {combined}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .data.cache import ImageCache
    from .data.manifest import read_manifest
    from .evaluate import predict_parts

    _check_prediction_args(args.parts, args.out, args.combined, "--out")
    preds = predict_parts(weights=args.weights, settings=args.settings_json,
                          cache=ImageCache(args.cache, args.cache_index),
                          manifest=read_manifest(args.manifest, args.dataset), parts=args.parts,
                          batch_size=args.batch_size, threads=args.threads, device=args.device)
    _write_predictions(preds, args.parts, args.out, args.combined)


def cmd_pool(args: argparse.Namespace) -> None:
    from .evaluate import pool, read_predictions
    from .io import write_parquet

    pooled = pool([read_predictions(p) for p in args.parts])
    write_parquet(pooled, args.out)
    print(f"pooled {len(args.parts)} parts, {len(pooled)} predictions -> {args.out}")


def cmd_metrics(args: argparse.Namespace) -> None:
    from .evaluate import read_prediction_arrays
    from .io import write_json
    from .metrics import compute_metrics

    preds = read_prediction_arrays(args.predictions)
    metrics = compute_metrics(preds, threshold=args.threshold, n_boot=args.bootstrap, seed=args.seed)
    metrics.update({k: v for k, v in (("model", args.model), ("train_set", args.train_set),
                                      ("test_set", args.test_set)) if v})
    write_json(args.out, metrics)
    ci = metrics["ci95"]["accuracy"]
    ci_txt = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    print(f"accuracy {metrics['accuracy']:.4f}{ci_txt}, F1 {metrics['f1']:.4f}, n={metrics['n']} -> {args.out}")


def _load_for_explain(args):
    """Model (eval, on its device), its target layer, the runner and the settings."""
    import torch

    from .models import get_module, info, pooled_feature_layer
    from .train import Runner, load_trained, pick_device

    settings = args.settings_json
    dev = pick_device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    runner = Runner(load_trained(args.weights, settings), dev, {**settings, "compile": False})
    layer_name = settings.get("target_layer") or info(settings["arch"]).target_layer
    if not layer_name:  # a timm model outside the registry: the input of its global pool
        try:
            layer_name = pooled_feature_layer(runner.model, int(settings.get("image_size") or 64))
        except ValueError as err:
            raise SystemExit(f"error: {settings['arch']}: {err}") from None
        print(f"{settings['arch']}: explaining layer {layer_name!r} (the input of the global pool; "
              "set models.<name>.target_layer to choose another)")
    return runner, get_module(runner.model, layer_name), settings


def cmd_explain_cell(args: argparse.Namespace) -> None:
    import torch

    from .data.cache import ImageCache
    from .data.manifest import read_manifest
    from .evaluate import read_prediction_arrays
    from .explain.bulk import explain_cell, select_sample, write_maps
    from .explain.panels import gradcam_panel, save_png
    from .train import crop_batch

    runner, layer, settings = _load_for_explain(args)
    preds = read_prediction_arrays(args.predictions)
    ids = select_sample(preds, args.n_images, args.shared, args.seed, threshold=args.threshold)
    manifest = read_manifest(args.manifest, args.dataset).set_index("image_id")
    cache = ImageCache(args.cache, args.cache_index)
    crops = crop_batch(torch.from_numpy(cache.read(cache.rows_for(ids))), runner.image_size).numpy()
    images = runner.inputs(torch.from_numpy(crops))
    result = explain_cell(model=runner.model, target_layer=layer, images=images, methods=args.methods,
                          targets=args.target, batch_size=args.batch_size, amp=args.amp, progress=not args.quiet,
                          threshold=args.threshold)
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


def cmd_xai_cell(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from .data.cache import ImageCache
    from .data.manifest import read_manifest
    from .evaluate import read_prediction_arrays
    from .explain.assess import assess_cell, nan_to_none, robustness_subset
    from .explain.bulk import read_maps
    from .explain.quality import box_in_crop
    from .io import write_json
    from .train import crop_batch

    runner, layer, settings = _load_for_explain(args)
    cell = read_maps(args.maps)
    manifest = read_manifest(args.manifest, args.dataset).set_index("image_id")
    size = runner.image_size
    boxes = []
    for image_id in cell["image_ids"]:
        row = manifest.loc[str(image_id)]
        box = [row["evidence_x0"], row["evidence_y0"], row["evidence_x1"], row["evidence_y1"]]
        boxes.append(box_in_crop(box, int(row["width"]), int(row["height"]), settings.get("resize"),
                                 int(settings["center_crop"]), size) if row["label"] == 1 else None)
    preds = read_prediction_arrays(args.predictions)
    cache = ImageCache(args.cache, args.cache_index)
    # only the test images the robustness curves use are read: xai.robustness_images of them, or all
    # (robustness_images: 0, 8 GB of crops for TrueFace's combined test set)
    pick = robustness_subset(len(preds["image_id"]), args.robustness_images, args.seed)
    ids = [str(preds["image_id"][i]) for i in pick]
    test_crops = crop_batch(torch.from_numpy(cache.read(cache.rows_for(ids))), size).numpy()
    result = assess_cell(runner=runner, layer=layer, cell=cell, boxes=boxes, settings=settings,
                         n_images=args.n_images, steps=args.steps, keep=args.keep,
                         road_percentiles=args.road_percentiles, seed=args.seed, test_crops=test_crops,
                         test_labels=np.asarray(preds["label"])[pick], jpeg_qualities=args.jpeg, scales=args.scales,
                         batch_size=args.batch_size, robustness_images=args.robustness_images,
                         threshold=args.threshold)
    result.update({"model": args.model, "train_set": args.train_set, "test_set": args.test_set})
    write_json(args.out, nan_to_none(result))
    scored = {m: e for m, e in result["methods"].items() if not e["flat_maps"]}
    best = max(scored, key=lambda m: scored[m]["insertion_auc"]["mean"] - scored[m]["deletion_auc"]["mean"],
               default="none")
    fails = [m for m, e in result["methods"].items() if e["sanity"] == "fails"]
    flat = sorted(set(result["methods"]) - set(scored))
    some_flat = ", ".join(f"{m} {e['flat_images']}" for m, e in sorted(scored.items()) if e.get("flat_images"))
    print(f"{len(result['methods'])} methods on {result['n_images']} images ({result['n_with_box']} with an "
          f"evidence box): most faithful by insertion - deletion: {best}; failing the sanity check: "
          f"{', '.join(fails) or 'none'}; flat maps, not scored: {', '.join(flat) or 'none'}; images left out "
          f"as flat: {some_flat or 'none'} -> {args.out} ({result['seconds']:.1f} s)")


def cmd_xai_report(args: argparse.Namespace) -> None:
    from .data.cache import ImageCache
    from .data.manifest import read_manifest
    from .report.xai import build_xai_report

    written = build_xai_report(xai_paths=args.scores, maps_paths=args.maps,
                               manifest=read_manifest(args.manifest, args.dataset),
                               cache=ImageCache(args.cache, args.cache_index), out_dir=args.out_dir,
                               method=args.method)
    print(f"{len(written)} files -> {args.out_dir} (start at {Path(args.out_dir) / 'ranking.md'})")


def cmd_doctor(args: argparse.Namespace) -> None:
    from .doctor import run

    checks = run(args.config, args.results)
    for c in checks:
        print(c.line())
    bad = [c for c in checks if c.status == "FAIL"]
    warn = [c for c in checks if c.status == "WARN"]
    print(f"{len(checks)} checks: {len(bad)} failed, {len(warn)} warnings")
    if bad:
        raise SystemExit(1)


def cmd_montage(args: argparse.Namespace) -> None:
    from .explain.bulk import read_maps
    from .explain.panels import montage, save_png

    if len(args.models) != len(args.maps):
        raise SystemExit("error: give one --models name per --maps file")
    cells = {m: read_maps(p) for m, p in zip(args.models, args.maps)}
    for method in args.methods:
        save_png(montage(cells, method, args.images), Path(args.out_dir) / f"{method}.png")
    print(f"{len(args.methods)} montages of {len(cells)} models -> {args.out_dir}")


def cmd_report(args: argparse.Namespace) -> None:
    from .report.build import build_report
    from .report.tables import ReportInputError

    try:
        written = build_report(metrics_files=args.metrics, train_files=args.train, out_dir=args.out_dir,
                               dataset=args.dataset, models=args.models, train_sets=args.train_sets,
                               test_sets=args.test_sets, config_files=args.config, results_dir=args.results,
                               explain_files=args.explain, paper_csv=args.paper)
    except ReportInputError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{len(written)} report files -> {args.out_dir} (start at {Path(args.out_dir) / 'README.md'})")


def cmd_actmax(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from .explain.actmax import maximize, to_image
    from .explain.panels import save_png
    from .train import IMAGENET_MEAN, IMAGENET_STD

    runner, _, settings = _load_for_explain(args)
    x, trace = maximize(runner.model, [0, 1], runner.image_size, steps=args.steps, seed=args.seed,
                        device=runner.device)
    tiles = [np.asarray(Image.fromarray(to_image(x[i:i + 1], IMAGENET_MEAN, IMAGENET_STD)).resize((128, 128)))
             for i in range(2)]
    traces = {name: [round(float(trace[0, i]), 4), round(float(trace[-1, i]), 4)]
              for i, name in enumerate(("real", "fake"))}
    save_png(Image.fromarray(np.concatenate(tiles, axis=1)), args.out)
    print(f"activation maximization (left real, right fake) -> {args.out}; logit first/last step: {traces}")


def _explain_settings(args: argparse.Namespace) -> dict:
    """The model's settings for `explain`: --settings-json, else the train.json a training job wrote
    beside the weights, else --arch and --size; --arch, --size and --resize given on the command line
    override either."""
    settings = args.settings_json
    summary = Path(args.weights).with_name("train.json")
    if settings is None and summary.is_file():
        settings = json.loads(summary.read_text()).get("settings")
        if not isinstance(settings, dict) or "arch" not in settings:
            raise SystemExit(f"error: {summary} has no 'settings' with an 'arch'; pass --settings-json or --arch")
        print(f"settings from {summary}")
    settings = dict(settings or {"arch": "efficientnet_b2", "image_size": 64, "target_layer": None})
    if args.arch is not None and args.arch != settings.get("arch"):
        settings["target_layer"] = None  # the other architecture's layer name means nothing here
    for key, value in (("arch", args.arch), ("image_size", args.size), ("resize", args.resize)):
        if value is not None:
            settings[key] = value or None  # --resize 0: no resize
    settings.setdefault("image_size", 64)
    return settings


def cmd_explain(args: argparse.Namespace) -> None:
    import torch

    from .data.cache import preprocess
    from .data.images import load_rgb
    from .explain.bulk import explain_cell
    from .explain.panels import gradcam_panel, grid, overlay_tile, save_png
    from .train import crop_batch

    args.settings_json = _explain_settings(args)
    runner, layer, settings = _load_for_explain(args)
    # the training pipeline's own steps: resize (if the model's settings do), center-crop the cached
    # size, then the runner center-crops the model input
    crop = preprocess(load_rgb(args.image), settings.get("resize"),
                      max(settings.get("center_crop") or 0, runner.image_size))
    batch = torch.tensor(crop[None])  # a copy: the decoded image may be a read-only array
    images = runner.inputs(batch)
    result = explain_cell(model=runner.model, target_layer=layer, images=images, methods=args.method,
                          targets=args.target, batch_size=1, progress=False, threshold=args.threshold)
    prob = float(result["probs"][0])
    print(f"{args.image}: {'FAKE' if prob >= args.threshold else 'REAL'} (probability of fake {prob:.4f}, "
          f"threshold {args.threshold:g}; {settings['arch']}, input {runner.image_size} px)")
    for name, reason in result["not_applicable"].items():
        print(f"  {name}: not applicable ({reason})")
    maps = {k: v[0] for k, v in result["maps"].items()}
    shown = crop_batch(batch, runner.image_size)[0].numpy()  # what the model saw
    panel = gradcam_panel(shown, maps, None, prob, args.threshold)
    extra = [overlay_tile(shown, m, k) for k, m in maps.items()
             if k not in ("gradcam", "guided_backprop", "guided_gradcam")]
    save_png(grid([[panel], extra]) if extra else panel, args.out)
    print(f"panel -> {args.out}")


# Options that change how fast a command runs, never what it writes. A DVC stage's command names
# none of them: it reads them at run time from params.yaml's `speed` section (--speed params.yaml),
# which no stage tracks, so that moving to a machine with more cores re-runs nothing.
SPEED_OPTIONS = {"synth": ("workers",), "manifest": ("workers",), "cache": ("workers",),
                 "train": ("threads", "loader_workers"), "predict": ("threads",),
                 "explain-cell": ("threads",), "xai-cell": ("threads",), "actmax": ("threads",)}


def speed_option(s: argparse.ArgumentParser) -> None:
    s.add_argument("--speed", metavar="FILE",
                   help="read the speed-only options not given here (threads, workers) from FILE's "
                        "speed.<command> section (dvc.yaml passes params.yaml)")


def apply_speed_file(args: argparse.Namespace) -> None:
    """Fill the speed options left unset on the command line from ``--speed FILE``. A value may be a
    mapping of the config's model names (``loader_workers: {vgg19: 2}``), looked up by ``--model``."""
    path = getattr(args, "speed", None)
    if path:
        import yaml

        try:
            speed = (yaml.safe_load(Path(path).read_text()) or {}).get("speed")
        except (OSError, yaml.YAMLError) as err:
            raise SystemExit(f"error: --speed {path}: cannot read it ({err})") from None
        if not isinstance(speed, dict):
            raise SystemExit(f"error: --speed {path}: no `speed` section; regenerate it with "
                             "`python workflow/scripts/dvc_params.py --config <your config>`")
        section = speed.get(args.command) or {}
        if not isinstance(section, dict):
            raise SystemExit(f"error: --speed {path}: speed.{args.command} must be a mapping of option names "
                             f"to values, not {section!r}")
        for dest in SPEED_OPTIONS[args.command]:
            value = section.get(dest)
            if getattr(args, dest) is not None or value is None:
                continue
            key = f"speed.{args.command}.{dest}"
            if isinstance(value, dict):
                if getattr(args, "model", None) not in value:
                    raise SystemExit(f"error: --speed {path}: {key} has no entry for model "
                                     f"{getattr(args, 'model', None)!r}; regenerate the file")
                value, key = value[args.model], f"{key}.{args.model}"
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SystemExit(f"error: --speed {path}: {key} must be a positive integer, not {value!r}")
            setattr(args, dest, value)
    if hasattr(args, "threads") and args.threads is None:
        args.threads = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepfake-xai", description=__doc__)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthetic TrueFace-like dataset")
    s.add_argument("--out", help="dataset root to (re)create")
    s.add_argument("--archive", help="write the dataset as one deterministic tar file (with --out too: both)")
    s.add_argument("--config-json", type=_json_arg, help="the data.synthetic config section (+ platforms) as JSON")
    s.add_argument("--seed", type=int)
    s.add_argument("--image-size", dest="image_size", type=int)
    s.add_argument("--real", type=int, help="number of real pre-social images")
    s.add_argument("--workers", type=int, help="processes drawing images (default: the config's workers, else 1)")
    speed_option(s)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("share", help="apply a social platform's re-encoding to a folder of images")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--platform", required=True, choices=["facebook", "telegram", "twitter"])
    s.add_argument("--scale", type=float, help="override the platform's resize factor")
    s.add_argument("--quality", type=int, help="override the platform's JPEG quality")
    s.set_defaults(func=cmd_share)

    s = sub.add_parser("download", help="download one archive with resume and checksum")
    s.add_argument("--url", required=True)
    s.add_argument("--sha256", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--retries", type=int, default=5)
    s.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry (doubles)")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("extract", help="safely extract archives into a dataset root")
    s.add_argument("archives", nargs="+", help="archive files, or folders holding them")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("manifest", help="build the Parquet manifest of a dataset root")
    s.add_argument("--root", required=True)
    s.add_argument("--dataset", required=True, help="dataset name stored in the manifest")
    s.add_argument("--out", required=True, help="manifest.parquet")
    s.add_argument("--rejected", required=True, help="rejected.parquet")
    s.add_argument("--summary", required=True, help="summary CSV (platform x label x split)")
    s.add_argument("--config-json", type=_json_arg, help="the data config section as JSON")
    s.add_argument("--require-test-parts", nargs="*", default=[],
                   help="platform parts that must have test images (the configured test sets)")
    s.add_argument("--workers", type=int, help="processes reading the images (default: the config's workers, else 4)")
    speed_option(s)
    s.set_defaults(func=cmd_manifest)

    s = sub.add_parser("cache", help="decode every manifest image once into a uint8 memory-mapped array")
    s.add_argument("--manifest", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--root", required=True, help="dataset root the manifest paths are relative to")
    s.add_argument("--out", required=True, help="cache array (.npy)")
    s.add_argument("--index", required=True, help="cache index (.parquet)")
    s.add_argument("--resize", type=lambda v: None if v in ("", "none", "None", "null") else int(v))
    s.add_argument("--center-crop", type=int, required=True)
    s.add_argument("--workers", type=int, help="processes decoding the images (default: 1)")
    speed_option(s)
    s.add_argument("--jpeg-device", type=lambda v: None if v in ("", "none", "None", "null") else v,
                   help="decode RGB/grayscale JPEGs with torchvision on this device (cuda: nvJPEG); "
                        "default: PIL for every file")
    s.set_defaults(func=cmd_cache)

    def model_inputs(s):
        s.add_argument("--cache", required=True, help="cache array (.npy)")
        s.add_argument("--cache-index", required=True)
        s.add_argument("--manifest", required=True)
        s.add_argument("--dataset", required=True)
        s.add_argument("--settings-json", type=_json_arg, required=True,
                       help="the model's resolved settings (train defaults + model overrides)")
        s.add_argument("--threads", type=int, help="CPU threads (default: 1)")
        s.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (cuda if available)")
        speed_option(s)

    s = sub.add_parser("train", help="train one model on one train set")
    model_inputs(s)
    s.add_argument("--train-set", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--parts", nargs="*", default=[],
                   help="test parts to predict with the saved weights right after training")
    s.add_argument("--predictions", nargs="*", default=[], help="one predictions Parquet per --parts entry")
    s.add_argument("--combined", help="also write the parts pooled (the combined test set) here")
    s.add_argument("--model", help="the config's name for the model, recorded in train.json (default: its arch)")
    s.add_argument("--loader-workers", type=int,
                   help="batches one background thread reads ahead (default: the settings' loader_workers, else 2)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("predict", help="predictions of a trained model on test parts")
    model_inputs(s)
    s.add_argument("--weights", required=True)
    s.add_argument("--parts", nargs="+", required=True)
    s.add_argument("--out", nargs="+", required=True, help="one predictions Parquet per part")
    s.add_argument("--combined", help="also write the parts pooled (the combined test set) here")
    s.add_argument("--batch-size", type=int, default=128)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("pool", help="pool parts' predictions into the combined test set")
    s.add_argument("parts", nargs="+")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_pool)

    s = sub.add_parser("metrics", help="metrics of one table cell from its predictions")
    s.add_argument("--predictions", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--threshold", type=float, default=0.5)
    s.add_argument("--bootstrap", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--model")
    s.add_argument("--train-set")
    s.add_argument("--test-set")
    s.set_defaults(func=cmd_metrics)

    default_methods = ["saliency", "activation", "cam", "gradcam", "gradcam++", "hirescam", "layercam",
                       "eigencam", "guided_backprop", "guided_gradcam"]

    def explain_inputs(s, cell=True):
        s.add_argument("--weights", required=True)
        s.add_argument("--settings-json", type=_json_arg, required=cell,
                       help="the model's resolved settings (arch, image_size, target_layer)")
        s.add_argument("--threads", type=int, help="CPU threads (default: 1)")
        s.add_argument("--device", default="auto")
        if cell:
            speed_option(s)

    s = sub.add_parser("explain-cell", help="bulk heatmaps of one (model, train set, test set) cell")
    explain_inputs(s)
    s.add_argument("--cache", required=True)
    s.add_argument("--cache-index", required=True)
    s.add_argument("--manifest", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--predictions", required=True, help="the cell's predictions (for the sample)")
    s.add_argument("--methods", nargs="+", default=default_methods)
    s.add_argument("--n-images", type=int, default=16)
    s.add_argument("--shared", type=int, default=4, help="model-independent images first (montages)")
    s.add_argument("--panels", type=int, default=4)
    s.add_argument("--target", choices=["predicted", "fake", "real"], default="predicted")
    s.add_argument("--threshold", type=float, default=0.5,
                   help="P(fake) at or above which an image is predicted fake (evaluate.threshold)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--amp", action="store_true", help="bf16 forward on CUDA (maps within ~3e-2 of fp32)")
    s.add_argument("--out", required=True, help="maps file (.npz)")
    s.add_argument("--panels-dir", required=True)
    s.set_defaults(func=cmd_explain_cell)

    s = sub.add_parser("xai-cell", help="faithfulness, localization, sanity and robustness of one explained cell")
    model_inputs(s)
    s.add_argument("--weights", required=True)
    s.add_argument("--maps", required=True, help="the explain stage's maps file of the cell")
    s.add_argument("--predictions", required=True, help="the cell's predictions (its test images)")
    s.add_argument("--model", required=True)
    s.add_argument("--train-set", required=True)
    s.add_argument("--test-set", required=True)
    s.add_argument("--n-images", type=int, default=16, help="explained images scored (the first n)")
    s.add_argument("--threshold", type=float, default=0.5,
                   help="P(fake) at or above which an image is predicted fake (robustness accuracy)")
    s.add_argument("--steps", type=int, default=8, help="deletion/insertion steps")
    s.add_argument("--keep", type=float, default=0.2, help="fraction of pixels kept for the confidence score")
    s.add_argument("--road-percentiles", type=int, nargs="*", default=[20, 50, 80])
    s.add_argument("--jpeg", type=int, nargs="*", default=[90, 70, 50, 30], help="JPEG qualities (robustness)")
    s.add_argument("--scales", type=float, nargs="*", default=[0.5, 0.75, 1.5], help="rescale factors (robustness)")
    s.add_argument("--robustness-images", type=int, default=0, help="test images for robustness (0: all)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="JSON file")
    s.set_defaults(func=cmd_xai_cell)

    s = sub.add_parser("xai-report", help="methods ranked by localization and faithfulness; priors, spectra, robustness")
    s.add_argument("--scores", nargs="+", required=True, help="xai-cell JSON files")
    s.add_argument("--maps", nargs="+", required=True, help="the explain stage's maps files")
    s.add_argument("--manifest", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--cache", required=True, help="image cache for the frequency spectra")
    s.add_argument("--cache-index", required=True)
    s.add_argument("--method", default="gradcam", help="method of the spatial-prior figure")
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=cmd_xai_report)

    s = sub.add_parser("doctor", help="check the environment: versions, GPU, free disk, config, dataset root")
    s.add_argument("--config", nargs="*", default=["config/config.yaml"],
                   help="config files to validate, merged in order (default: config/config.yaml; "
                        "--config with no file skips the config checks)")
    s.add_argument("--results", default="results", help="where results go (free disk is checked there)")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("montage", help="one PNG per method: the shared images' maps across models")
    s.add_argument("--maps", nargs="+", required=True)
    s.add_argument("--models", nargs="+", required=True)
    s.add_argument("--methods", nargs="+", required=True)
    s.add_argument("--out-dir", required=True, help="gets one <method>.png per method")
    s.add_argument("--images", type=int, default=4)
    s.set_defaults(func=cmd_montage)

    s = sub.add_parser("report", help="the paper's tables beside this run's, figures and a README")
    s.add_argument("--metrics", nargs="*", default=[], help="metrics JSON files (the cells to report)")
    s.add_argument("--train", nargs="*", default=[], help="train.json files (log.csv beside each)")
    s.add_argument("--out-dir", required=True, help="e.g. reports/synthetic")
    s.add_argument("--dataset", required=True)
    s.add_argument("--models", nargs="+", required=True, help="models with a matrix/confusion figure")
    s.add_argument("--train-sets", nargs="+", required=True)
    s.add_argument("--test-sets", nargs="+", required=True)
    s.add_argument("--config", nargs="*", default=[],
                   help="the config files the run merged, in order, recorded with their hashes in the README")
    s.add_argument("--results", help="results folder named for missing cells (default results/DATASET)")
    s.add_argument("--explain", nargs="*", default=[], help="heatmap outputs to link from the README")
    s.add_argument("--paper", help="the paper's tables CSV (default: the copy shipped in the package)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("actmax", help="activation maximization: one optimized input per class")
    explain_inputs(s)
    s.add_argument("--steps", type=int, default=96)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_actmax)

    s = sub.add_parser("explain", help="verdict and heatmap panel for one image")
    s.add_argument("image")
    explain_inputs(s, cell=False)
    s.add_argument("--arch", help="the model's timm architecture (default: from the train.json beside "
                   "--weights, else efficientnet_b2)")
    s.add_argument("--size", type=int, help="model input side, a center crop (default: from train.json, else 64)")
    s.add_argument("--resize", type=int, help="resize the shorter side first (default: from train.json, else none; "
                   "0: none)")
    s.add_argument("--threshold", type=float, default=0.5,
                   help="P(fake) at or above which the image is called fake (evaluate.threshold)")
    s.add_argument("--method", nargs="+", default=["gradcam", "guided_backprop", "guided_gradcam", "saliency"])
    s.add_argument("--target", choices=["predicted", "fake", "real"], default="predicted")
    s.add_argument("--out", default="explanation.png")
    s.set_defaults(func=cmd_explain)
    return p


# Subcommands that may run on a GPU: each claims its own GPU slot on a multi-GPU machine.
GPU_COMMANDS = {"train", "predict", "explain-cell", "actmax", "xai-cell", "explain", "cache"}


def wants_gpu(args: argparse.Namespace) -> bool:
    """Whether this command needs a GPU slot: a GPU command on device auto or cuda; the cache only
    when it decodes JPEGs on CUDA (PIL decoding needs no GPU slot). A device with an index
    (cuda:1) is the user's own choice of GPU: no slot, which would hide every other GPU."""
    if args.command not in GPU_COMMANDS:
        return False
    device = args.jpeg_device if args.command == "cache" else getattr(args, "device", "auto")
    return device in ("auto", "cuda")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = argv[: argv.index("--")] if "--" in argv else argv
    if "--quiet" in options:  # accepted after the subcommand too (not after `--`: a file may be so named)
        argv = ["--quiet", *[a for a in options if a != "--quiet"], *argv[len(options):]]
    args = build_parser().parse_args(argv)
    apply_speed_file(args)
    if wants_gpu(args):
        from .gpus import assign_visible_device

        slot = assign_visible_device()
        if slot is not None:
            print(f"GPU slot {slot}: CUDA_VISIBLE_DEVICES={slot}", file=sys.stderr)
    try:
        args.func(args)
    except FileNotFoundError as err:  # a wrong path given: the message names it, no traceback
        raise SystemExit(f"error: {err}") from None


def run_subcommand(name: str) -> None:
    """Entry point of ``workflow/scripts/<name>.py``: the CLI subcommand of the same name."""
    main([name, *sys.argv[1:]])
    exit_without_teardown()


def exit_without_teardown() -> None:
    """End a finished job's process at once. Tearing the interpreter down (torch's, timm's and
    pandas' modules and a model, object by object) takes 0.5-2 s per job on a CPU, as long as a
    whole metrics job; every output is already written and closed (atomic renames). The atexit
    handlers still run and the streams are flushed; only the object-by-object cleanup is skipped."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
