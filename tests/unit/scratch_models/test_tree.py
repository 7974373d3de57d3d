"""DecisionTreeClassifier / DecisionTreeRegressor: estimator contract, histogram
internals and quality against scikit-learn on the Telco protocol."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from batch.features import classification_data
from batch.ingest import read_source_csv
from batch.metrics import roc_auc
from schemas import TELCO
from scratch_models import NotFittedError
from scratch_models._histogram import BinMapper
from scratch_models.registry import load_model
from scratch_models.tree import DecisionTreeClassifier, DecisionTreeRegressor


@pytest.fixture(scope="module")
def telco(telco_csv):
    return classification_data(read_source_csv(telco_csv, TELCO), TELCO)


def synthetic(n: int = 600, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=(n, d - 2)), rng.integers(0, 2, size=(n, 2)).astype(float)])
    signal = X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + X[:, -1]
    return X, (signal + rng.logistic(scale=0.3, size=n) > 0.5).astype(np.int64), 10 * signal


def test_scratch_models_never_import_reference_libraries():
    code = (
        "import sys, scratch_models.tree, scratch_models.forest, scratch_models.boosting;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'xgboost', 'scipy')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bin_mapper_codes_match_thresholds():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=5000), rng.integers(0, 3, size=5000).astype(float)])
    mapper = BinMapper(255).fit(X)
    codes = mapper.transform(X)
    assert codes.dtype == np.uint8
    assert mapper.n_bins.tolist() == [255, 3]
    # code <= b exactly when x <= edges[b]: the binned split is the real-valued split.
    for f in range(2):
        for b in (0, 1, mapper.n_bins[f] // 2):
            np.testing.assert_array_equal(codes[f] <= b, X[:, f] <= mapper.edges[f][b])


def test_classifier_contract():
    X, y, _ = synthetic()
    X0, y0 = X.copy(), y.copy()
    model = DecisionTreeClassifier(max_depth=4)
    assert model.fit(X, y) is model
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], 2) and proba.dtype == np.float64
    assert proba.min() >= 0 and proba.max() <= 1
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.predict(X).shape == (X.shape[0],)
    assert model.depth_ <= 4 and model.n_leaves_ <= 16
    assert model.apply(X).shape == (X.shape[0],)
    assert model.feature_importances_.shape == (X.shape[1],)
    assert model.feature_importances_.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_unlimited_tree_fits_separable_data_exactly():
    X, y, _ = synthetic(400)
    model = DecisionTreeClassifier().fit(X, y)
    assert np.mean(model.predict(X) == y) == 1.0


def test_min_samples_leaf_and_depth_respected():
    X, y, _ = synthetic(800)
    model = DecisionTreeClassifier(min_samples_leaf=40).fit(X, y)
    counts = np.bincount(model.apply(X))
    assert counts[counts > 0].min() >= 40
    stump = DecisionTreeClassifier(max_depth=1).fit(X, y)
    assert stump.n_leaves_ == 2


def test_min_impurity_decrease_prunes():
    X, y, _ = synthetic(800)
    full = DecisionTreeClassifier().fit(X, y)
    pruned = DecisionTreeClassifier(min_impurity_decrease=0.01).fit(X, y)
    assert pruned.n_leaves_ < full.n_leaves_ / 5


def test_multiclass_and_string_labels():
    X, y, _ = synthetic(600)
    labels = np.array(["a", "b", "c"])[y + (X[:, 0] > 1)]
    model = DecisionTreeClassifier(max_depth=6, criterion="entropy").fit(X, labels)
    assert model.classes_.tolist() == ["a", "b", "c"]
    proba = model.predict_proba(X)
    assert proba.shape == (600, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(model.predict(X) == labels) > 0.8


def test_sample_weight_zero_rows_are_ignored():
    X, y, _ = synthetic(600)
    w = np.ones(600)
    w[300:] = 0
    a = DecisionTreeClassifier(max_depth=5).fit(X, y, sample_weight=w).predict_proba(X)
    b = DecisionTreeClassifier(max_depth=5).fit(X[:300], y[:300]).predict_proba(X)
    # Same rows, but bins come from all 600 rows: compare on the learned partition's quality.
    assert np.mean(np.argmax(a[:300], 1) == y[:300]) == pytest.approx(
        np.mean(np.argmax(b[:300], 1) == y[:300]), abs=0.05
    )


def test_seeded_feature_sampling_reproducible():
    X, y, _ = synthetic(800, d=12)
    Xte, _, _ = synthetic(500, d=12, seed=1)

    def fit(seed):
        return DecisionTreeClassifier(max_depth=4, max_features="sqrt", random_state=seed).fit(X, y).predict_proba(Xte)

    a, b, c = fit(3), fit(3), fit(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_load_round_trip(tmp_path):
    X, y, t = synthetic()
    for model in (DecisionTreeClassifier(max_depth=6).fit(X, y), DecisionTreeRegressor(max_depth=6).fit(X, t)):
        loaded = load_model(model.save(tmp_path / type(model).__name__))
        assert type(loaded) is type(model)
        if model.task == "classifier":
            np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_errors():
    X, y, t = synthetic()
    with pytest.raises(NotFittedError):
        DecisionTreeClassifier().predict_proba(X)
    with pytest.raises(NotFittedError):
        DecisionTreeRegressor().predict(X)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        DecisionTreeClassifier().fit(bad, y)
    model = DecisionTreeClassifier(max_depth=3).fit(X, y)
    with pytest.raises(ValueError):
        model.predict_proba(bad)
    with pytest.raises(ValueError):
        model.predict_proba(X[:, :-1])
    with pytest.raises(ValueError):
        DecisionTreeClassifier().fit(X, np.zeros(len(y)))
    for params in (
        {"criterion": "mse"},
        {"max_depth": 0},
        {"min_samples_leaf": 0},
        {"max_features": "half"},
        {"max_bins": 256},
    ):
        with pytest.raises(ValueError):
            DecisionTreeClassifier(**params).fit(X, y)
    with pytest.raises(ValueError):
        DecisionTreeRegressor(criterion="gini").fit(X, t)


def test_regressor_matches_sklearn_on_synthetic():
    from sklearn.tree import DecisionTreeRegressor as SkTree

    X, _, t = synthetic(3000)
    Xte, _, tte = synthetic(2000, seed=1)
    ours = DecisionTreeRegressor(max_depth=6).fit(X, t).predict(Xte)
    ref = SkTree(max_depth=6, random_state=0).fit(X, t).predict(Xte)

    def r2(p):
        return 1 - np.sum((tte - p) ** 2) / np.sum((tte - tte.mean()) ** 2)

    assert r2(ours) >= r2(ref) - 0.02


def test_quality_against_sklearn_on_telco(telco):
    from sklearn.tree import DecisionTreeClassifier as SkTree

    ours = DecisionTreeClassifier(max_depth=5).fit(telco.X_train, telco.y_train)
    ref = SkTree(max_depth=5, random_state=0).fit(telco.X_train, telco.y_train)
    auc = roc_auc(telco.y_test, ours.predict_proba(telco.X_test)[:, 1])
    auc_ref = roc_auc(telco.y_test, ref.predict_proba(telco.X_test)[:, 1])
    assert auc >= 0.820
    assert auc >= auc_ref - 0.01


# --------------------------------------------------------------------------- vectorised ensemble prediction
def _reference_leaf_sums(trees, X):
    """Per-tree, per-row walk over the stored arrays: the plainest reading of ``TreeArrays``."""
    out = np.zeros((trees.value.shape[1], X.shape[0]))
    for t in range(trees.n_trees):
        base = int(trees.offsets[t])
        for i, x in enumerate(X):
            node = base
            while trees.feature[node] >= 0:
                child = trees.left[node] if x[trees.feature[node]] <= trees.threshold[node] else trees.right[node]
                node = base + int(child)
            out[:, i] += trees.value[node]
    return out


def _ensembles():
    from scratch_models.boosting import GradientBoostingClassifier, GradientBoostingRegressor
    from scratch_models.forest import RandomForestClassifier, RandomForestRegressor

    X, y, t = synthetic(900, d=10, seed=3)
    # Rounded columns make many nodes share a split (the split-table path of deep forests).
    X[:, 3:5] = np.round(X[:, 3:5], 1)
    return X, [
        (
            "gbm depth 3 (pairs)",
            GradientBoostingClassifier(n_estimators=41, learning_rate=0.3, random_state=0).fit(X, y),
        ),
        ("gbm depth 1", GradientBoostingClassifier(n_estimators=7, max_depth=1, random_state=0).fit(X, y)),
        ("gbm depth 6", GradientBoostingRegressor(n_estimators=20, max_depth=6, random_state=0).fit(X, t)),
        ("gbm depth 8", GradientBoostingRegressor(n_estimators=5, max_depth=8, random_state=0).fit(X, t)),
        ("forest deep", RandomForestClassifier(n_estimators=30, min_samples_leaf=2, random_state=0).fit(X, y)),
        (
            "forest deep shared splits",
            RandomForestClassifier(n_estimators=60, max_features=2, random_state=0).fit(X[:, 3:5], y),
        ),
        ("forest shallow", RandomForestRegressor(n_estimators=9, max_depth=4, random_state=0).fit(X, t)),
        ("tree", DecisionTreeClassifier(random_state=0).fit(X, y)),
    ]


def test_vectorised_leaf_sums_match_per_tree_walk(tmp_path):
    X, models = _ensembles()
    rng = np.random.default_rng(7)
    Xnew = np.vstack([X[:37], rng.normal(scale=2.0, size=(53, X.shape[1]))])
    Xnew[40:45, 3:5] = np.round(Xnew[40:45, 3:5], 1)
    paths = set()
    for name, model in models:
        Xm = Xnew[:, 3:5] if name == "forest deep shared splits" else Xnew
        Xm = np.ascontiguousarray(Xm)
        trees = model.trees_
        paths.add(
            "complete"
            if trees._complete is not None
            else "split table"
            if 2 * trees._split_thr.shape[0] <= trees.n_trees * trees._depth
            else "walk"
        )
        want = _reference_leaf_sums(trees, Xm)
        np.testing.assert_allclose(trees.leaf_sums(Xm), want, rtol=0, atol=1e-12, err_msg=name)
        for n in (1, 8, 9, 90):  # packed bytes: full, partial and single-row batches
            np.testing.assert_allclose(trees.leaf_sums(Xm[:n]), want[:, :n], rtol=0, atol=1e-12, err_msg=name)
        # Leaves from apply() are the leaves of the walk.
        leaves = trees.apply(Xm)
        np.testing.assert_array_equal(trees.feature[leaves], -1)
        np.testing.assert_allclose(trees.value[leaves].sum(axis=0).T, want, rtol=0, atol=1e-12, err_msg=name)
        # A saved artifact rebuilds the same traversal arrays and predicts bit-identically.
        model.save(tmp_path / "m.npz")
        loaded = load_model(tmp_path / "m.npz")
        out = model.predict_proba(Xm) if hasattr(model, "predict_proba") else model.predict(Xm)
        out2 = loaded.predict_proba(Xm) if hasattr(loaded, "predict_proba") else loaded.predict(Xm)
        np.testing.assert_array_equal(out, out2, err_msg=name)
    assert paths == {"complete", "split table", "walk"}


def test_split_table_rank_route_matches_float_comparisons():
    from scratch_models._histogram import TreeArrays

    X, models = _ensembles()
    trees = dict(models)["forest deep"].trees_
    many = TreeArrays(trees.feature, trees.threshold, trees.left, trees.right, trees.value, trees.offsets)
    assert many._split_thr.shape[0] > 32 * X.shape[1]  # rank route
    Xc = np.ascontiguousarray(X[:50])
    want = Xc.T[many._split_feat] > many._split_thr[:, None]
    np.testing.assert_array_equal(many._split_bits(Xc), want)
