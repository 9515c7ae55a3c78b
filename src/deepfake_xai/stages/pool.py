"""Stage pool: parts' predictions concatenated into the combined test set (never inferred again)."""

from __future__ import annotations

import argparse

from .spec import Option

HELP = "pool parts' predictions into the combined test set"
EXAMPLE = "deepfake-xai pool presocial.parquet facebook.parquet --out combined.parquet"
OPTIONS = (Option("parts", "predictions files", nargs="+"), Option("--out", "the pooled file", required=True))


def run(args: argparse.Namespace) -> None:
    from ..evaluate import pool, read_predictions
    from ..io import write_parquet

    pooled = pool([read_predictions(p) for p in args.parts])
    write_parquet(pooled, args.out)
    print(f"pooled {len(args.parts)} parts, {len(pooled)} predictions -> {args.out}")
