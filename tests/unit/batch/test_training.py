"""Threshold tuning of ``train_classifier``: out-of-fold, on training rows only."""

from __future__ import annotations

import numpy as np
import pytest

from batch.features import TaskData
from batch.metrics import best_f1_threshold
from batch.training import oof_threshold, stratified_folds, train_classifier
from scratch_models.linear import LogisticRegression


def test_stratified_folds_balance_classes_and_are_seeded():
    y = np.r_[np.zeros(103, dtype=int), np.ones(27, dtype=int)]
    fold = stratified_folds(y, 5, 1)
    np.testing.assert_array_equal(fold, stratified_folds(y, 5, 1))
    assert not np.array_equal(fold, stratified_folds(y, 5, 2))


class _Recorder(LogisticRegression):
    """Logistic regression that remembers every matrix it was fitted on or scored."""

    seen: list[np.ndarray] = []

    def fit(self, X, y):
        _Recorder.seen.append(np.asarray(X))
        return super().fit(X, y)

    def predict_proba(self, X):
        _Recorder.seen.append(np.asarray(X))
        return super().predict_proba(X)


def test_threshold_is_out_of_fold_and_never_sees_the_holdout():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + rng.logistic(size=400) > 1.0).astype(int)
    X_test = rng.normal(size=(100, 3)) + 100.0  # recognisable rows
    y_test = (X_test[:, 0] > 100.0).astype(int)
    _Recorder.seen = []
    th = oof_threshold(_Recorder, X, y, n_folds=5, seed=3)
    assert len(_Recorder.seen) == 10  # 5 fits, 5 scorings of the held-out fold
    scored = np.vstack(_Recorder.seen[1::2])
    assert scored.shape == X.shape  # every training row scored exactly once
    # Same threshold as tuning directly on the pooled out-of-fold probabilities.
    fold = stratified_folds(y, 5, 3)
    oof = np.empty(400)
    for k in range(5):
        oof[fold == k] = LogisticRegression().fit(X[fold != k], y[fold != k]).predict_proba(X[fold == k])[:, 1]
    assert th == best_f1_threshold(y, oof)[0]

    _Recorder.seen = []
    data = TaskData(None, X, X_test, y, y_test, np.arange(400), np.arange(100))
    trained = train_classifier("recorder", _Recorder, data)
    holdout_uses = [m for m in _Recorder.seen if m.shape == X_test.shape and np.array_equal(m, X_test)]
    assert len(holdout_uses) == 1  # only the final hold-out metrics
    assert trained.threshold == oof_threshold(LogisticRegression, X, y, seed=43)


def _blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + rng.logistic(size=n) > 1.0).astype(int)
    return X, y


def test_stratified_sample_keeps_class_shares_and_is_seeded():
    from batch.training import stratified_sample

    _, y = _blobs(10_000)
    idx = stratified_sample(y, 1000, seed=5)
    assert idx.shape == (1000,) and np.all(np.diff(idx) > 0)
    assert abs(y[idx].mean() - y.mean()) < 1e-3
    assert np.array_equal(idx, stratified_sample(y, 1000, seed=5))
    assert not np.array_equal(idx, stratified_sample(y, 1000, seed=6))
    assert np.array_equal(stratified_sample(y, 20_000, seed=5), np.arange(10_000))


def test_small_plan_is_out_of_fold_and_large_plan_holds_out_a_validation_split():
    from batch.training import VALIDATION_SHARE, plan_fit

    X, y = _blobs(2000)
    data = TaskData(None, X, X[:10], y, y[:10], np.arange(2000), np.arange(10))
    small = plan_fit(data, oof_max_rows=2000, sample_caps={"svm": 500})
    assert small.threshold_method == "oof_5fold" and small.X_val is None
    assert small.rows_for("logistic_regression")[0] is X
    assert small.rows_for("svm")[0].shape == (500, 3)
    assert small.params_for("svm") == {"fit_rows": 500, "threshold_method": "oof_5fold"}

    large = plan_fit(data, oof_max_rows=1999, sample_caps={"svm": 500})
    assert large.threshold_method == "validation_split"
    n_val = large.y_val.shape[0]
    assert n_val == int(round(VALIDATION_SHARE * (y == 1).sum())) + int(round(VALIDATION_SHARE * (y == 0).sum()))
    assert large.y_fit.shape[0] + n_val == 2000
    assert abs(large.y_val.mean() - y.mean()) < 0.01
    # Validation rows are never fitted: no row of X_val is in X_fit.
    fit_rows = {tuple(r) for r in large.X_fit}
    assert not any(tuple(r) in fit_rows for r in large.X_val)
    assert large.params_for("logistic_regression") == {
        "fit_rows": 2000 - n_val,
        "threshold_method": "validation_split",
        "validation_rows": n_val,
    }
    with pytest.raises(ValueError, match="expected >= 1"):
        plan_fit(data, oof_max_rows=0)


def test_large_plan_fits_once_and_tunes_on_validation_rows():
    from batch.training import plan_fit

    X, y = _blobs(3000, seed=1)
    X_test, y_test = X[:200] + 100.0, y[:200]
    data = TaskData(None, X, X_test, y, y_test, np.arange(3000), np.arange(200))
    plan = plan_fit(data, oof_max_rows=1000)
    _Recorder.seen = []
    trained = train_classifier("recorder", _Recorder, data, plan=plan)
    fits = [m for m in _Recorder.seen if m.shape == plan.X_fit.shape]
    assert len(fits) == 1 and np.array_equal(fits[0], plan.X_fit)  # one fit, on the fit rows only
    expected_model = LogisticRegression().fit(plan.X_fit, plan.y_fit)
    expected, _ = best_f1_threshold(plan.y_val, expected_model.predict_proba(plan.X_val)[:, 1])
    assert trained.threshold == expected
    assert trained.params["threshold_method"] == "validation_split"
    assert trained.params["fit_rows"] == plan.y_fit.shape[0]
    assert trained.holdout_pred.shape == (200,)
    assert trained.metrics["tune_s"] >= 0 and trained.metrics["eval_s"] >= 0


def test_predict_in_chunks_equals_one_call():
    from batch.training import predict_in_chunks

    X, y = _blobs(1000)
    model = LogisticRegression().fit(X, y)
    whole = model.predict_proba(X)[:, 1]
    chunked = predict_in_chunks(lambda x: model.predict_proba(x)[:, 1], X, chunk_rows=77)
    assert np.array_equal(whole, chunked)


def test_stratified_sample_rejects_a_continuous_target():
    from batch.training import stratified_sample

    sales = np.random.default_rng(0).lognormal(size=5000)
    with pytest.raises(ValueError, match="expected class labels.*5000 distinct values"):
        stratified_sample(sales, 500, seed=1)


def test_regression_plan_samples_on_the_churn_label_and_reports_the_rows_it_fitted():
    from batch.training import FitPlan, train_regressor
    from scratch_models.regression import LinearRegression

    X, churn = _blobs(4000, seed=2)
    sales = 100.0 + 30.0 * X[:, 1] + np.random.default_rng(3).normal(size=4000)  # continuous: 4000 values
    X_test, sales_test = X[:300], sales[:300]
    data = TaskData(None, X, X_test, sales, sales_test, np.arange(4000), np.arange(300))
    plan = FitPlan(X, sales, sample_caps={"gradient_boosting_regressor": 1000}, strata=churn)
    X_fit, y_fit = plan.rows_for("gradient_boosting_regressor")
    assert X_fit.shape == (1000, 3) and y_fit.shape == (1000,)
    idx = plan._sample_index("gradient_boosting_regressor")
    assert abs(churn[idx].mean() - churn.mean()) < 1e-3  # churn shares kept
    np.testing.assert_array_equal(y_fit, sales[idx])
    trained = train_regressor("gradient_boosting_regressor", LinearRegression, data, plan=plan)
    assert trained.params["fit_rows"] == 1000
    assert trained.holdout_pred.shape == (300,)  # the whole hold-out is scored
    assert trained.metrics["r2"] > 0.99
    # Without strata a continuous target cannot be sampled.
    with pytest.raises(ValueError, match="expected class labels"):
        FitPlan(X, sales, sample_caps={"m": 1000}).rows_for("m")
    with pytest.raises(ValueError, match="expected 4000 labels"):
        FitPlan(X, sales, sample_caps={"m": 1000}, strata=churn[:10]).rows_for("m")


def test_large_plan_samples_stratified_on_given_labels_from_the_fit_rows_only():
    from batch.training import plan_fit

    X, churn = _blobs(3000, seed=4)
    sales = X[:, 0] * 10.0 + 50.0
    data = TaskData(None, X, X[:10], sales, sales[:10], np.arange(3000), np.arange(10))
    plan = plan_fit(data, oof_max_rows=1000, sample_caps={"gradient_boosting_regressor": 800}, stratify=churn)
    assert plan.strata.shape == plan.y_fit.shape
    X_fit, _ = plan.rows_for("gradient_boosting_regressor")
    assert X_fit.shape == (800, 3)
    val_rows = {tuple(r) for r in plan.X_val}
    assert not any(tuple(r) in val_rows for r in X_fit)
