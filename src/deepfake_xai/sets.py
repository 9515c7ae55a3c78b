"""The study's set names and which manifest rows make up a train set or a test part.

A *part* is one platform's images: ``presocial`` (the originals) or one platform's shared copies,
named after the platform (``names/data/known.yaml``; a dataset's parts are the platforms present in
it, ``config.dataset_parts``). ``combined`` is every part together: as a train set, trained on all of
them; as a test set, the parts' predictions pooled (never inferred again). A *protocol* train set
(``protocols:`` in the config) is one part's (or ``combined``'s) images less the fakes of held-out
generators: leave-one-generator-out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

PRESOCIAL = "presocial"
COMBINED = "combined"


def train_set_names(parts: Sequence[str], protocols: Iterable[str] = ()) -> list[str]:
    """Every train set of a dataset with these parts: each part, ``combined``, the protocols."""
    return [*parts, COMBINED, *protocols]


def test_set_names(parts: Sequence[str]) -> list[str]:
    """Every test set of a dataset with these parts: each part and ``combined``."""
    return [*parts, COMBINED]


def parts_of(test_sets: Iterable[str], parts: Sequence[str]) -> list[str]:
    """The parts whose test images these test sets use (``combined`` uses all), in part order."""
    wanted: set[str] = set()
    for name in test_sets:
        wanted |= set(parts) if name == COMBINED else {name}
    return [p for p in parts if p in wanted]


def predicted_sets(test_sets: Iterable[str], parts: Sequence[str]) -> list[str]:
    """What a training job predicts for these test sets: their parts, then ``combined`` (pooled)."""
    test_sets = list(test_sets)
    return parts_of(test_sets, parts) + ([COMBINED] if COMBINED in test_sets else [])


def select(manifest: pd.DataFrame, set_name: str, split: str, rows: dict | None = None) -> pd.DataFrame:
    """Rows of ``split`` (train/val/test) of one part, or of every part for ``combined``. ``rows``
    (a protocol: ``{"part": ..., "generators": [...]}``) keeps the reals of its part and the fakes of
    the listed generators only."""
    part = (rows or {}).get("part", set_name)
    present = list(dict.fromkeys(manifest["platform"]))
    if part != COMBINED and part not in present:
        raise ValueError(f"unknown set {set_name!r}: this dataset's parts are {', '.join(present)} "
                         f"(and {COMBINED})")
    out = manifest[manifest["split"] == split]
    if part != COMBINED:
        out = out[out["platform"] == part]
    if rows and rows.get("generators") is not None:
        out = out[(out["label"] == 0) | out["generator"].isin(rows["generators"])]
    if out.empty:
        raise ValueError(
            f"the {set_name} set has no {split} images in the manifest: check the dataset "
            "(manifest_summary.csv) and data.splits"
        )
    return out.reset_index(drop=True)
