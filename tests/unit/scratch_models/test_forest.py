"""RandomForestClassifier / RandomForestRegressor: contract, OOB estimates, path
contributions and quality against scikit-learn on the Telco protocol."""

from __future__ import annotations

import numpy as np
import pytest

from batch.features import classification_data
from batch.ingest import read_source_csv
from batch.metrics import roc_auc
from schemas import TELCO
from scratch_models import NotFittedError
from scratch_models.forest import RandomForestClassifier, RandomForestRegressor
from scratch_models.registry import load_model


@pytest.fixture(scope="module")
def telco(telco_csv):
    return classification_data(read_source_csv(telco_csv, TELCO), TELCO)


def synthetic(n: int = 600, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=(n, d - 2)), rng.integers(0, 2, size=(n, 2)).astype(float)])
    signal = X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + X[:, -1]
    return X, (signal + rng.logistic(scale=0.3, size=n) > 0.5).astype(np.int64), 10 * signal


def test_classifier_contract():
    X, y, _ = synthetic()
    X0, y0 = X.copy(), y.copy()
    model = RandomForestClassifier(n_estimators=20, random_state=0)
    assert model.fit(X, y) is model
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], 2) and proba.dtype == np.float64
    assert proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X).tolist()) <= {0, 1}
    assert model.trees_.n_trees == 20
    assert model.apply(X).shape == (X.shape[0], 20)
    assert model.feature_importances_.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_seeded_reproducibility():
    X, y, t = synthetic()
    a = RandomForestClassifier(n_estimators=10, random_state=1).fit(X, y).predict_proba(X)
    b = RandomForestClassifier(n_estimators=10, random_state=1).fit(X, y).predict_proba(X)
    c = RandomForestClassifier(n_estimators=10, random_state=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    r1 = RandomForestRegressor(n_estimators=5, random_state=1).fit(X, t).predict(X)
    r2 = RandomForestRegressor(n_estimators=5, random_state=1).fit(X, t).predict(X)
    np.testing.assert_array_equal(r1, r2)


def test_threads_grow_the_same_forest():
    """Every tree has its own seeded generator: n_jobs changes the speed, never the forest."""
    X, y, t = synthetic(n=3000)
    one = RandomForestClassifier(n_estimators=8, max_depth=6, max_samples=0.5, random_state=3, n_jobs=1).fit(X, y)
    two = RandomForestClassifier(n_estimators=8, max_depth=6, max_samples=0.5, random_state=3, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(one.trees_.threshold, two.trees_.threshold)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    r1 = RandomForestRegressor(n_estimators=4, max_depth=5, random_state=3).fit(X, t).predict(X)
    r2 = RandomForestRegressor(n_estimators=4, max_depth=5, random_state=3, n_jobs=-1).fit(X, t).predict(X)
    np.testing.assert_array_equal(r1, r2)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_jobs"):
            RandomForestClassifier(n_estimators=2, n_jobs=bad).fit(X, y)


def test_label_histograms_equal_statistic_histograms():
    """The one-bincount class-label path sums exactly what the per-statistic path sums."""
    from scratch_models import _histogram as H

    X, y, _ = synthetic(n=5000)
    rng = np.random.default_rng(0)
    mapper = H.BinMapper(255, rng).fit(X)
    codes = mapper.transform(X)
    w = np.bincount(rng.integers(0, len(y), size=len(y)), minlength=len(y)).astype(float)
    stats = np.eye(2)[y] * w[:, None]
    rows = np.flatnonzero(w)
    kw = dict(max_depth=8, min_samples_leaf=3, max_features=3)
    a = H.grow_tree(codes, mapper.n_bins, stats, rows, H.gini_criterion(), rng=np.random.default_rng(1), **kw)
    b = H.grow_tree(
        codes, mapper.n_bins, stats, rows, H.gini_criterion(), rng=np.random.default_rng(1), labels=y, weights=w, **kw
    )
    for field in ("feature", "bin", "left", "value", "gain"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_oob_matches_sklearn_estimate():
    from sklearn.ensemble import RandomForestClassifier as SkForest

    X, y, _ = synthetic(1500)
    ours = RandomForestClassifier(n_estimators=60, oob_score=True, random_state=0).fit(X, y)
    ref = SkForest(n_estimators=60, oob_score=True, random_state=0).fit(X, y)
    assert ours.oob_decision_function_.shape == (1500, 2)
    seen = ~np.isnan(ours.oob_decision_function_[:, 0])
    assert seen.mean() > 0.99
    np.testing.assert_allclose(ours.oob_decision_function_[seen].sum(axis=1), 1.0)
    assert abs(ours.oob_score_ - ref.oob_score_) < 0.03
    with pytest.raises(ValueError):
        RandomForestClassifier(bootstrap=False, oob_score=True).fit(X, y)


def test_regressor_oob_and_quality():
    from sklearn.ensemble import RandomForestRegressor as SkForest

    X, _, t = synthetic(2000)
    Xte, _, tte = synthetic(1000, seed=1)
    ours = RandomForestRegressor(n_estimators=30, oob_score=True, random_state=0).fit(X, t)
    ref = SkForest(n_estimators=30, random_state=0).fit(X, t)

    def r2(p):
        return 1 - np.sum((tte - p) ** 2) / np.sum((tte - tte.mean()) ** 2)

    assert r2(ours.predict(Xte)) >= r2(ref.predict(Xte)) - 0.02
    assert 0.5 < ours.oob_score_ <= 1.0
    assert ours.oob_prediction_.shape == (2000,)


def test_feature_contributions_sum_to_probability():
    X, y, _ = synthetic()
    model = RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0).fit(X, y)
    contrib = model.feature_contributions(X)
    assert contrib.shape == X.shape
    bias = model.predict_proba(X)[:, 1] - contrib.sum(axis=1)
    # The remainder is the same for every row: the mean root frequency.
    np.testing.assert_allclose(bias, bias[0], atol=1e-10)


@pytest.mark.parametrize("max_depth", [3, 6, None])
def test_contributions_by_leaf_look_up_equal_the_level_walk(max_depth):
    X, y, _ = synthetic()
    trees = RandomForestClassifier(n_estimators=10, max_depth=max_depth, random_state=0).fit(X, y).trees_
    assert (trees._complete is not None) == (max_depth is not None)  # unbounded trees are deeper than 6
    np.testing.assert_allclose(
        trees.contributions(X, output=1)[0], trees._contributions_by_level(X, output=1)[0], rtol=1e-12, atol=1e-12
    )


def test_without_bootstrap_and_max_samples():
    X, y, _ = synthetic()
    a = RandomForestClassifier(n_estimators=5, bootstrap=False, max_features=None, random_state=0).fit(X, y)
    # Without bootstrap or feature sampling every tree is the same tree.
    leaves = a.trees_.value[a.apply(X).T]
    np.testing.assert_array_equal(leaves[0], leaves[-1])
    b = RandomForestClassifier(n_estimators=5, max_samples=0.3, random_state=0).fit(X, y)
    assert b.predict_proba(X).shape == (600, 2)
    with pytest.raises(ValueError):
        RandomForestClassifier(max_samples=1.5).fit(X, y)


def test_save_load_round_trip(tmp_path):
    X, y, t = synthetic()
    for model in (
        RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y),
        RandomForestRegressor(n_estimators=8, random_state=0).fit(X, t),
    ):
        loaded = load_model(model.save(tmp_path / type(model).__name__))
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        if model.task == "classifier":
            np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_errors():
    X, y, t = synthetic()
    with pytest.raises(NotFittedError):
        RandomForestClassifier().predict_proba(X)
    bad = X.copy()
    bad[5, 2] = np.inf
    with pytest.raises(ValueError):
        RandomForestClassifier(n_estimators=3).fit(bad, y)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    with pytest.raises(ValueError):
        model.predict_proba(bad)
    with pytest.raises(ValueError):
        model.predict_proba(np.hstack([X, X]))
    for params in ({"n_estimators": 0}, {"criterion": "squared_error"}, {"max_features": 0}, {"max_depth": -1}):
        with pytest.raises(ValueError):
            RandomForestClassifier(**params).fit(X, y)


def test_quality_against_sklearn_on_telco(telco):
    from sklearn.ensemble import RandomForestClassifier as SkForest

    ours = RandomForestClassifier(n_estimators=100, random_state=0).fit(telco.X_train, telco.y_train)
    ref = SkForest(n_estimators=100, random_state=0).fit(telco.X_train, telco.y_train)
    auc = roc_auc(telco.y_test, ours.predict_proba(telco.X_test)[:, 1])
    auc_ref = roc_auc(telco.y_test, ref.predict_proba(telco.X_test)[:, 1])
    assert auc >= 0.812
    assert auc >= auc_ref - 0.01
