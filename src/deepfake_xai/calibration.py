"""Is a detector's confidence honest, and does its decision survive sharing? Numpy only.

- Expected calibration error (Guo et al. 2017): the top-label confidence (P of the predicted class)
  against the accuracy, in equal-width bins, weighted by the bins' shares; its reliability diagram.
- A decision threshold chosen on pre-social validation images (the one with the best balanced
  accuracy) carried unchanged to each platform, against the fixed one.
- McNemar's exact test (McNemar 1947) on the same source images before and after sharing: do the
  images the model gets right change more in one direction than chance allows?
"""

from __future__ import annotations

import math

import numpy as np

N_BINS = 15  # Guo et al.'s choice


def top_label(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Each image's confidence in its predicted class (fake when P(fake) >= ``threshold``) and whether
    that class is right."""
    probs = np.asarray(probs, dtype=float)
    pred = probs >= threshold
    return np.where(pred, probs, 1.0 - probs), (pred.astype(int) == np.asarray(labels).astype(int))


def _bin_of(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence: bin b holds (b/n, (b+1)/n], the first also 0 (Guo et al.)."""
    return np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS, threshold: float = 0.5) -> list[dict]:
    """The reliability diagram's bins: each non-empty bin's range, count, mean confidence and accuracy."""
    conf, correct = top_label(probs, labels, threshold)
    b = _bin_of(conf, n_bins)
    out = []
    for k in range(n_bins):
        sel = b == k
        if sel.any():
            out.append({"low": k / n_bins, "high": (k + 1) / n_bins, "n": int(sel.sum()),
                        "confidence": float(conf[sel].mean()), "accuracy": float(correct[sel].mean())})
    return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS,
                               threshold: float = 0.5) -> float:
    """ECE = sum over bins of (n_b / n) |accuracy_b - confidence_b| (Guo et al. 2017, eq. 3)."""
    conf, correct = top_label(probs, labels, threshold)
    return _ece(conf, correct.astype(float), _bin_of(conf, n_bins), n_bins)


def _ece(conf: np.ndarray, correct: np.ndarray, bins: np.ndarray, n_bins: int) -> float:
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=conf, minlength=n_bins)
    return float(np.abs(gap).sum() / max(1, len(conf)))


def ece_interval(probs: np.ndarray, labels: np.ndarray, n_boot: int, seed: int, groups: np.ndarray | None = None,
                 n_bins: int = N_BINS, threshold: float = 0.5) -> list[float] | None:
    """Bias-corrected percentile 95% interval of the ECE over ``n_boot`` resamples of the images (or of
    ``groups``, e.g. source images, whose copies are drawn together)."""
    if n_boot <= 0 or len(probs) < 2:
        return None
    conf, correct = top_label(probs, labels, threshold)
    bins = _bin_of(conf, n_bins)
    member = np.unique(np.asarray(groups), return_inverse=True)[1] if groups is not None else np.arange(len(conf))
    k = int(member.max()) + 1
    # per (group, bin): the images, their summed confidence and their right answers; a resample is a
    # count per group (how often it was drawn), and its bins' sums are that count times these rows
    cell = member * n_bins + bins
    count, conf_sum, right = (np.bincount(cell, weights=w, minlength=k * n_bins).reshape(k, n_bins)
                              for w in (None, conf, correct.astype(float)))
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_boot, 200):
        drawn = np.stack([np.bincount(rng.integers(0, k, size=k), minlength=k)
                          for _ in range(min(200, n_boot - start))]).astype(float)
        gap = np.abs(drawn @ right - drawn @ conf_sum).sum(axis=1)
        values.append(gap / np.maximum(drawn @ count.sum(axis=1), 1))
    values = np.concatenate(values)
    # Binned ECE is biased upwards (every bin's noise adds to |accuracy - confidence|), and more so in
    # a resample, so a plain percentile interval can sit above the estimate: shift it by the
    # bootstrap's estimate of that bias (bias-corrected percentile interval), floored at 0.
    bias = float(values.mean()) - _ece(conf, correct.astype(float), bins, n_bins)
    return [max(0.0, float(np.percentile(values, 2.5)) - bias), max(0.0, float(np.percentile(values, 97.5)) - bias)]


def best_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The decision threshold with the highest balanced accuracy (Youden's J) on these images: the
    midpoint between two neighbouring distinct probabilities (so it sits between images, not on
    one); of equally good thresholds, the one nearest 0.5."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels).astype(int)
    if (labels == 1).all() or (labels == 0).all():
        raise ValueError("a threshold needs real and fake images; this validation set has one class only")
    s = np.unique(probs)
    candidates = np.r_[s[0] - 1e-6, (s[:-1] + s[1:]) / 2, s[-1] + 1e-6] if len(s) > 1 else np.r_[s[0]]
    pred = probs[None, :] >= candidates[:, None]
    tpr = (pred & (labels == 1)).sum(1) / (labels == 1).sum()
    tnr = (~pred & (labels == 0)).sum(1) / (labels == 0).sum()
    score = (tpr + tnr) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(np.clip(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]], 0.0, 1.0))


def rates(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Accuracy, the fakes caught (true-positive rate) and the reals passed (true-negative rate)."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels).astype(int)
    pred = (probs >= threshold).astype(int)
    fake, real = labels == 1, labels == 0
    return {"accuracy": float((pred == labels).mean()) if len(labels) else math.nan,
            "fake_recall": float(pred[fake].mean()) if fake.any() else math.nan,
            "real_recall": float(1 - pred[real].mean()) if real.any() else math.nan}


def mcnemar(before: np.ndarray, after: np.ndarray) -> dict:
    """McNemar's exact test of paired right/wrong outcomes: ``b`` images right before and wrong after,
    ``c`` wrong before and right after; p = 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1
    (the two-sided exact version)."""
    from scipy.stats import binom

    before, after = np.asarray(before, bool), np.asarray(after, bool)
    b, c = int((before & ~after).sum()), int((~before & after).sum())
    p = 1.0 if b + c == 0 else float(min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5)))
    return {"n": int(len(before)), "right_then_wrong": b, "wrong_then_right": c, "p_value": p}
