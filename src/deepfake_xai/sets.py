"""Which manifest rows make up a train set or a test part (the paper's splits of TrueFace)."""

from __future__ import annotations

import pandas as pd

from .data.layout import PLATFORM_PARTS

TRAIN_SETS = (*PLATFORM_PARTS, "combined")
TEST_SETS = (*PLATFORM_PARTS, "combined")


def select(manifest: pd.DataFrame, set_name: str, split: str) -> pd.DataFrame:
    """Rows of ``split`` (train/val/test) on one platform, or on all of them for ``combined``."""
    if set_name not in TRAIN_SETS:
        raise ValueError(f"unknown set {set_name!r}: expected one of {', '.join(TRAIN_SETS)}")
    rows = manifest[manifest["split"] == split]
    if set_name != "combined":
        rows = rows[rows["platform"] == set_name]
    if rows.empty:
        raise ValueError(
            f"the {set_name} set has no {split} images in the manifest: check the dataset "
            "(manifest_summary.csv) and data.splits"
        )
    return rows.reset_index(drop=True)
