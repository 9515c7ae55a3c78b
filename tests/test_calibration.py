"""Calibration, the carried threshold and McNemar's test, each against an independent implementation
(torchmetrics' calibration error, scikit-learn's calibration curve and ROC, statsmodels' McNemar),
and the report's calibration table built from prediction files."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from torchmetrics.functional.classification import multiclass_calibration_error

from deepfake_xai import calibration as C
from deepfake_xai.metrics import compute_metrics
from deepfake_xai.report.calibration import calibration_rows, write_calibration


def _draw(n, seed, skew=0.0):
    """Labels and P(fake) of a detector that is over- or under-confident (``skew``), no value on a bin edge."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logit = (labels - 0.5) * rng.uniform(0.5, 4.0, n) + rng.normal(0, 1.2, n)
    probs = 1 / (1 + np.exp(-logit * (1 + skew)))
    edges = np.linspace(0, 1, C.N_BINS + 1)
    conf = np.maximum(probs, 1 - probs)
    assert not np.isin(conf, edges).any() and not (probs == 0.5).any()
    return probs, labels


@pytest.mark.parametrize("n, seed, skew", [(40, 0, 0.0), (500, 1, 1.5), (2000, 2, -0.6), (97, 3, 3.0)])
def test_ece_equals_torchmetrics(n, seed, skew):
    probs, labels = _draw(n, seed, skew)
    two = torch.from_numpy(np.stack([1 - probs, probs], 1))
    ref = multiclass_calibration_error(two, torch.from_numpy(labels), num_classes=2, n_bins=C.N_BINS, norm="l1")
    # torchmetrics casts the confidences to float32 and sums in float32
    # (its _multiclass_calibration_error_update): the two differ by float32 rounding, about 1e-7
    assert C.expected_calibration_error(probs, labels) == pytest.approx(float(ref), abs=1e-6)
@pytest.mark.parametrize("seed", [4, 5])
def test_reliability_bins_equal_scikit_learn(seed):
    probs, labels = _draw(800, seed, 1.0)
    conf, correct = C.top_label(probs, labels)
    acc_ref, conf_ref = calibration_curve(correct.astype(int), conf, n_bins=C.N_BINS, strategy="uniform")
    bins = C.reliability(probs, labels)
    assert [b["accuracy"] for b in bins] == pytest.approx(acc_ref.tolist(), abs=1e-12)
    assert [b["confidence"] for b in bins] == pytest.approx(conf_ref.tolist(), abs=1e-12)
    assert sum(b["n"] for b in bins) == len(probs)


def test_a_calibrated_detector_scores_near_zero_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(6)
    probs = rng.uniform(0.01, 0.99, 20000)
    honest = (rng.uniform(size=probs.size) < probs).astype(int)  # P(fake) is the truth's own frequency
    assert C.expected_calibration_error(probs, honest) < 0.02
    sharp = np.where(probs >= 0.5, 0.999, 0.001)  # the same decisions, claimed with certainty
    assert C.expected_calibration_error(sharp, honest) > 0.2


def test_ece_interval_resamples_sources_together():
    probs, labels = _draw(300, 7, 1.0)
    alone = C.ece_interval(probs, labels, 400, seed=0)
    lo, hi = alone
    assert lo <= C.expected_calibration_error(probs, labels) <= hi
    # each image shared three more times (identical copies): resampled by source, the copies move
    # together and the interval is the single images' one; resampled by file it narrows (false precision)
    four = np.repeat(np.arange(300), 4)
    grouped = C.ece_interval(probs[four], labels[four], 400, seed=0, groups=four)
    assert grouped == pytest.approx(alone, abs=1e-12)
    by_file = C.ece_interval(probs[four], labels[four], 400, seed=0)
    assert by_file[1] - by_file[0] < 0.75 * (hi - lo)


@pytest.mark.parametrize("seed", [8, 9, 10])
def test_best_threshold_reaches_youdens_optimum_of_the_roc_curve(seed):
    probs, labels = _draw(257, seed, 0.3)
    probs = np.where(labels == 1, probs * 0.8, probs * 0.6)  # shifted: the best threshold is not 0.5
    fpr, tpr, _ = roc_curve(labels, probs)
    best_ref = float(np.max((tpr + 1 - fpr) / 2))
    t = C.best_threshold(probs, labels)
    r = C.rates(probs, labels, t)
    assert (r["fake_recall"] + r["real_recall"]) / 2 == pytest.approx(best_ref, abs=1e-12)
    assert not np.isin(t, probs)  # between images, not on one
    with pytest.raises(ValueError, match="one class"):
        C.best_threshold(probs, np.zeros_like(labels))


@pytest.mark.parametrize("b, c, same", [(7, 1, 30), (0, 0, 12), (15, 9, 3), (1, 20, 0), (40, 38, 100)])
def test_mcnemar_equals_statsmodels_exact(b, c, same):
    before = np.r_[np.ones(b), np.zeros(c), np.ones(same)].astype(bool)
    after = np.r_[np.zeros(b), np.ones(c), np.ones(same)].astype(bool)
    ours = C.mcnemar(before, after)
    ref = sm_mcnemar([[same, b], [c, 0]], exact=True)
    assert (ours["right_then_wrong"], ours["wrong_then_right"]) == (b, c)
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)


def test_metrics_cell_carries_ece_with_its_interval():
    probs, labels = _draw(400, 11, 1.0)
    df = pd.DataFrame({"image_id": [f"i{i}" for i in range(400)], "label": labels, "prob": probs,
                       "generator": "g", "psi": np.nan})
    cal = compute_metrics(df, n_boot=300)["calibration"]
    assert cal["ece"] == pytest.approx(C.expected_calibration_error(probs, labels))
    assert cal["ece_ci95"][0] <= cal["ece"] <= cal["ece_ci95"][1]
    assert sum(b["n"] for b in cal["reliability"]) == 400


def _part(path, sources, labels, probs, part):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image_id": [f"{part}-{s}" for s in sources], "label": labels, "prob": probs, "generator": "g",
                  "psi": np.nan, "platform": part, "source_id": sources}).to_parquet(path)
    return path


def test_calibration_table_from_prediction_files(tmp_path):
    rng = np.random.default_rng(12)
    n = 200
    src = np.array([f"s{i}" for i in range(n)])
    labels = rng.integers(0, 2, n)
    clean = np.where(labels == 1, rng.uniform(0.55, 1.0, n), rng.uniform(0.0, 0.45, n))  # all right before
    shared = clean * 0.7  # sharing lowers P(fake): fakes fall below 0.5, reals stay right
    base = tmp_path / "predictions" / "m" / "presocial"
    files = [_part(base / "presocial.parquet", src, labels, clean, "presocial"),
             _part(base / "telegram.parquet", src[::-1][:150][::-1], labels[50:], shared[50:], "telegram")]
    val = _part(tmp_path / "models" / "m" / "presocial" / "validation.parquet", src[:80], labels[:80],
                clean[:80] * 0.7, "presocial")
    metrics = {("m", "presocial", p): {**compute_metrics(pd.read_parquet(f), n_boot=50), "threshold": 0.5}
               for p, f in (("presocial", files[0]), ("telegram", files[1]))}
    rows = {r["test_set"]: r for r in calibration_rows(metrics, files, [val])}
    tel = rows["telegram"]
    t = tel["validation_threshold"]
    assert t == pytest.approx(C.best_threshold(clean[:80] * 0.7, labels[:80]))
    assert tel["chosen"] == C.rates(shared[50:], labels[50:], t)
    assert tel["fixed"] == C.rates(shared[50:], labels[50:], 0.5)
    assert tel["chosen"]["fake_recall"] > tel["fixed"]["fake_recall"]  # the carried threshold recovers fakes
    mc = tel["mcnemar"]
    lost = int(((shared[50:] < 0.5) & (labels[50:] == 1)).sum())
    assert mc == {"n": 150, "right_then_wrong": lost, "wrong_then_right": 0, "p_value": mc["p_value"]}
    assert mc["p_value"] < 1e-6 and "mcnemar" not in rows["presocial"]
    written = write_calibration(metrics, files, [val], tmp_path / "tables", tmp_path / "figures")
    assert [p.name for p in written] == ["calibration.md", "calibration.csv", "reliability.png"]
    csv = pd.read_csv(tmp_path / "tables" / "calibration.csv")
    assert csv.loc[csv.test_set == "telegram", "right_then_wrong"].item() == lost
    assert (tmp_path / "figures" / "reliability.png").stat().st_size > 5000


def test_mcnemar_refuses_repeated_sources_and_runs_at_the_chosen_threshold_too(tmp_path):
    rng = np.random.default_rng(13)
    src = np.array([f"s{i}" for i in range(60)])
    labels = rng.integers(0, 2, 60)
    probs = np.where(labels == 1, rng.uniform(0.55, 1, 60), rng.uniform(0, 0.45, 60))
    base = tmp_path / "predictions" / "m" / "presocial"
    files = [_part(base / "presocial.parquet", src, labels, probs, "presocial"),
             _part(base / "telegram.parquet", src, labels, probs * 0.8, "telegram")]
    val = _part(tmp_path / "models" / "m" / "presocial" / "validation.parquet", src, labels, probs * 0.8, "presocial")
    metrics = {("m", "presocial", p): {**compute_metrics(pd.read_parquet(f), n_boot=20), "threshold": 0.5}
               for p, f in (("presocial", files[0]), ("telegram", files[1]))}
    tel = {r["test_set"]: r for r in calibration_rows(metrics, files, [val])}["telegram"]
    chosen = tel["validation_threshold"]
    after = (probs * 0.8 >= chosen).astype(int) == labels
    assert tel["mcnemar_chosen"] == C.mcnemar((probs >= chosen).astype(int) == labels, after)
    dup = src.copy()
    dup[1] = dup[0]
    files[1] = _part(base / "telegram.parquet", dup, labels, probs * 0.8, "telegram")
    from deepfake_xai.report.tables import ReportInputError
    with pytest.raises(ReportInputError, match="after part has 1 repeated source_id"):
        calibration_rows(metrics, files, [val])
