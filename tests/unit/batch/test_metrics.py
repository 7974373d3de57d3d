"""Hold-out metrics against scikit-learn on random data with many ties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from batch.metrics import best_f1_threshold, classification_metrics, regression_metrics, roc_auc

SEEDS = [0, 1, 2, 3, 4]


def tied_scores(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores rounded to one decimal, so most scores are tied."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    score = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, size=n), 1), 0, 1)
    assert len(np.unique(score)) < n / 10
    return y, score


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_matches_sklearn_with_ties(seed):
    y, score = tied_scores(seed)
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_matches_sklearn_continuous_and_bool_labels(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.random(257) < 0.3
    score = rng.normal(size=257) + y
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


def test_roc_auc_edge_values():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5


@pytest.mark.parametrize("y", [np.zeros(10, dtype=int), np.ones(10, dtype=int)])
def test_single_class_raises(y):
    score = np.linspace(0, 1, 10)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(y, score)
    with pytest.raises(ValueError, match="both classes"):
        classification_metrics(y, score)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.55, 0.7])
def test_classification_metrics_match_sklearn(seed, threshold):
    y, proba = tied_scores(seed)
    got = classification_metrics(y, proba, threshold)
    pred = (proba >= threshold).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba), abs=1e-12)
    assert got["threshold"] == threshold
    assert set(got) == {"accuracy", "precision", "recall", "f1", "roc_auc", "threshold"}


def test_classification_metrics_threshold_is_inclusive():
    y = np.array([0, 1, 1, 0])
    proba = np.array([0.2, 0.5, 0.9, 0.49])
    got = classification_metrics(y, proba, 0.5)
    assert got["precision"] == 1.0 and got["recall"] == 1.0 and got["accuracy"] == 1.0


def test_classification_metrics_no_positive_predictions_is_zero_not_nan():
    y = np.array([0, 1, 1, 0])
    got = classification_metrics(y, np.array([0.1, 0.2, 0.3, 0.4]), 0.9)
    assert got["precision"] == 0.0 and got["recall"] == 0.0 and got["f1"] == 0.0
    assert got["accuracy"] == 0.5


def brute_force_best_f1(y: np.ndarray, proba: np.ndarray) -> float:
    """Max F1 over every candidate threshold, by the definition (one confusion matrix each)."""
    yb = y.astype(bool)
    best = 0.0
    for t in np.unique(proba):
        pred = proba >= t
        tp = np.sum(pred & yb)
        fp = np.sum(pred & ~yb)
        fn = np.sum(~pred & yb)
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return float(best)


@pytest.mark.parametrize("seed", SEEDS)
def test_best_f1_threshold_is_the_maximum_over_all_thresholds(seed):
    y, proba = tied_scores(seed, n=300)
    threshold, f1 = best_f1_threshold(y, proba)
    best = brute_force_best_f1(y, proba)
    assert f1 == pytest.approx(best, abs=1e-12)
    # The returned threshold really achieves the returned F1.
    assert skm.f1_score(y, (proba >= threshold).astype(int)) == pytest.approx(f1, abs=1e-12)
    assert threshold in set(np.unique(proba).tolist())


@pytest.mark.parametrize("seed", SEEDS)
def test_best_f1_threshold_continuous_scores(seed):
    rng = np.random.default_rng(50 + seed)
    y = (rng.random(200) < 0.25).astype(int)
    proba = 1 / (1 + np.exp(-(rng.normal(size=200) + 1.2 * y)))
    threshold, f1 = best_f1_threshold(y, proba)
    assert f1 == pytest.approx(brute_force_best_f1(y, proba), abs=1e-12)
    assert skm.f1_score(y, (proba >= threshold).astype(int)) == pytest.approx(f1, abs=1e-12)


def test_best_f1_threshold_perfect_separation():
    y = np.array([0, 0, 0, 1, 1])
    threshold, f1 = best_f1_threshold(y, np.array([0.1, 0.2, 0.3, 0.6, 0.9]))
    assert (threshold, f1) == (0.6, 1.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = np.round(rng.gamma(2.0, 500.0, size=300), 0)  # ties and some zeros
    y[:5] = 0.0
    pred = y + rng.normal(0, 200, size=300)
    got = regression_metrics(y, pred)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), abs=1e-12)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    nz = y != 0
    mape = skm.mean_absolute_percentage_error(y[nz], pred[nz]) * 100
    assert got["mape"] == pytest.approx(mape, rel=1e-12)


def test_regression_metrics_perfect_and_mean_predictions():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    perfect = regression_metrics(y, y)
    assert perfect == {"rmse": 0.0, "mae": 0.0, "r2": 1.0, "mape": 0.0}
    assert regression_metrics(y, np.full(4, y.mean()))["r2"] == pytest.approx(0.0, abs=1e-15)
