"""GradientBoostingClassifier / GradientBoostingRegressor: contract, XGBoost maths,
early stopping, path contributions and quality against xgboost on the Telco protocol."""

from __future__ import annotations

import numpy as np
import pytest

from batch.features import classification_data, regression_data, stratified_split
from batch.ingest import read_source_csv
from batch.metrics import best_f1_threshold, classification_metrics, regression_metrics, roc_auc
from schemas import TELCO
from scratch_models import NotFittedError
from scratch_models.boosting import GradientBoostingClassifier, GradientBoostingRegressor
from scratch_models.registry import load_model

#: F1 floor at a threshold tuned on training rows only. The issue quotes 0.630 for the
#: xgboost reference, but that is the reference's F1 at the hold-out-optimal threshold
#: (measured 0.6303); at a training-tuned threshold the same reference scores 0.6205
#: and this model 0.626 (seed 0; 0.624-0.634 over seeds). Both readings are asserted.
F1_FLOOR = 0.620
BEST_F1_FLOOR = 0.630


@pytest.fixture(scope="module")
def frame(telco_csv):
    return read_source_csv(telco_csv, TELCO)


def synthetic(n: int = 800, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=(n, d - 2)), rng.integers(0, 2, size=(n, 2)).astype(float)])
    signal = X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + X[:, -1]
    return X, (signal + rng.logistic(scale=0.3, size=n) > 0.5).astype(np.int64), 10 * signal


def test_classifier_contract():
    X, y, _ = synthetic()
    X0, y0 = X.copy(), y.copy()
    model = GradientBoostingClassifier(n_estimators=50, learning_rate=0.2, random_state=0)
    assert model.fit(X, y) is model
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], 2) and proba.dtype == np.float64
    assert proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.n_estimators_ == 50 and model.trees_.n_trees == 50
    assert model.decision_function(X).shape == (X.shape[0],)
    assert np.mean(model.predict(X) == y) > 0.85
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_single_tree_is_the_newton_step():
    """One depth-1 tree with lr=1, lambda=0: leaf weights are -G/H of each side."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 1))
    y = (X[:, 0] > 0.3).astype(float)
    m = GradientBoostingClassifier(
        n_estimators=1,
        learning_rate=1.0,
        max_depth=1,
        reg_lambda=0.0,
        min_child_weight=0.0,
        subsample=1.0,
        colsample_bytree=1.0,
    ).fit(X, y)
    p0 = y.mean()
    margin = m.decision_function(X)
    cut = m.trees_.threshold[0]  # a bin edge next to 0.3
    assert abs(cut - 0.3) < 0.05
    for side in (X[:, 0] <= cut, X[:, 0] > cut):
        g = p0 - y[side]
        h = p0 * (1 - p0)
        expected = np.log(p0 / (1 - p0)) - g.sum() / (h * side.sum())
        np.testing.assert_allclose(margin[side], expected, rtol=1e-9)


def test_regressor_contract_and_base_score():
    X, _, t = synthetic()
    model = GradientBoostingRegressor(n_estimators=60, max_depth=3, learning_rate=0.3, random_state=0)
    assert model.fit(X, t) is model
    pred = model.predict(X)
    assert pred.shape == (X.shape[0],) and pred.dtype == np.float64
    assert model.base_margin_ == pytest.approx(t.mean(), abs=1e-9)
    assert np.corrcoef(pred, t)[0, 1] > 0.95
    shifted = GradientBoostingRegressor(n_estimators=60, max_depth=3, base_score=100.0, random_state=0).fit(X, t)
    assert shifted.base_margin_ == 100.0


def test_gamma_and_min_child_weight_limit_growth():
    X, y, _ = synthetic()
    free = GradientBoostingClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)
    strict = GradientBoostingClassifier(n_estimators=5, max_depth=4, gamma=5.0, random_state=0).fit(X, y)
    heavy = GradientBoostingClassifier(n_estimators=5, max_depth=4, min_child_weight=60.0, random_state=0).fit(X, y)
    n_free = free.trees_.feature.shape[0]
    assert strict.trees_.feature.shape[0] < n_free
    assert heavy.trees_.feature.shape[0] < n_free


def test_seeded_reproducibility():
    X, y, t = synthetic()
    kw = dict(n_estimators=30, subsample=0.7, colsample_bytree=0.6)
    a = GradientBoostingClassifier(random_state=5, **kw).fit(X, y).predict_proba(X)
    b = GradientBoostingClassifier(random_state=5, **kw).fit(X, y).predict_proba(X)
    c = GradientBoostingClassifier(random_state=6, **kw).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    r1 = GradientBoostingRegressor(n_estimators=20, subsample=0.5, random_state=5).fit(X, t).predict(X)
    r2 = GradientBoostingRegressor(n_estimators=20, subsample=0.5, random_state=5).fit(X, t).predict(X)
    np.testing.assert_array_equal(r1, r2)


def test_early_stopping_keeps_best_round():
    X, y, _ = synthetic(1500)
    model = GradientBoostingClassifier(
        n_estimators=2000, learning_rate=0.3, max_depth=4, n_iter_no_change=10, random_state=0
    ).fit(X, y)
    assert model.n_estimators_ < 2000
    losses = model.validation_loss_
    assert model.n_estimators_ == int(np.argmin(losses)) + 1
    assert len(losses) == model.n_estimators_ + 10


def test_feature_contributions_add_up():
    X, y, t = synthetic()
    for model in (
        GradientBoostingClassifier(n_estimators=40, random_state=0).fit(X, y),
        GradientBoostingRegressor(n_estimators=40, max_depth=6, random_state=0).fit(X, t),  # deep path
    ):
        contrib = model.feature_contributions(X)
        assert contrib.shape == X.shape
        np.testing.assert_allclose(contrib.sum(axis=1) + model.expected_value_, model.decision_function(X), atol=1e-9)
    # The interaction features carry the signal, the noise features little.
    clf = GradientBoostingClassifier(n_estimators=40, random_state=0).fit(X, y)
    share = np.abs(clf.feature_contributions(X)).mean(axis=0)
    assert share[[0, 1, 2, 7]].min() > share[[3, 4, 5]].max()


@pytest.mark.parametrize("max_depth", [1, 2, 3, 4, 6])
def test_contributions_by_leaf_look_up_equal_the_level_walk(max_depth):
    # The complete-tree form looks each row's contributions up by its leaf indices, per feature
    # (pairs of trees up to depth 4) or per path level: the walk that steps every (tree, row)
    # pair a level at a time adds the same terms, the path form in the very same order.
    X, y, t = synthetic()
    for model in (
        GradientBoostingClassifier(n_estimators=30, max_depth=max_depth, min_child_weight=40.0, random_state=0).fit(
            X, y
        ),
        GradientBoostingRegressor(n_estimators=20, max_depth=max_depth, random_state=0).fit(X, t),
    ):
        trees = model.trees_
        assert trees._complete is not None
        by_feature = trees._complete["by_feature"]
        for n in (0, 1, 9, X.shape[0]):
            contrib, bias = trees.contributions(X[:n])
            walked, walked_bias = trees._contributions_by_level(X[:n])
            np.testing.assert_allclose(contrib, walked, rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(bias, walked_bias)
            trees._complete["by_feature"] = None  # the path form
            try:
                np.testing.assert_array_equal(trees.contributions(X[:n])[0], walked)
            finally:
                trees._complete["by_feature"] = by_feature


def test_contributions_by_feature_pair_trees_and_skip_features_no_tree_splits_on():
    X, y, _ = synthetic()
    model = GradientBoostingClassifier(n_estimators=25, max_depth=3, colsample_bytree=0.5, random_state=0).fit(X, y)
    by_feature = model.trees_._complete["by_feature"]
    assert by_feature is not None and by_feature["shift"] == 3  # depth 3: pairs of trees
    assert len(by_feature["first"]) < 3 * 25  # fewer look-ups per row than path steps
    unused = sorted(set(range(X.shape[1])) - set(by_feature["features"].tolist()))
    contrib = model.feature_contributions(X)
    assert not contrib[:, unused].any()
    np.testing.assert_allclose(
        contrib.sum(axis=1) + model.expected_value_, model.decision_function(X), rtol=1e-12, atol=1e-12
    )


def test_leaves_found_once_serve_probabilities_and_contributions_of_some_rows():
    X, y, t = synthetic()
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
    leaves = model.leaves(X)
    assert leaves.shape == (30, X.shape[0]) and leaves.dtype == np.uint8
    np.testing.assert_array_equal(model.predict_proba(X, leaves=leaves), model.predict_proba(X))
    rows = np.flatnonzero(model.predict_proba(X)[:, 1] > 0.6)
    np.testing.assert_array_equal(
        model.feature_contributions(X[rows], leaves=leaves[:, rows]), model.feature_contributions(X[rows])
    )
    with pytest.raises(ValueError, match="leaves: expected shape"):
        model.feature_contributions(X[rows], leaves=leaves)
    deep = GradientBoostingRegressor(n_estimators=3, max_depth=8, min_child_weight=1.0, random_state=0).fit(X, t)
    assert deep.trees_._depth > 6 and deep.leaves(X) is None


def test_save_load_round_trip(tmp_path):
    X, y, t = synthetic()
    for model in (
        GradientBoostingClassifier(n_estimators=25, random_state=0).fit(X, y),
        GradientBoostingRegressor(n_estimators=25, random_state=0).fit(X, t),
    ):
        loaded = load_model(model.save(tmp_path / type(model).__name__))
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
        np.testing.assert_array_equal(loaded.feature_contributions(X), model.feature_contributions(X))


def test_errors():
    X, y, t = synthetic()
    with pytest.raises(NotFittedError):
        GradientBoostingClassifier().predict_proba(X)
    with pytest.raises(NotFittedError):
        GradientBoostingRegressor().predict(X)
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError):
        GradientBoostingClassifier(n_estimators=3).fit(bad, y)
    model = GradientBoostingClassifier(n_estimators=3).fit(X, y)
    with pytest.raises(ValueError):
        model.predict_proba(bad)
    with pytest.raises(ValueError):
        model.predict_proba(X[:, :3])
    with pytest.raises(ValueError):
        GradientBoostingClassifier(n_estimators=3).fit(X, y % 3 + (X[:, 0] > 1))  # three classes
    for params in (
        {"n_estimators": 0},
        {"learning_rate": 0.0},
        {"max_depth": 0},
        {"subsample": 0.0},
        {"colsample_bytree": 1.5},
        {"reg_lambda": -1.0},
        {"base_score": 1.0},
        {"n_iter_no_change": 5, "validation_fraction": 1.0},
    ):
        with pytest.raises(ValueError):
            GradientBoostingClassifier(**params).fit(X, y)


def test_threads_change_nothing():
    """n_jobs shares each tree's histogram work between threads: the same trees either way."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(12_000, 30))
    y = (X[:, 0] * X[:, 1] + X[:, 2] + rng.logistic(scale=0.5, size=12_000) > 0).astype(int)
    a = GradientBoostingClassifier(n_estimators=15, subsample=0.7, random_state=0).fit(X, y)
    b = GradientBoostingClassifier(n_estimators=15, subsample=0.7, random_state=0, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(a.trees_.value, b.trees_.value)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    with pytest.raises(ValueError, match="n_jobs"):
        GradientBoostingClassifier(n_jobs=0).fit(X, y)


def test_classifier_quality_against_xgboost_on_telco(frame):
    """Hold-out AUC, and F1 at a threshold tuned on a validation split of the training rows."""
    from xgboost import XGBClassifier

    d = classification_data(frame, TELCO)
    tr, va = stratified_split(d.y_train, 0.2, seed=0)

    def evaluate(make):
        tuned = make().fit(d.X_train[tr], d.y_train[tr])
        threshold, _ = best_f1_threshold(d.y_train[va], tuned.predict_proba(d.X_train[va])[:, 1])
        p = make().fit(d.X_train, d.y_train).predict_proba(d.X_test)[:, 1]
        f1_best = best_f1_threshold(d.y_test, p)[1]  # hold-out-optimal: reported, never used to tune
        return roc_auc(d.y_test, p), classification_metrics(d.y_test, p, threshold)["f1"], f1_best

    auc, f1, f1_best = evaluate(lambda: GradientBoostingClassifier(random_state=0))
    auc_ref, f1_ref, f1_best_ref = evaluate(lambda: XGBClassifier(n_estimators=300, max_depth=3, learning_rate=0.05))
    assert auc >= 0.846
    assert auc >= auc_ref - 0.01
    assert f1 >= F1_FLOOR
    assert f1 >= f1_ref - 0.01
    assert f1_best >= BEST_F1_FLOOR
    assert f1_best >= f1_best_ref - 0.01


def test_regressor_quality_on_total_charges(frame):
    from xgboost import XGBRegressor

    r = regression_data(frame, TELCO)
    ours = GradientBoostingRegressor(random_state=0).fit(r.X_train, r.y_train)
    ref = XGBRegressor(n_estimators=300, max_depth=6, learning_rate=0.1).fit(r.X_train, r.y_train)
    r2 = regression_metrics(r.y_test, ours.predict(r.X_test))["r2"]
    r2_ref = regression_metrics(r.y_test, ref.predict(r.X_test))["r2"]
    assert r2 >= 0.998
    assert r2 >= r2_ref - 0.01


def test_zoo_hyperparameters_are_the_cross_validated_winner():
    """batch/zoo.py's booster is the best row of the committed `churn bench gbm-cv` output
    (out-of-fold tuned F1 on Telco's training part; the hold-out is never used to choose)."""
    import json
    from pathlib import Path

    from batch import zoo

    rows = json.loads((Path(__file__).parent / "gbm_cv_telco.json").read_text())
    best = max(rows, key=lambda r: r["cv_f1_tuned"])
    params = zoo.classifiers({"gradient_boosting"})["gradient_boosting"]().get_params()
    for key in ("max_depth", "min_child_weight", "learning_rate", "n_estimators", "colsample_bytree"):
        assert params[key] == best[key], key
    assert params["subsample"] == 0.8  # the value every candidate was cross-validated with
