"""The model zoo trained by each cycle: name -> factory with its hyperparameters."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from scratch_models import MODEL_CLASSES
from scratch_models.base import BaseModel

#: (zoo name, class name, hyperparameters). Classes missing from this build are skipped.
_CLASSIFIERS: list[tuple[str, str, dict]] = [
    ("logistic_regression", "LogisticRegression", {"C": 1.0}),
    ("decision_tree", "DecisionTreeClassifier", {"max_depth": 5, "min_samples_leaf": 5, "random_state": 42}),
    # Forests: depth 12 and half-size bootstrap samples keep a 1M-row fit within minutes
    # (`churn bench fit`); on Telco both stay within 0.01 AUC of scikit-learn's unbounded forest.
    (
        "random_forest",
        "RandomForestClassifier",
        {
            "n_estimators": 100,
            "min_samples_leaf": 5,
            "max_depth": 12,
            "max_samples": 0.5,
            "n_jobs": -1,
            "random_state": 42,
        },
    ),
    ("svm", "SVMClassifier", {"random_state": 42}),
    ("kmeans", "KMeansClassifier", {"random_state": 42}),
    ("agglomerative", "AgglomerativeClassifier", {"random_state": 42}),
    ("perceptron", "Perceptron", {"random_state": 42}),
    ("mlp", "MLPClassifier", {"random_state": 42}),
    ("naive_bayes", "NaiveBayesClassifier", {}),
    (
        "random_forest_pca",
        "RandomForestPCAClassifier",
        {
            "n_estimators": 100,
            "min_samples_leaf": 5,
            "max_depth": 12,
            "max_samples": 0.5,
            "n_jobs": -1,
            "random_state": 42,
        },
    ),
    ("svm_pca", "SVMPCAClassifier", {"random_state": 42}),
    # min_child_weight 60 (class default 10): best out-of-fold tuned F1 of `churn bench gbm-cv`
    # on Telco's training part only (tests/unit/scratch_models/gbm_cv_telco.json).
    ("gradient_boosting", "GradientBoostingClassifier", {"min_child_weight": 60.0, "n_jobs": -1, "random_state": 42}),
]

_REGRESSORS: list[tuple[str, str, dict]] = [
    ("linear_regression", "LinearRegression", {}),
    ("multiple_regression", "MultipleRegression", {"alpha": 1.0}),
    ("polynomial_regression", "PolynomialRegression", {"degree": 2, "alpha": 1.0}),
    ("gradient_boosting_regressor", "GradientBoostingRegressor", {"random_state": 42}),
]


#: Models whose cost grows super-linearly or per row in Python (dual coordinate descent,
#: per-row perceptron updates, many mini-batch epochs, clustering restarts): on large
#: training sets they are fitted on a stratified sample of at most
#: ``Settings.batch_sample_max_rows`` rows (see :class:`batch.training.FitPlan`).
SAMPLED = frozenset({"svm", "svm_pca", "perceptron", "mlp", "kmeans", "agglomerative"})

#: Models whose design matrix is much wider than the input (degree-2 expansion: ~3,900
#: columns from 87); their fit rows are bounded by ``Settings.batch_poly_max_rows`` for memory.
WIDE = frozenset({"polynomial_regression"})


#: Tree ensembles: their fit grows with rows x trees (x boosting rounds), minutes per
#: model at 720k rows on 2 cores. On large training sets they are fitted on a stratified
#: sample of at most ``Settings.batch_ensemble_max_rows`` rows; the learning curve behind
#: the default is ``churn bench batch-curve`` (README, "Batch at scale").
ENSEMBLES = frozenset({"random_forest", "random_forest_pca", "gradient_boosting", "gradient_boosting_regressor"})


def sample_caps(settings) -> dict[str, int]:
    """Zoo name -> most training rows the model is fitted on, from ``settings``.

    ``batch_sample_max_rows`` bounds :data:`SAMPLED`, ``batch_poly_max_rows`` bounds
    :data:`WIDE`, ``batch_ensemble_max_rows`` (0 = no bound) bounds :data:`ENSEMBLES`, and
    ``batch_fit_max_rows`` (0 = no bound) every other model and the ensembles too (the
    smaller bound wins).

    Parameters
    ----------
    settings : plumbing.settings.Settings

    Returns
    -------
    dict of str to int
    """
    caps = {}
    for name, _, _ in _CLASSIFIERS + _REGRESSORS:
        if name in SAMPLED:
            caps[name] = int(settings.batch_sample_max_rows)
        elif name in WIDE:
            caps[name] = int(settings.batch_poly_max_rows)
        else:
            bounds = [int(settings.batch_fit_max_rows)]
            if name in ENSEMBLES:
                bounds.append(int(settings.batch_ensemble_max_rows))
            bounds = [b for b in bounds if b]
            if bounds:
                caps[name] = min(bounds)
    return caps


def _factories(spec: list[tuple[str, str, dict]], only: set[str] | None) -> dict[str, Callable[[], BaseModel]]:
    out: dict[str, Callable[[], BaseModel]] = {}
    for name, cls_name, params in spec:
        if only is not None and name not in only:
            continue
        cls = MODEL_CLASSES.get(cls_name)
        if cls is None:
            continue
        accepted = set(cls._param_names())
        kwargs = {k: v for k, v in params.items() if k in accepted}
        out[name] = partial(cls, **kwargs)
    return out


def classifiers(only: set[str] | None = None) -> dict[str, Callable[[], BaseModel]]:
    """Factories of the zoo's churn classifiers, optionally restricted to ``only`` names."""
    return _factories(_CLASSIFIERS, only)


def regressors(only: set[str] | None = None) -> dict[str, Callable[[], BaseModel]]:
    """Factories of the zoo's customer-value regressors."""
    return _factories(_REGRESSORS, only)
