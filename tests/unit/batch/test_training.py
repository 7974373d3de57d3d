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
    fold = stratified_folds(y, 5, seed=1)
    for k in range(5):
        assert abs((fold[y == 1] == k).sum() - 27 / 5) < 1
        assert abs((fold[y == 0] == k).sum() - 103 / 5) < 1
    np.testing.assert_array_equal(fold, stratified_folds(y, 5, seed=1))
    assert not np.array_equal(fold, stratified_folds(y, 5, seed=2))


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
    X_test = rng.normal(size=(100, 3)) + 100.0          # recognisable rows
    y_test = (X_test[:, 0] > 100.0).astype(int)
    _Recorder.seen = []
    th = oof_threshold(_Recorder, X, y, n_folds=5, seed=3)
    assert len(_Recorder.seen) == 10                     # 5 fits, 5 scorings of the held-out fold
    scored = np.vstack(_Recorder.seen[1::2])
    assert scored.shape == X.shape                       # every training row scored exactly once
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
    assert len(holdout_uses) == 1                        # only the final hold-out metrics
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
    assert large.params_for("logistic_regression") == {"fit_rows": 2000 - n_val,
                                                       "threshold_method": "validation_split",
                                                       "validation_rows": n_val}
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
    assert len(fits) == 1 and np.array_equal(fits[0], plan.X_fit)   # one fit, on the fit rows only
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
