"""The calibration report: each cell's expected calibration error with its interval (from the metrics
files), a threshold chosen on pre-social validation images carried to every platform, McNemar's test
on the same source images before and after sharing, and reliability diagrams."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .. import calibration as C
from ..io import write_text
from ..names import part_order
from ..sets import COMBINED, PRESOCIAL
from .figures import pyplot, save_figure
from .tables import ReportInputError, display

CALIBRATION_FILES = ("calibration.md", "calibration.csv")
RELIABILITY_FIGURE = "reliability.png"


def _read(path: str | Path) -> dict[str, np.ndarray]:
    from ..evaluate import read_prediction_arrays

    try:
        return read_prediction_arrays(path)
    except (OSError, ValueError) as err:
        raise ReportInputError(f"{path}: {err}") from None


def _keyed(paths: Iterable[str | Path], depth: int) -> dict[tuple[str, str], dict]:
    """Files at .../<model>/<train_set>/<file>, keyed (model, train set), or with depth 3 also by the file's
    stem (the test set)."""
    out: dict = {}
    for p in map(Path, paths):
        model, train_set = p.parent.parent.name, p.parent.name
        out[(model, train_set, p.stem) if depth == 3 else (model, train_set)] = _read(p)
    return out


def calibration_rows(metrics: Mapping[tuple[str, str, str], dict], prediction_files: Iterable[str | Path],
                     validation_files: Iterable[str | Path]) -> list[dict]:
    """One row per (model, train set, test set): ECE with its interval; for the parts, the rates at the
    fixed threshold and at the one chosen on the model's pre-social validation predictions; for a
    platform, McNemar's test against the same sources' pre-social copies (fixed threshold)."""
    preds = _keyed(prediction_files, 3)
    val = _keyed(validation_files, 2)
    rows = []
    for (model, train_set, test_set), m in sorted(metrics.items()):
        cal = m.get("calibration") or {}
        fixed = float(m.get("threshold", 0.5))
        row = {"model": model, "train_set": train_set, "test_set": test_set, "n": m.get("n"),
               "ece": cal.get("ece"), "ece_ci95": cal.get("ece_ci95"), "threshold": fixed,
               "validation_threshold": None}
        v = val.get((model, train_set))
        if v is not None and len(set(v["label"].tolist())) == 2:
            row["validation_threshold"] = C.best_threshold(v["prob"], v["label"])
            row["n_validation"] = int(len(v["label"]))
        p = preds.get((model, train_set, test_set))
        if p is not None:
            row["fixed"] = C.rates(p["prob"], p["label"], fixed)
            if row["validation_threshold"] is not None:
                row["chosen"] = C.rates(p["prob"], p["label"], row["validation_threshold"])
            before = preds.get((model, train_set, PRESOCIAL))
            if test_set not in (PRESOCIAL, COMBINED) and before is not None:
                row["mcnemar"] = _paired(before, p, fixed)
                if row["validation_threshold"] is not None:
                    row["mcnemar_chosen"] = _paired(before, p, row["validation_threshold"])
        rows.append(row)
    return rows


def _paired(before: dict, after: dict, threshold: float) -> dict | None:
    """McNemar on the sources present in both parts (one image per source in a part)."""
    if "source_id" not in before or "source_id" not in after:
        return None
    right = {}
    for name, p in (("before", before), ("after", after)):
        sources = p["source_id"].tolist()
        if len(set(sources)) < len(sources):
            raise ReportInputError(f"McNemar pairs each source image's copies before and after sharing, but the "
                                   f"{name} part has {len(sources) - len(set(sources))} repeated source_id(s) "
                                   "(a part holds one copy per source): check the manifest's source_id column")
        ok = (p["prob"] >= threshold).astype(int) == p["label"]
        right[name] = dict(zip(sources, ok.tolist()))
    common = sorted(set(right["before"]) & set(right["after"]))
    if not common:
        return None
    return C.mcnemar(np.array([right["before"][s] for s in common]), np.array([right["after"][s] for s in common]))


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def calibration_markdown(rows: list[dict]) -> str:
    lines = ["# Calibration and the shared threshold", "",
             "ECE: expected calibration error (Guo et al. 2017; top-label confidence, 15 equal-width bins), "
             "with its 95% bootstrap interval (source images resampled in the combined set). "
             "Fixed: the configured decision threshold (evaluate.threshold); chosen: the threshold with the best "
             "balanced accuracy on the model's pre-social validation images, carried unchanged to every test part. "
             "Rates in percent: accuracy, fakes caught (fake recall), reals passed (real recall). "
             "McNemar: exact test on the same source images before (pre-social) and after sharing, at the fixed "
             "threshold (and its p at the chosen one); right->wrong and wrong->right count the images whose verdict "
             "changed.", "",
             "| model | train set | test set | n | ECE [95% CI] | threshold fixed / chosen | accuracy | fake recall | "
             "real recall | McNemar right->wrong / wrong->right (n) | p fixed / chosen |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r.get("ece_ci95")
        ece = "-" if r["ece"] is None else f"{r['ece']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        thr = f"{r['threshold']:.4g} / " + ("-" if r["validation_threshold"] is None
                                             else f"{r['validation_threshold']:.4g}")
        f, c = r.get("fixed") or {}, r.get("chosen") or {}
        rates = [f"{_pct(f.get(k))} / {_pct(c.get(k))}" for k in ("accuracy", "fake_recall", "real_recall")]
        mc = r.get("mcnemar")
        mc_txt = f"{mc['right_then_wrong']} / {mc['wrong_then_right']} ({mc['n']})" if mc else "-"
        mcc = r.get("mcnemar_chosen")
        p_txt = (f"{mc['p_value']:.3g} / " + (f"{mcc['p_value']:.3g}" if mcc else "-")) if mc else "-"
        lines.append(f"| {display(r['model'])} | {display(r['train_set'])} | {display(r['test_set'])} | {r['n']} | "
                     f"{ece} | {thr} | " + " | ".join(rates) + f" | {mc_txt} | {p_txt} |")
    lines += ["", "Rates are shown as fixed / chosen threshold.", ""]
    return "\n".join(lines)


CSV_HEAD = ["model", "train_set", "test_set", "n", "ece", "ece_ci_low", "ece_ci_high", "threshold",
            "validation_threshold", "n_validation", "accuracy", "fake_recall", "real_recall", "accuracy_chosen",
            "fake_recall_chosen", "real_recall_chosen", "mcnemar_n", "right_then_wrong", "wrong_then_right",
            "mcnemar_p", "right_then_wrong_chosen", "wrong_then_right_chosen", "mcnemar_p_chosen"]


def calibration_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEAD)

    def num(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.6f}" if isinstance(v, float)
                                                                              else v)
    for r in rows:
        ci = r.get("ece_ci95") or [None, None]
        f, c, mc, mcc = r.get("fixed") or {}, r.get("chosen") or {}, r.get("mcnemar") or {}, r.get("mcnemar_chosen") or {}
        w.writerow([r["model"], r["train_set"], r["test_set"], num(r["n"]), num(r["ece"]), num(ci[0]), num(ci[1]),
                    num(r["threshold"]), num(r["validation_threshold"]), num(r.get("n_validation")),
                    *(num(f.get(k)) for k in ("accuracy", "fake_recall", "real_recall")),
                    *(num(c.get(k)) for k in ("accuracy", "fake_recall", "real_recall")),
                    num(mc.get("n")), num(mc.get("right_then_wrong")), num(mc.get("wrong_then_right")),
                    num(mc.get("p_value")), num(mcc.get("right_then_wrong")), num(mcc.get("wrong_then_right")),
                    num(mcc.get("p_value"))])
    return buf.getvalue()


def reliability_figure(metrics: Mapping[tuple[str, str, str], dict], path: str | Path) -> Path:
    """One reliability diagram per (model, train set): accuracy against confidence in each bin, one line
    per test part (the diagonal is perfect calibration; the legend gives each part's ECE)."""
    pairs = sorted({(m, tr) for m, tr, _ in metrics})
    plt = pyplot()
    cols = min(5, max(1, len(pairs)))
    rows_n = max(1, math.ceil(len(pairs) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(2.9 * cols, 2.7 * rows_n), squeeze=False)
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    for ax, (model, train_set) in zip(axes.flat, pairs):
        ax.plot([0.5, 1], [0.5, 1], color="grey", lw=0.8, ls="--")
        parts = part_order(t for m, tr, t in metrics if (m, tr) == (model, train_set) and t != COMBINED)
        for part in parts:
            cal = metrics[(model, train_set, part)].get("calibration") or {}
            bins = cal.get("reliability") or []
            if bins:
                ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", ms=3,
                        label=f"{display(part)} {cal['ece']:.2f}")
        low = min([0.5, *(b["low"] for (m, tr, _), v in metrics.items() if (m, tr) == (model, train_set)
                           for b in (v.get("calibration") or {}).get("reliability") or [])])
        ax.set_xlim(low, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_title(f"{display(model)} ({display(train_set)})", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, title="part, ECE", title_fontsize=6, loc="lower right")
    fig.supxlabel("confidence in the predicted class", fontsize=8)
    fig.supylabel("accuracy", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_calibration(metrics: Mapping[tuple[str, str, str], dict], prediction_files: Iterable[str | Path],
                      validation_files: Iterable[str | Path], tables_dir: str | Path,
                      figures_dir: str | Path) -> list[Path]:
    rows = calibration_rows(metrics, prediction_files, validation_files)
    tables = Path(tables_dir)
    write_text(tables / "calibration.md", calibration_markdown(rows))
    write_text(tables / "calibration.csv", calibration_csv(rows))
    return [tables / "calibration.md", tables / "calibration.csv",
            reliability_figure(metrics, Path(figures_dir) / RELIABILITY_FIGURE)]
