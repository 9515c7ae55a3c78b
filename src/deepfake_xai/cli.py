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
    root = generate(args.out, SynthConfig.from_dict(cfg, platforms), progress=not args.quiet)
    print(f"wrote synthetic TrueFace-like dataset to {root}")


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
    from .data.archive import extract_all

    print(f"extracted {len(args.archives)} archive(s) into {extract_all(args.archives, args.out)}")


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepfake-xai", description=__doc__)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthetic TrueFace-like dataset")
    s.add_argument("--out", required=True, help="dataset root to (re)create")
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
    s.add_argument("archives", nargs="+")
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
