"""Evaluation: predictions of a trained model on a test part, and pooling of parts.

Predictions are one Parquet row per test image (image_id, label, prob, generator, psi, platform).
The ``combined`` test set is the four parts' predictions pooled, never inferred again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PRED_COLUMNS = ["image_id", "label", "prob", "generator", "psi", "platform"]
# Written since predictions carry it; older files without it are still read. The combined test set
# holds up to four copies of one source image, so its bootstrap resamples sources, not files.
SOURCE_COLUMN = "source_id"
VALIDATION = "validation"  # predict_parts' key of the pre-social validation images' predictions


def _columns(available) -> list[str]:
    return PRED_COLUMNS + ([SOURCE_COLUMN] if SOURCE_COLUMN in available else [])


def predict_parts(*, weights: str | Path, settings: dict, cache, manifest: pd.DataFrame,
                  parts: list[str], batch_size: int = 128, threads: int = 1,
                  device: str | None = None, validation: bool = False,
                  show: bool = True) -> dict[str, pd.DataFrame]:
    """Probability of "fake" for every test image of each platform part (model loaded once); with
    ``validation``, also for the pre-social validation images, under the key ``VALIDATION`` (where the
    calibration report chooses a decision threshold: images no train set trained on, since splits
    are made by source image)."""
    import torch

    from .progress import progress_bar
    from .runtime import Batches, Runner, load_trained, pick_device
    from .sets import PRESOCIAL, select

    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, threads))
    runner = Runner(load_trained(weights, settings), dev, settings)
    out = {}
    wanted = [(part, part, "test") for part in parts] + ([(VALIDATION, PRESOCIAL, "val")] if validation else [])
    for key, part, split in wanted:
        rows = select(manifest, part, split)
        batches = Batches(cache, cache.rows_for(rows["image_id"]), rows["label"].to_numpy(), batch_size,
                          prefetch=int(settings.get("loader_workers", 2)), pin=runner.cuda)
        probs, _ = runner.predict(progress_bar(batches, desc=f"predict {key}", unit="batch", disable=not show))
        preds = rows[["image_id", "label", "generator", "psi", "platform", SOURCE_COLUMN]].copy()
        preds["prob"] = probs
        out[key] = preds[PRED_COLUMNS + [SOURCE_COLUMN]]
    return out


def pool(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The combined test set: the parts' predictions concatenated (image ids are unique per part)."""
    import pandas as pd

    out = pd.concat(parts, ignore_index=True)
    if out["image_id"].duplicated().any():
        raise ValueError("the same image_id appears in two parts: were parts pooled twice?")
    return out[PRED_COLUMNS + ([SOURCE_COLUMN] if all(SOURCE_COLUMN in p.columns for p in parts) else [])]


def check_prediction_outputs(parts: list[str], outs: list[str], combined: str | None, outs_flag: str,
                             manifest_parts: list[str] | None = None) -> None:
    """Before any work: one output file per part, and ``combined`` only from every part of the dataset
    (``manifest_parts``, once the manifest is read)."""
    if len(parts) != len(outs):
        raise SystemExit(f"error: give one {outs_flag} file per --parts entry ({len(parts)} parts, {len(outs)} files)")
    if combined and manifest_parts is not None and sorted(parts) != sorted(manifest_parts):
        raise SystemExit(f"error: --combined pools every part of the dataset ({' '.join(manifest_parts)}), but "
                         f"--parts is {' '.join(parts) or 'empty'}: add the missing parts or drop --combined")


def write_predictions(preds: dict, parts: list[str], outs: list[str], combined: str | None,
                      validation: str | None = None) -> None:
    """Each part's predictions to its file, the parts pooled (the combined test set) to ``combined``,
    and the pre-social validation images' to ``validation``."""
    from .io import write_parquet

    if validation:
        write_parquet(preds[VALIDATION], validation)
        print(f"pre-social validation: {len(preds[VALIDATION])} predictions -> {validation}")
    for part, out in zip(parts, outs):
        write_parquet(preds[part], out)
        print(f"{part}: {len(preds[part])} predictions -> {out}")
    if combined:
        write_parquet(pool([preds[p] for p in parts]), combined)
        print(f"combined: {sum(len(preds[p]) for p in parts)} pooled predictions -> {combined}")


def read_prediction_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Predictions as numpy arrays via pyarrow alone (a metrics job need not import pandas)."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read()  # read_table would import pyarrow.dataset and pandas
    missing = [c for c in PRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path} is not a predictions file: missing columns {missing}")
    # to_pylist keeps pyarrow from importing pandas (its to_numpy conversions do), which is
    # most of a metrics job's start-up time.
    out = {c: table.column(c).to_pylist() for c in _columns(table.column_names)}
    out["psi"] = np.array([np.nan if v is None else v for v in out["psi"]], dtype=float)
    out["label"] = np.asarray(out["label"], dtype=np.int64)
    out["prob"] = np.asarray(out["prob"], dtype=float)
    for c in ("image_id", "generator", "platform", SOURCE_COLUMN):
        if c in out:
            out[c] = np.asarray(out[c], dtype=object)
    return out


def read_predictions(path: str | Path) -> pd.DataFrame:
    import pandas as pd

    df = pd.read_parquet(path)
    missing = [c for c in PRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a predictions file: missing columns {missing}")
    df["label"] = df["label"].astype(np.int64)
    return df
