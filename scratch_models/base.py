"""Common estimator base: scikit-learn's estimator contract in plain numpy.

The contract (scikit-learn's ``BaseEstimator``; Buitinck et al., "API design for
machine learning software: experiences from the scikit-learn project", 2013):

* ``__init__`` stores keyword hyperparameters unchanged and computes nothing;
* ``fit(X, y)`` returns ``self``; learned state ends in ``_``;
* ``predict_proba`` returns float64 ``(n_samples, n_classes)`` rows summing to 1;
* randomness only through ``np.random.default_rng(self.random_state)``;
* ``save`` / ``load`` write one ``.npz`` of arrays plus a JSON header, never a pickle.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from scratch_models import persistence
from scratch_models.validation import NotFittedError, check_array, check_X_y


class BaseModel:
    """Base class of every scratch model.

    Subclasses implement ``fit`` and store learned arrays in attributes ending in
    ``_``. Persistence is generic: every learned attribute that is an ndarray or a
    JSON-serialisable scalar/list is saved; subclasses with nested state override
    :meth:`_get_state` / :meth:`_set_state`.
    """

    #: ``"classifier"`` or ``"regressor"``.
    task: ClassVar[str] = ""
    #: Every concrete model class by class name; artifacts can only name these.
    registry: ClassVar[dict[str, type[BaseModel]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            BaseModel.registry[cls.__name__] = cls

    if TYPE_CHECKING:
        # What every concrete model defines, declared for the type checker only: at run time
        # ``hasattr(model, "predict_proba")`` still tells a classifier from a regressor.
        n_features_in_: int

        def fit(self, X: Any, y: Any) -> Self: ...

        def predict(self, X: Any) -> np.ndarray: ...

        def predict_proba(self, X: Any) -> np.ndarray: ...

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__``.

        Parameters
        ----------
        deep : bool, default False
            Accepted for scikit-learn compatibility; nested estimators are not used.

        Returns
        -------
        dict of str to object
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseModel:
        """Set hyperparameters; unknown names raise ``ValueError``."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ state
    def _fitted_attributes(self) -> list[str]:
        return [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]

    def _check_is_fitted(self) -> None:
        if not self._fitted_attributes():
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) first.")

    def _validate_X(self, X: Any) -> np.ndarray:
        """Check a prediction input against the width seen in ``fit``."""
        self._check_is_fitted()
        X = check_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} was fitted "
                f"with {self.n_features_in_} features."
            )
        return X

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Split learned attributes into JSON-able values and arrays."""
        meta: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for key in self._fitted_attributes():
            value = getattr(self, key)
            if isinstance(value, np.ndarray):
                arrays[key] = value
            elif isinstance(value, (np.integer, np.floating)):
                meta[key] = value.item()
            else:
                meta[key] = value
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        for key, value in meta.items():
            setattr(self, key, value)
        for key, value in arrays.items():
            setattr(self, key, value)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to one ``.npz`` with a JSON header.

        Parameters
        ----------
        path : str or Path
            Target file; ``.npz`` is appended when missing.

        Returns
        -------
        Path
            The file written.

        Raises
        ------
        NotFittedError
            If the model has not been fitted.
        """
        self._check_is_fitted()
        meta, arrays = self._get_state()
        header = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "state": meta,
        }
        return persistence.save_npz(path, header, arrays)

    @classmethod
    def load(cls, path: str | Path) -> BaseModel:
        """Read a model written by :meth:`save`.

        Raises
        ------
        persistence.ArtifactError
            If the file is not a scratch-model artifact, has another format version,
            or holds another class than ``cls``.
        """
        header, arrays = persistence.load_npz(path)
        return cls._from_parts(header, arrays)

    @classmethod
    def _from_parts(cls, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> BaseModel:
        if header.get("class") != cls.__name__:
            raise persistence.ArtifactError(f"artifact holds a {header.get('class')!r}, expected {cls.__name__!r}")
        model = cls(**header["params"])
        model._set_state(header["state"], arrays)
        return model


class ClassifierMixin:
    """Binary/multiclass helpers shared by classifiers."""

    task: ClassVar[str] = "classifier"
    #: Learned in ``fit`` (:meth:`_encode_y`): the sorted class labels.
    classes_: np.ndarray

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        """Store ``classes_`` and return ``y`` as indices into it."""
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least 2.")
        self.classes_ = classes
        return y_idx

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class per row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)  # type: ignore[attr-defined]
        return self.classes_[np.argmax(proba, axis=1)]


class RegressorMixin:
    """Marker for regressors."""

    task: ClassVar[str] = "regressor"


__all__ = ["BaseModel", "ClassifierMixin", "RegressorMixin", "NotFittedError", "check_X_y"]
