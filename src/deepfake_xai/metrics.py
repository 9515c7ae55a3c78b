"""Detection metrics of one table cell, from its predictions (numpy only, so a metrics job is cheap).

Every value equals scikit-learn's on the same predictions (tests/test_metrics.py checks it).
Values are fractions in [0, 1]; reports show percent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .calibration import N_BINS, ece_interval, expected_calibration_error, reliability
from .scores import balanced_accuracy


def confusion(labels: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) with 1 = fake as the positive class."""
    tp = int(np.sum((pred == 1) & (labels == 1)))
    tn = int(np.sum((pred == 0) & (labels == 0)))
    fp = int(np.sum((pred == 1) & (labels == 0)))
    fn = int(np.sum((pred == 0) & (labels == 1)))
    return tn, fp, fn, tp


def _div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    pos, neg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _curve(labels: np.ndarray, scores: np.ndarray):
    """Cumulative (fp, tp) at each distinct score threshold, descending."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    return fps, tps


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision as scikit-learn defines it: sum over thresholds of (R_n - R_{n-1}) P_n."""
    if not np.any(labels == 1):
        return None
    fps, tps = _curve(labels, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The error rate where the false-positive and false-negative rates are equal (interpolated)."""
    pos, neg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    if pos == 0 or neg == 0:
        return None
    fps, tps = _curve(labels, scores)
    fpr = np.r_[0.0, fps / neg]
    fnr = np.r_[1.0, 1 - tps / pos]
    d = fnr - fpr  # decreasing from 1 to <= 0
    k = int(np.argmax(d <= 0))
    if d[k] == 0 or k == 0:
        return float(fpr[k])
    t = d[k - 1] / (d[k - 1] - d[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def bootstrap_intervals(labels: np.ndarray, pred: np.ndarray, n_boot: int, seed: int,
                        batch: int = 200, groups: np.ndarray | None = None) -> dict[str, list[float] | None]:
    """Percentile 95% intervals of accuracy and F1 over ``n_boot`` resamples.

    ``groups`` (e.g. each image's source): resample whole groups, so that correlated copies of one
    source (the combined test set's four platform copies) count as one draw. Without groups, or
    when every group is one image, this is the plain image bootstrap (the same draws, the same
    numbers)."""
    if n_boot <= 0 or len(labels) == 0:
        return {"accuracy": None, "f1": None}
    rng = np.random.default_rng(seed)
    if groups is None:
        member = np.arange(len(labels))
    else:  # groups numbered in order of first appearance (singletons then draw as images do)
        _, first, member = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(first))
        member = rank[member]
    k = int(member.max()) + 1

    def per_group(x: np.ndarray) -> np.ndarray:
        return np.bincount(member, weights=x, minlength=k).astype(np.int64)

    n_k = per_group(np.ones(len(labels)))
    correct_k = per_group((pred == labels).astype(float))
    tp_k = per_group(((pred == 1) & (labels == 1)).astype(float))
    fp_k = per_group(((pred == 1) & (labels == 0)).astype(float))
    fn_k = per_group(((pred == 0) & (labels == 1)).astype(float))
    acc, f1 = [], []
    for start in range(0, n_boot, batch):
        idx = rng.integers(0, k, size=(min(batch, n_boot - start), k))
        tp, fp, fn = tp_k[idx].sum(axis=1), fp_k[idx].sum(axis=1), fn_k[idx].sum(axis=1)
        acc.append(correct_k[idx].sum(axis=1) / n_k[idx].sum(axis=1))
        denom = 2 * tp + fp + fn
        f1.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    acc, f1 = np.concatenate(acc), np.concatenate(f1)
    return {
        "accuracy": [float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))],
        "f1": [float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))],
    }


def compute_metrics(
    predictions: Mapping, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0
) -> dict:
    """All metrics of one cell from its predictions: columns label, prob, generator, psi (a DataFrame
    or a dict of arrays)."""
    labels = np.asarray(predictions["label"]).astype(int)
    scores = np.asarray(predictions["prob"]).astype(float)
    if len(labels) == 0:
        raise ValueError("no predictions: the test set is empty")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} of {len(scores)} probabilities are not finite "
                         "(NaN or inf): the model diverged; retrain it (a lower lr, or amp off)")
    pred = (scores >= threshold).astype(int)
    sources = predictions["source_id"] if "source_id" in predictions else None
    if sources is not None and len(set(sources)) == len(labels):
        sources = None  # one image per source: the image bootstrap
    tn, fp, fn, tp = confusion(labels, pred)
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    out = {
        "n": int(len(labels)),
        "n_real": int(np.sum(labels == 0)),
        "n_fake": int(np.sum(labels == 1)),
        "threshold": threshold,
        "accuracy": _div(tp + tn, len(labels)),
        "balanced_accuracy": balanced_accuracy(labels, pred),
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "roc_auc": roc_auc(labels, scores),
        "average_precision": average_precision(labels, scores),
        "eer": equal_error_rate(labels, scores),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "ci95": bootstrap_intervals(labels, pred, n_boot, seed, groups=sources),
        "bootstrap": n_boot,
        "bootstrap_unit": "source image" if sources is not None else "image",
    }
    groups = []
    gens = np.asarray(predictions["generator"]).astype(str)
    psi = np.nan_to_num(np.asarray(predictions["psi"], dtype=float), nan=-1.0)
    for gen, p in sorted(set(zip(gens.tolist(), psi.tolist()))):
        sel = (gens == gen) & (psi == p)
        groups.append({
            "generator": gen, "psi": None if p < 0 else float(p), "n": int(sel.sum()),
            "accuracy": float(np.mean(pred[sel] == labels[sel])),
        })
    out["by_generator"] = groups
    out["calibration"] = {
        "ece": expected_calibration_error(scores, labels, threshold=threshold),
        "ece_ci95": ece_interval(scores, labels, n_boot, seed, groups=sources, threshold=threshold),
        "n_bins": N_BINS,
        "reliability": reliability(scores, labels, threshold=threshold),
    }
    return out
