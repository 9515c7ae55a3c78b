"""Stage xai-report: the explanation methods ranked by localization and faithfulness over every
explained cell, with spatial priors, frequency spectra and robustness curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from .spec import Option

HELP = "methods ranked by localization and faithfulness; priors, spectra, robustness"
EXAMPLE = ("deepfake-xai xai-report --scores xai_metrics/*/*/*.json --maps heatmaps/*/*/*/maps.npz "
           "--manifest manifest.parquet --dataset synthetic --cache c.npy --cache-index c.parquet --out-dir xai")
OPTIONS = (
    Option("--scores", "xai-cell JSON files", nargs="+", required=True),
    Option("--maps", "the explain stage's maps files", nargs="+", required=True),
    Option("--manifest", "manifest.parquet", required=True),
    Option("--dataset", "the dataset name the manifest must carry", required=True, config="dataset"),
    Option("--cache", "image cache for the frequency spectra", required=True),
    Option("--cache-index", "its index", required=True),
    Option("--method", "method of the spatial-prior figure (default: explain/catalog.py's PRIOR_METHOD)",
           config="xai.prior_method"),
    Option("--out-dir", "gets ranking.md/.csv and the figures", required=True),
)


def run(args: argparse.Namespace) -> None:
    from ..data.cache import ImageCache
    from ..data.manifest import read_manifest
    from ..explain.catalog import PRIOR_METHOD
    from ..report.xai import build_xai_report

    written = build_xai_report(xai_paths=args.scores, maps_paths=args.maps,
                               manifest=read_manifest(args.manifest, args.dataset),
                               cache=ImageCache(args.cache, args.cache_index), out_dir=args.out_dir,
                               method=args.method or PRIOR_METHOD)
    print(f"{len(written)} files -> {args.out_dir} (start at {Path(args.out_dir) / 'ranking.md'})")
