"""The study's set names, defined here once, and which manifest rows make up a train set or a test part.

A *part* is one platform's images (the pre-social originals or one platform's shared copies);
``combined`` is every part together: as a train set, trained on all of them; as a test set, the
parts' predictions pooled (never inferred again).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

PRESOCIAL = "presocial"
SHARED_PLATFORMS = ("facebook", "telegram", "twitter")  # the platforms whose copies TrueFace holds
PARTS = (PRESOCIAL, *SHARED_PLATFORMS)
COMBINED = "combined"
TRAIN_SETS = (*PARTS, COMBINED)
TEST_SETS = (*PARTS, COMBINED)


def parts_of(test_sets: Iterable[str]) -> list[str]:
    """The parts whose test images these test sets use (``combined`` uses all), in part order."""
    wanted: set[str] = set()
    for name in test_sets:
        wanted |= set(PARTS) if name == COMBINED else {name}
    return [p for p in PARTS if p in wanted]


def predicted_sets(test_sets: Iterable[str]) -> list[str]:
    """What a training job predicts for these test sets: their parts, then ``combined`` (pooled)."""
    test_sets = list(test_sets)
    return parts_of(test_sets) + ([COMBINED] if COMBINED in test_sets else [])


def select(manifest: pd.DataFrame, set_name: str, split: str) -> pd.DataFrame:
    """Rows of ``split`` (train/val/test) on one platform, or on all of them for ``combined``."""
    if set_name not in TRAIN_SETS:
        raise ValueError(f"unknown set {set_name!r}: expected one of {', '.join(TRAIN_SETS)}")
    rows = manifest[manifest["split"] == split]
    if set_name != COMBINED:
        rows = rows[rows["platform"] == set_name]
    if rows.empty:
        raise ValueError(
            f"the {set_name} set has no {split} images in the manifest: check the dataset "
            "(manifest_summary.csv) and data.splits"
        )
    return rows.reset_index(drop=True)
