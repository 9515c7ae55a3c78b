"""The report's generalization tables: accuracy per generator in every cell, with the generators a
model never saw in training marked (leave-one-generator-out protocols), and the cross-dataset
(transfer) cells: models trained on this dataset, tested on another's parts."""

from __future__ import annotations

import math
from pathlib import Path

from ..io import write_text
from .tables import display, load_metrics

GENERALIZATION_FILES = ("generalization.csv", "generalization.md")
TRANSFER_FILES = ("transfer.csv", "transfer.md")


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (good at small n and near 0 or 1)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def generator_rows(metrics: dict, summaries: dict, families: dict[str, str]) -> list[dict]:
    """One row per cell x generator: its accuracy (the psi groups pooled) with a Wilson interval, its
    family, and whether the cell's model trained on it (``held_out`` for a fake generator absent from
    the train.json's ``trained_generators``)."""
    rows = []
    for (model, train_set, test_set), cell in sorted(metrics.items()):
        trained = (summaries.get((model, train_set)) or {}).get("trained_generators")
        pooled: dict[str, list[float]] = {}
        for g in cell.get("by_generator", []):
            n_right = pooled.setdefault(g["generator"], [0.0, 0])
            n_right[0] += g["accuracy"] * g["n"]
            n_right[1] += g["n"]
        for gen, (right, n) in pooled.items():
            k = int(round(right))
            family = families.get(gen, "other")
            lo, hi = wilson(k, n)
            rows.append({"model": model, "train_set": train_set, "test_set": test_set, "generator": gen,
                         "family": family, "n": n, "accuracy": k / n if n else float("nan"),
                         "ci_low": lo, "ci_high": hi,
                         "held_out": bool(trained is not None and family != "real" and gen not in trained)})
    return rows


def _csv(rows: list[dict], columns: list[str]) -> str:
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns))
    return "\n".join(lines) + "\n"


def _pct(acc: float, lo: float, hi: float) -> str:
    return f"{100 * acc:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]"


def generalization_markdown(rows: list[dict]) -> str:
    """Per generator accuracy of the cells with a held-out generator (what the model never saw), then
    every other cell's generators in the CSV."""
    cells = sorted({(r["model"], r["train_set"], r["test_set"]) for r in rows if r["held_out"]})
    lines = ["# Accuracy per generator", "",
             "Accuracy (%) on each generator's test images with a 95% Wilson interval; **held out** marks a "
             "fake generator the model never saw in training (a leave-one-generator-out protocol, `protocols:` "
             "in the config). Every cell's rows: [generalization.csv](generalization.csv).", ""]
    if not cells:
        lines += ["No cell has a held-out generator: every model was trained on every generator it was tested "
                  "on. Add a protocol (`protocols:` in the config) to train on some generators and test on the "
                  "others.", ""]
        return "\n".join(lines)
    lines += ["| Model | Train set | Test set | Generator | Family | n | Accuracy | Seen in training |",
              "|---|---|---|---|---|---|---|---|"]
    for model, train_set, test_set in cells:
        for r in (r for r in rows if (r["model"], r["train_set"], r["test_set"]) == (model, train_set, test_set)):
            seen = "real" if r["family"] == "real" else ("**held out**" if r["held_out"] else "yes")
            lines.append(f"| {display(model)} | {display(train_set)} | {display(test_set)} | {r['generator']} | "
                         f"{r['family']} | {r['n']} | {_pct(r['accuracy'], r['ci_low'], r['ci_high'])} | {seen} |")
    return "\n".join(lines + [""])


def transfer_rows(files: list[str | Path]) -> list[dict]:
    """The cross-dataset cells: model, train set, test dataset, test set, accuracy and its interval."""
    import json

    rows = []
    for path in files:
        data = json.loads(Path(path).read_text())
        if "test_dataset" not in data:
            from .tables import ReportInputError

            raise ReportInputError(f"{path}: not a cross-dataset cell (no 'test_dataset' field); give the files of "
                                   "the transfer_metrics rule")
        ci = data["ci95"]["accuracy"] or [float("nan")] * 2
        rows.append({"model": data["model"], "train_set": data["train_set"], "test_dataset": data["test_dataset"],
                     "test_set": data["test_set"], "n": data["n"], "accuracy": data["accuracy"],
                     "ci_low": ci[0], "ci_high": ci[1], "balanced_accuracy": data["balanced_accuracy"],
                     "roc_auc": data["roc_auc"] if data["roc_auc"] is not None else float("nan")})
    return sorted(rows, key=lambda r: (r["model"], r["train_set"], r["test_dataset"], r["test_set"]))


def transfer_markdown(rows: list[dict]) -> str:
    lines = ["# Cross-dataset cells", "",
             "Models trained on this dataset, tested on other datasets' parts (`transfer:` in the config; nothing "
             "retrained). Accuracy (%) with its 95% bootstrap interval.", ""]
    if not rows:
        return "\n".join(lines + ["No transfer dataset is configured.", ""])
    columns = list(dict.fromkeys((r["test_dataset"], r["test_set"]) for r in rows))
    lines += ["| Model | Train set | " + " | ".join(f"{d}: {display(s)}" for d, s in columns) + " |",
              "|---|---|" + "---|" * len(columns)]
    for model, train_set in dict.fromkeys((r["model"], r["train_set"]) for r in rows):
        cells = {(r["test_dataset"], r["test_set"]): r for r in rows if (r["model"], r["train_set"]) == (model, train_set)}
        values = [_pct(c["accuracy"], c["ci_low"], c["ci_high"]) if (c := cells.get(col)) else "-" for col in columns]
        lines.append(f"| {display(model)} | {display(train_set)} | " + " | ".join(values) + " |")
    return "\n".join(lines + [""])


def write_generalization(metrics_files, summaries: dict, transfer_files, out_dir: str | Path,
                         families: dict[str, str]) -> list[Path]:
    """tables/generalization.{csv,md} and tables/transfer.{csv,md}."""
    out_dir = Path(out_dir)
    rows = generator_rows(load_metrics(metrics_files), summaries, families)
    gen_cols = ["model", "train_set", "test_set", "generator", "family", "n", "accuracy", "ci_low", "ci_high",
                "held_out"]
    trows = transfer_rows(list(transfer_files))
    tr_cols = ["model", "train_set", "test_dataset", "test_set", "n", "accuracy", "ci_low", "ci_high",
               "balanced_accuracy", "roc_auc"]
    files = {"generalization.csv": _csv(rows, gen_cols), "generalization.md": generalization_markdown(rows),
             "transfer.csv": _csv(trows, tr_cols), "transfer.md": transfer_markdown(trows)}
    written = []
    for name, text in files.items():
        write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written
