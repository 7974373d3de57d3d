"""Threshold tuning of ``train_classifier``: out-of-fold, on training rows only."""

from __future__ import annotations

import numpy as np

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
