"""Every metric equals scikit-learn's on the same predictions."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from deepfake_xai.metrics import compute_metrics


def _preds(n, seed, ties=False, one_class=False):
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, int) if one_class else rng.integers(0, 2, n)
    prob = np.clip(0.5 + (labels - 0.5) * rng.uniform(0, 0.6, n) + rng.normal(0, 0.25, n), 0, 1)
    if ties:
        prob = np.round(prob, 1)
    gens = np.where(labels == 1, rng.choice(["stylegan", "stylegan2"], n), "ffhq")
    psi = np.where(labels == 1, rng.choice([0.5, 1.0], n), np.nan)
    return pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "label": labels, "prob": prob,
                         "generator": gens, "psi": psi})


def _eer_reference(labels, scores):
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    fnr = 1 - tpr
    k = np.argmax(fnr - fpr <= 0)
    d0, d1 = fnr[k - 1] - fpr[k - 1], fnr[k] - fpr[k]
    t = d0 / (d0 - d1)
    return fpr[k - 1] + t * (fpr[k] - fpr[k - 1])


@pytest.mark.parametrize("n, seed, ties", [(50, 0, False), (333, 1, True), (1000, 2, False), (7, 3, True)])
def test_metrics_equal_scikit_learn(n, seed, ties):
    df = _preds(n, seed, ties)
    if df["label"].nunique() < 2:
        pytest.skip("degenerate draw")
    m = compute_metrics(df, threshold=0.5, n_boot=200, seed=0)
    y, s = df["label"].to_numpy(), df["prob"].to_numpy()
    yhat = (s >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, yhat), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, yhat, zero_division=0), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y, yhat, zero_division=0), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, yhat, zero_division=0), abs=1e-12)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert m["eer"] == pytest.approx(_eer_reference(y, s), abs=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(y, yhat, labels=[0, 1]).ravel()
    assert m["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert m["n"] == n
    lo, hi = m["ci95"]["accuracy"]
    assert lo <= m["accuracy"] <= hi and hi - lo > 0
    for g in m["by_generator"]:
        sel = (df["generator"] == g["generator"]) & (
            df["psi"].isna() if g["psi"] is None else df["psi"] == g["psi"])
        assert g["n"] == sel.sum()
        assert g["accuracy"] == pytest.approx(skm.accuracy_score(y[sel], yhat[sel]))


def test_threshold_is_applied():
    df = _preds(200, 5)
    for thr in (0.3, 0.7):
        m = compute_metrics(df, threshold=thr, n_boot=0)
        yhat = (df["prob"] >= thr).astype(int)
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(df["label"], yhat))
        assert m["ci95"] == {"accuracy": None, "f1": None}


def test_predictions_of_a_diverged_model_are_refused():
    df = _preds(20, 2)
    df.loc[3, "prob"] = float("nan")
    with pytest.raises(ValueError, match="1 of 20 probabilities are not finite"):
        compute_metrics(df, n_boot=0)


def test_single_class_test_set_has_no_auc_but_no_crash():
    m = compute_metrics(_preds(30, 1, one_class=True), n_boot=50)
    assert m["roc_auc"] is None and m["eer"] is None and m["average_precision"] is None
    assert 0 <= m["accuracy"] <= 1


def test_bootstrap_is_seeded():
    df = _preds(120, 4)
    assert compute_metrics(df, seed=3)["ci95"] == compute_metrics(df, seed=3)["ci95"]
    assert compute_metrics(df, seed=3)["ci95"] != compute_metrics(df, seed=4)["ci95"]


def test_copies_of_one_source_are_resampled_together():
    """The combined test set holds a source's copies from several platforms: its bootstrap draws
    sources. Four identical copies per source then give exactly the interval of one copy each,
    where drawing files would pretend four times the evidence (a narrower interval)."""
    one = _preds(60, 5)
    one["source_id"] = [f"s{i}" for i in range(60)]
    four = pd.concat([one] * 4, ignore_index=True)
    four["image_id"] = [f"i{i}" for i in range(len(four))]
    by_source = compute_metrics(four, seed=3)
    assert by_source["bootstrap_unit"] == "source image" and by_source["n"] == 240
    assert by_source["ci95"] == compute_metrics(one, seed=3)["ci95"]
    assert compute_metrics(one, seed=3)["bootstrap_unit"] == "image"  # one image per source
    by_file = compute_metrics(four.drop(columns="source_id"), seed=3)
    assert by_file["bootstrap_unit"] == "image"
    width = lambda m: m["ci95"]["accuracy"][1] - m["ci95"]["accuracy"][0]  # noqa: E731
    assert width(by_file) < 0.7 * width(by_source)
