"""Stage montage: one PNG per method, the shared images' maps side by side across models."""

from __future__ import annotations

import argparse
from pathlib import Path

from .spec import Option

HELP = "one PNG per method: the shared images' maps across models"
EXAMPLE = "deepfake-xai montage --maps a/maps.npz b/maps.npz --models a b --out-dir montages/presocial/twitter"
OPTIONS = (
    Option("--maps", "the explain stage's maps files", nargs="+", required=True),
    Option("--models", "one model name per maps file", nargs="+", required=True),
    Option("--methods", "methods to draw (default: every method not opt-in)", nargs="+", config="explain.methods"),
    Option("--out-dir", "gets one <method>.png per method", required=True),
    Option("--images", "shared images (rows)", type=int, default=4, config="explain.shared_images"),
)


def run(args: argparse.Namespace) -> None:
    from ..explain.bulk import read_maps
    from ..explain.catalog import default_methods
    from ..explain.panels import montage, save_png

    if len(args.models) != len(args.maps):
        raise SystemExit("error: give one --models name per --maps file")
    cells = {m: read_maps(p) for m, p in zip(args.models, args.maps)}
    methods = args.methods or default_methods()
    for method in methods:
        save_png(montage(cells, method, args.images), Path(args.out_dir) / f"{method}.png")
    print(f"{len(methods)} montages of {len(cells)} models -> {args.out_dir}")
