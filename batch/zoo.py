"""The model zoo trained by each cycle: name -> factory with its hyperparameters."""

from __future__ import annotations

from collections.abc import Callable

from scratch_models import MODEL_CLASSES
from scratch_models.base import BaseModel

#: (zoo name, class name, hyperparameters). Classes missing from this build are skipped.
_CLASSIFIERS: list[tuple[str, str, dict]] = [
    ("logistic_regression", "LogisticRegression", {"C": 1.0}),
]

_REGRESSORS: list[tuple[str, str, dict]] = []


def _factories(spec: list[tuple[str, str, dict]], only: set[str] | None) -> dict[str, Callable[[], BaseModel]]:
    out = {}
    for name, cls_name, params in spec:
        if only is not None and name not in only:
            continue
        cls = MODEL_CLASSES.get(cls_name)
        if cls is None:
            continue
        out[name] = (lambda c=cls, p=params: c(**p))
    return out


def classifiers(only: set[str] | None = None) -> dict[str, Callable[[], BaseModel]]:
    """Factories of the zoo's churn classifiers, optionally restricted to ``only`` names."""
    return _factories(_CLASSIFIERS, only)


def regressors(only: set[str] | None = None) -> dict[str, Callable[[], BaseModel]]:
    """Factories of the zoo's customer-value regressors."""
    return _factories(_REGRESSORS, only)
