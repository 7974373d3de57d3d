"""The common check suite, run over every registered scratch model (river's ``check_estimator`` idea).

Parametrised over ``scratch_models.MODEL_CLASSES``, so a model registered by any
module is checked without editing this file; ``FAST_PARAMS`` only shrinks
hyperparameters to keep the suite quick on small synthetic data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from scratch_models import MODEL_CLASSES, NotFittedError
from scratch_models.persistence import ArtifactError
from scratch_models.registry import load_model

#: Small hyperparameters per class name; classes not listed use their defaults.
FAST_PARAMS: dict[str, dict] = {
    "Perceptron": {"max_iter": 3},
    "DecisionTreeClassifier": {"max_depth": 4},
    "DecisionTreeRegressor": {"max_depth": 4},
    "RandomForestClassifier": {"n_estimators": 5, "max_depth": 4},
    "RandomForestRegressor": {"n_estimators": 5, "max_depth": 4},
    "GradientBoostingClassifier": {"n_estimators": 10, "max_depth": 3, "learning_rate": 0.3},
    "GradientBoostingRegressor": {"n_estimators": 10, "max_depth": 3},
    "SVMClassifier": {"max_iter": 20},
    "KMeansClassifier": {"k_candidates": [2, 3, 4], "n_init": 2},
    "AgglomerativeClassifier": {"k_candidates": [2, 3, 4], "max_samples": 100},
    "MLPClassifier": {"hidden_layer_sizes": [8], "max_iter": 20},
    "PCA": {"n_components": 3},
    "PCAClassifier": {"n_components": 0.9},
    "SVMPCAClassifier": {"n_components": 0.9},
    "RandomForestPCAClassifier": {"n_components": 0.9, "n_estimators": 5, "max_depth": 4},
}

NAMES = sorted(MODEL_CLASSES)
CLASSIFIERS = [n for n in NAMES if MODEL_CLASSES[n].task == "classifier"]
SEEDED = [n for n in NAMES if "random_state" in MODEL_CLASSES[n]._param_names()]
N_SAMPLES, N_FEATURES = 240, 6


def make(name: str, **extra):
    cls = MODEL_CLASSES[name]
    params = dict(FAST_PARAMS.get(name, {}))
    if "random_state" in cls._param_names():
        params.setdefault("random_state", 0)
    params.update(extra)
    return cls(**params)


def data(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Continuous and 0/1 columns; a binary label or a continuous target by task."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=(N_SAMPLES, 3)), rng.integers(0, 2, size=(N_SAMPLES, 3)).astype(np.float64)])
    signal = 1.5 * X[:, 0] - X[:, 1] + X[:, 3] + 0.5 * X[:, 0] * X[:, 2]
    if MODEL_CLASSES[name].task == "regressor":
        return X, 10.0 * signal + rng.normal(scale=0.5, size=N_SAMPLES)
    return X, (signal + rng.logistic(scale=0.5, size=N_SAMPLES) > 0).astype(np.int64)


def outputs(model, X: np.ndarray) -> np.ndarray:
    if model.task == "classifier":
        return model.predict_proba(X)
    if model.task == "regressor":
        return model.predict(X)
    return model.transform(X)


def fitted(name: str, **extra):
    X, y = data(name)
    return make(name, **extra).fit(X, y), X, y


def test_registry_holds_the_zoo():
    expected = {
        "LogisticRegression",
        "SVMClassifier",
        "Perceptron",
        "KMeansClassifier",
        "AgglomerativeClassifier",
        "MLPClassifier",
        "NaiveBayesClassifier",
        "SVMPCAClassifier",
        "RandomForestPCAClassifier",
        "LinearRegression",
        "MultipleRegression",
        "PolynomialRegression",
        "PCA",
    }
    assert expected <= set(MODEL_CLASSES)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_sets_width(name):
    X, y = data(name)
    model = make(name)
    assert model.fit(X, y) is model
    assert model.n_features_in_ == N_FEATURES


@pytest.mark.parametrize("name", NAMES)
def test_init_stores_params_unchanged(name):
    model = make(name)
    params = model.get_params()
    assert set(params) == set(MODEL_CLASSES[name]._param_names())
    assert not [k for k in vars(model) if k.endswith("_")], "__init__ must not set learned state"
    clone = MODEL_CLASSES[name](**params)
    assert clone.get_params() == params
    assert clone.set_params(**params) is clone
    with pytest.raises(ValueError):
        clone.set_params(no_such_parameter=1)


@pytest.mark.parametrize("name", NAMES)
def test_not_fitted_raises(name, tmp_path):
    model = make(name)
    X, _ = data(name)
    method = {"classifier": "predict_proba", "regressor": "predict", "transformer": "transform"}[model.task]
    with pytest.raises(NotFittedError):
        getattr(model, method)(X)
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "m.npz")


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_and_dtypes(name):
    model, X, y = fitted(name)
    if model.task == "classifier":
        proba = model.predict_proba(X)
        assert proba.shape == (N_SAMPLES, 2) and proba.dtype == np.float64
        assert np.all(np.isfinite(proba)) and proba.min() >= 0.0 and proba.max() <= 1.0
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
        pred = model.predict(X)
        assert pred.shape == (N_SAMPLES,)
        assert set(np.unique(pred)) <= set(model.classes_.tolist())
        assert np.array_equal(model.classes_, [0, 1])
        # Learns something on an easy problem (training accuracy beats the majority class).
        assert np.mean(pred == y) > max(np.mean(y), 1 - np.mean(y))
    elif model.task == "regressor":
        pred = model.predict(X)
        assert pred.shape == (N_SAMPLES,) and pred.dtype == np.float64 and np.all(np.isfinite(pred))
        assert np.corrcoef(pred, y)[0, 1] > 0.5
    else:
        Z = model.transform(X)
        assert Z.shape[0] == N_SAMPLES and Z.dtype == np.float64 and np.all(np.isfinite(Z))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_keeps_arbitrary_labels(name):
    X, y = data(name)
    labels = np.where(y == 1, "churn", "stay")
    model = make(name).fit(X, labels)
    assert model.classes_.tolist() == ["churn", "stay"]
    assert set(model.predict(X).tolist()) <= {"churn", "stay"}


@pytest.mark.parametrize("name", NAMES)
def test_input_not_mutated(name):
    X, y = data(name)
    X0, y0 = X.copy(), y.copy()
    model = make(name).fit(X, y)
    outputs(model, X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_wrong_width_rejected(name):
    X, y = data(name)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError):
        make(name).fit(bad, y)
    model = make(name).fit(X, y)
    with pytest.raises(ValueError):
        outputs(model, bad)
    with pytest.raises(ValueError):
        outputs(model, X[:, :-1])
    with pytest.raises(ValueError):
        outputs(model, np.hstack([X, X[:, :1]]))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_single_class_rejected(name):
    X, _ = data(name)
    with pytest.raises(ValueError):
        make(name).fit(X, np.ones(N_SAMPLES, dtype=np.int64))


@pytest.mark.parametrize("name", SEEDED)
def test_seeded_reproducibility(name):
    X, y = data(name)
    a = outputs(make(name, random_state=7).fit(X, y), X)
    b = outputs(make(name, random_state=7).fit(X, y), X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    model, X, _ = fitted(name)
    path = model.save(tmp_path / name)
    assert path.suffix == ".npz"
    loaded = load_model(path)
    assert type(loaded) is type(model)
    # Params travel through JSON (tuples come back as lists).
    assert loaded.get_params() == json.loads(json.dumps(model.get_params()))
    np.testing.assert_array_equal(outputs(loaded, X), outputs(model, X))
    if model.task == "classifier":
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert type(model).load(path).get_params() == loaded.get_params()


@pytest.mark.parametrize("name", NAMES)
def test_artifact_never_pickles(name, tmp_path):
    model, _, _ = fitted(name)
    path = model.save(tmp_path / name)
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object


def test_load_of_another_class_is_refused(tmp_path):
    model, _, _ = fitted("NaiveBayesClassifier")
    path = model.save(tmp_path / "nb")
    with pytest.raises(ArtifactError):
        MODEL_CLASSES["LogisticRegression"].load(path)
