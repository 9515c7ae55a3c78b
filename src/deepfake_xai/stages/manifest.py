"""Stage manifest: one Parquet row per image of a dataset root, with leakage-free splits by source
image; unreadable files listed in rejected.parquet; counts per platform, label and split."""

from __future__ import annotations

import argparse
import sys

from ..sets import parts_of
from .spec import Option, json_object

HELP = "build the Parquet manifest of a dataset root"
EXAMPLE = ("deepfake-xai manifest --root resources/synthetic/data --dataset synthetic --out manifest.parquet "
           "--rejected rejected.parquet --summary summary.csv")
# The data section's keys that decide the manifest's content (the workflow tracks these).
MANIFEST_KEYS = ("source", "table", "parts", "platforms", "generators", "splits", "max_rejected_fraction",
                 "max_unpartnered_fraction", "ignore", "verify")

def manifest_config(data: dict) -> dict:
    """The data section's keys that decide the manifest, and the synthetic set's layout."""
    out = {k: data[k] for k in MANIFEST_KEYS}
    if data["source"] == "synthetic":
        out["layout"] = data["synthetic"]["layout"]
    return out


OPTIONS = (
    Option("--root", "the dataset root", required=True),
    Option("--dataset", "dataset name stored in the manifest", required=True, config="dataset"),
    Option("--out", "manifest.parquet", required=True),
    Option("--rejected", "rejected.parquet", required=True),
    Option("--summary", "summary CSV (platform x label x split)", required=True),
    Option("--config-json", "the data config section as JSON", type=json_object,
           config=lambda c: manifest_config(c["data"])),
    Option("--require-test-parts", "platform parts that must have test images (the configured test sets)",
           nargs="*", default=[], config=lambda c: parts_of(c["test_sets"], c["data"]["parts"])),
    Option("--workers", "processes reading the images (default: the config's workers, else 4)", type=int,
           speed="data.workers"),
)


def run(args: argparse.Namespace) -> None:
    from ..data.manifest import ManifestError, Reader, build_manifest, summarize, write_manifest
    from ..io import write_csv, write_parquet

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
            reader=Reader.from_config(cfg),
            table=cfg.get("table"),
            parts=cfg.get("parts"),
        )
    except ValueError as err:  # a data.platforms / data.generators entry the tables refuse
        raise SystemExit(f"error: {err}") from None
    except ManifestError as err:
        rejected = getattr(err, "rejected", None)
        if rejected is not None:
            write_parquet(rejected, args.rejected)
            print(f"rejected files listed in {args.rejected}", file=sys.stderr)
        raise SystemExit(f"error: {err}") from None
    write_parquet(rejected, args.rejected)
    summary = summarize(manifest)
    write_csv(summary, args.summary)
    alone = _check(manifest, args, float(cfg.get("max_unpartnered_fraction", 0.05)))
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


def _check(manifest, args: argparse.Namespace, limit: float) -> dict:
    """Stop before any training job on a manifest that cannot give the configured cells: a test set
    with no test images, or shared copies without their original (split apart from it: test images
    seen in training). Returns the copies without an original, per platform."""
    from ..data.manifest import unpartnered_copies

    empty = [p for p in args.require_test_parts
             if not ((manifest["platform"] == p) & (manifest["split"] == "test")).any()]
    if empty:
        raise SystemExit(
            f"error: no test images for {', '.join(empty)} under {args.root} (counts per platform and split: "
            f"{args.summary}); check that folder, or remove these test sets from test_sets in the config")
    alone = unpartnered_copies(manifest)
    over = {p: v for p, v in alone.items() if v[0] / v[1] > limit}
    if over:
        raise SystemExit(
            "error: " + "; ".join(f"{n} of {total} {p} images ({n / total:.1%}, e.g. {', '.join(ex)})"
                                  for p, (n, total, ex) in over.items())
            + f" have no pre-social image of the same source, more than data.max_unpartnered_fraction={limit:g}. "
            "If they are shared copies, their names differ from the pre-social ones in a way the manifest does "
            "not recognize and each copy would be split on its own (test images seen in training): rename them, "
            "or, if they really have no pre-social original, raise the limit")
    return alone
