"""Figures beyond the paper: train x test matrices, training curves, confusion matrices.

Every figure is drawn from the files the earlier stages wrote (metrics JSON, log.csv); a cell that was
not built is drawn grey and labelled, never interpolated.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..io import write_bytes, write_text
from .tables import display

MATRIX_METRICS = ("accuracy", "f1", "roc_auc")
MATRIX_LABELS = {"accuracy": "Accuracy", "f1": "F1", "roc_auc": "ROC-AUC"}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """PNG written atomically (rendered to memory, then renamed into place)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    write_bytes(path, buf.getvalue())
    return Path(path)


def matrix(metrics: Mapping[tuple[str, str, str], dict], model: str, train_sets: list[str],
           test_sets: list[str], metric: str) -> np.ndarray:
    """train set x test set values of one metric for one model; NaN where the cell was not built."""
    out = np.full((len(train_sets), len(test_sets)), np.nan)
    for i, tr in enumerate(train_sets):
        for j, te in enumerate(test_sets):
            value = metrics.get((model, tr, te), {}).get(metric)
            if value is not None:
                out[i, j] = value
    return out


def matrix_figure(metrics: Mapping, model: str, train_sets: list[str], test_sets: list[str],
                  path: str | Path) -> Path:
    """Annotated heatmaps of accuracy, F1 and AUC over every (train set, test set) of one model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(MATRIX_METRICS), figsize=(4.2 * len(MATRIX_METRICS), 0.6 * len(train_sets) + 1.8))
    for ax, metric in zip(np.atleast_1d(axes), MATRIX_METRICS):
        values = matrix(metrics, model, train_sets, test_sets, metric)
        masked = np.ma.masked_invalid(values)
        cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
        ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0)
        for i in range(len(train_sets)):
            for j in range(len(test_sets)):
                v = values[i, j]
                text = "not\nbuilt" if np.isnan(v) else f"{100 * v:.1f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="black" if np.isnan(v) or v > 0.6 else "white")
        ax.set_xticks(range(len(test_sets)), [display(t) for t in test_sets], rotation=30, ha="right")
        ax.set_yticks(range(len(train_sets)), [display(t) for t in train_sets])
        ax.set_xlabel("test set")
        ax.set_ylabel("train set")
        ax.set_title(f"{display(model)}: {MATRIX_LABELS[metric]} (%)")
    fig.tight_layout()
    return save_figure(fig, path)


def matrices_table(metrics: Mapping, models: list[str], train_sets: list[str],
                   test_sets: list[str]) -> tuple[str, str]:
    """Every (model, train set, test set) cell's accuracy, F1 and AUC as (markdown, csv)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "train_set", "test_set", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                "f1", "f1_ci_low", "f1_ci_high", "roc_auc", "built"])
    md = ["# Every train set x test set cell", "",
          "Accuracy / F1 / ROC-AUC in percent; `-` where the cell is not in the configured grid.", ""]
    for model in models:
        md += [f"## {display(model)}", "",
               "| train \\ test | " + " | ".join(display(t) for t in test_sets) + " |",
               "|---|" + "---|" * len(test_sets)]
        for tr in train_sets:
            row = []
            for te in test_sets:
                m = metrics.get((model, tr, te))
                if m is None:
                    row.append("-")
                    w.writerow([model, tr, te, "", "", "", "", "", "", "", "", 0])
                    continue
                ci = m.get("ci95") or {}
                acc_ci, f1_ci = ci.get("accuracy") or ["", ""], ci.get("f1") or ["", ""]
                auc = m.get("roc_auc")
                row.append(f"{100 * m['accuracy']:.1f} / {100 * m['f1']:.1f} / "
                           + ("n/a" if auc is None else f"{100 * auc:.1f}"))
                w.writerow([model, tr, te, m["n"], m["accuracy"], *acc_ci, m["f1"], *f1_ci,
                            "" if auc is None else auc, 1])
            md.append(f"| {display(tr)} | " + " | ".join(row) + " |")
        md.append("")
    return "\n".join(md), buf.getvalue()


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """A training log.csv as columns of floats."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def training_curves_figure(logs: Mapping[tuple[str, str], str | Path], path: str | Path) -> Path:
    """Training loss and validation balanced accuracy per epoch; a column per train set, a line per model."""
    plt = pyplot()
    if not logs:  # `deepfake-xai report` without --train: say so rather than fail
        fig, ax = plt.subplots(figsize=(4.8, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "no training runs given (report --train)", ha="center", va="center")
        return save_figure(fig, path)
    train_sets = list(dict.fromkeys(tr for _, tr in logs))
    models = list(dict.fromkeys(m for m, _ in logs))
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}  # one colour per model
    fig, axes = plt.subplots(2, len(train_sets), figsize=(3.6 * len(train_sets), 6.4), squeeze=False)
    for j, tr in enumerate(train_sets):
        for (model, t), p in logs.items():
            if t != tr:
                continue
            log = read_log(p)
            if not log:
                continue
            style = dict(marker="o", color=colors[model], label=display(model))
            axes[0, j].plot(log["epoch"], log["train_loss"], **style)
            axes[1, j].plot(log["epoch"], 100 * log["val_balanced_accuracy"], **style)
        axes[0, j].set_title(f"trained on {display(tr)}")
        axes[0, j].set_ylabel("training loss")
        axes[1, j].set_ylabel("val balanced accuracy (%)")
        axes[1, j].set_xlabel("epoch")
        for ax in axes[:, j]:
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [plt.Line2D([], [], marker="o", color=colors[m], label=display(m)) for m in models]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(models), 7), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return save_figure(fig, path)


def confusion_figure(metrics: Mapping, model: str, train_sets: list[str], test_sets: list[str],
                     path: str | Path) -> Path:
    """The confusion matrix of every built cell of one model, as blocks of one image (rows: train
    sets, each block's rows the true class real/fake; columns: test sets, each block's columns the
    predicted class). Each block is shaded by its rows' share, so cells of different size compare."""
    plt = pyplot()
    nr, nc = len(train_sets), len(test_sets)
    shade = np.full((2 * nr, 2 * nc), np.nan)
    fig, ax = plt.subplots(figsize=(1.5 * nc + 1.5, 1.5 * nr + 1.0))
    for i, tr in enumerate(train_sets):
        for j, te in enumerate(test_sets):
            m = metrics.get((model, tr, te))
            if m is None:
                ax.text(2 * j + 0.5, 2 * i + 0.5, "not built", ha="center", va="center", fontsize=7, color="grey")
                continue
            cm = m["confusion_matrix"]
            grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]], dtype=float)
            shade[2 * i:2 * i + 2, 2 * j:2 * j + 2] = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
            for (r, c), v in np.ndenumerate(grid):
                ax.text(2 * j + c, 2 * i + r, f"{int(v)}", ha="center", va="center", fontsize=7,
                        color="white" if shade[2 * i + r, 2 * j + c] > 0.5 else "black")
    ax.imshow(np.ma.masked_invalid(shade), cmap=plt.get_cmap("Blues").with_extremes(bad="#f2f2f2"),
              vmin=0, vmax=1)
    for k in range(1, max(nr, nc)):
        if k < nr:
            ax.axhline(2 * k - 0.5, color="white", lw=3)
        if k < nc:
            ax.axvline(2 * k - 0.5, color="white", lw=3)
    ax.set_xticks([2 * j + 0.5 for j in range(nc)], [f"test {display(t)}" for t in test_sets], fontsize=8,
                  rotation=30, ha="right")
    ax.set_yticks([2 * i + 0.5 for i in range(nr)], [f"train {display(t)}" for t in train_sets], fontsize=8)
    ax.set_title(f"{display(model)}: confusion matrices\n(in each block: rows real/fake, columns predicted "
                 "real/fake)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_matrices(metrics: Mapping, models: list[str], train_sets: list[str], test_sets: list[str],
                   tables_dir: str | Path) -> list[Path]:
    md, csv_text = matrices_table(metrics, models, train_sets, test_sets)
    tables_dir = Path(tables_dir)
    write_text(tables_dir / "matrices.md", md)
    write_text(tables_dir / "matrices.csv", csv_text)
    return [tables_dir / "matrices.md", tables_dir / "matrices.csv"]
