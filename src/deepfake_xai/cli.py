"""The ``deepfake-xai`` command line. ``workflow/scripts/*.py`` call these same subcommands, so the
Snakemake rules, the DVC stages and a person at a terminal run one code path."""

from __future__ import annotations

import argparse
import json
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
    from .data.manifest import ManifestError, build_manifest, summarize, write_manifest
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
            workers=cfg.get("workers", 4),
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
    write_manifest(manifest, args.out, args.dataset)
    print(summary.to_string(index=False))
    print(f"{len(manifest)} images in {args.out}; {len(rejected)} rejected (see {args.rejected})")
    for path, reason in rejected.head(10).itertuples(index=False):
        print(f"  rejected {path}: {reason}")


def cmd_cache(args: argparse.Namespace) -> None:
    from .data.cache import build_cache
    from .data.manifest import read_manifest

    manifest = read_manifest(args.manifest, args.dataset)
    n = build_cache(manifest, args.root, args.out, args.index, resize=args.resize,
                    center_crop=args.center_crop, workers=args.workers, progress=not args.quiet)
    print(f"cached {n} images ({args.center_crop} px, resize={args.resize}) in {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    from .data.cache import ImageCache
    from .data.manifest import read_manifest
    from .train import train

    summary = train(
        cache=ImageCache(args.cache, args.cache_index),
        manifest=read_manifest(args.manifest, args.dataset),
        train_set=args.train_set, settings=args.settings_json, out_dir=args.out_dir,
        threads=args.threads, device=args.device, progress=not args.quiet,
    )
    print(f"best epoch {summary['best_epoch']}: val balanced accuracy "
          f"{summary['best_val_balanced_accuracy']:.4f}; {summary['images_per_s']:.1f} images/s on {summary['device']}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .data.cache import ImageCache
    from .data.manifest import read_manifest
    from .evaluate import pool, predict_parts
    from .io import write_parquet

    if len(args.parts) != len(args.out):
        raise SystemExit("error: give one --out per --parts entry")
    preds = predict_parts(weights=args.weights, settings=args.settings_json,
                          cache=ImageCache(args.cache, args.cache_index),
                          manifest=read_manifest(args.manifest, args.dataset), parts=args.parts,
                          batch_size=args.batch_size, threads=args.threads, device=args.device)
    for part, out in zip(args.parts, args.out):
        write_parquet(preds[part], out)
        print(f"{part}: {len(preds[part])} predictions -> {out}")
    if args.combined:
        write_parquet(pool(list(preds.values())), args.combined)
        print(f"combined: {sum(len(p) for p in preds.values())} pooled predictions -> {args.combined}")


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepfake-xai", description=__doc__)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthetic TrueFace-like dataset")
    s.add_argument("--out", help="dataset root to (re)create")
    s.add_argument("--archive", help="write the dataset as one deterministic tar file instead")
    s.add_argument("--config-json", type=_json_arg, help="the data.synthetic config section (+ platforms) as JSON")
    s.add_argument("--seed", type=int)
    s.add_argument("--image-size", dest="image_size", type=int)
    s.add_argument("--real", type=int, help="number of real pre-social images")
    s.add_argument("--workers", type=int)
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
    s.set_defaults(func=cmd_manifest)

    s = sub.add_parser("cache", help="decode every manifest image once into a uint8 memory-mapped array")
    s.add_argument("--manifest", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--root", required=True, help="dataset root the manifest paths are relative to")
    s.add_argument("--out", required=True, help="cache array (.npy)")
    s.add_argument("--index", required=True, help="cache index (.parquet)")
    s.add_argument("--resize", type=lambda v: None if v in ("", "none", "None", "null") else int(v))
    s.add_argument("--center-crop", type=int, required=True)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=cmd_cache)

    def model_inputs(s):
        s.add_argument("--cache", required=True, help="cache array (.npy)")
        s.add_argument("--cache-index", required=True)
        s.add_argument("--manifest", required=True)
        s.add_argument("--dataset", required=True)
        s.add_argument("--settings-json", type=_json_arg, required=True,
                       help="the model's resolved settings (train defaults + model overrides)")
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (cuda if available)")

    s = sub.add_parser("train", help="train one model on one train set")
    model_inputs(s)
    s.add_argument("--train-set", required=True)
    s.add_argument("--out-dir", required=True)
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
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


def run_subcommand(name: str) -> None:
    """Entry point of ``workflow/scripts/<name>.py``: the CLI subcommand of the same name."""
    main([*(["--quiet"] if "--quiet" in sys.argv[1:] else []), name,
          *[a for a in sys.argv[1:] if a != "--quiet"]])


if __name__ == "__main__":
    main()
