"""The training protocol: stratified hold-out split and featurisation fitted on training rows only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from schemas.profiles import DatasetProfile
from scratch_models.model_selection import stratified_holdout
from scratch_models.preprocessing import TabularPreprocessor


def stratified_split(y: np.ndarray, test_size: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the batch protocol's stratified train/test split (20 % test, seed 42).

    :func:`scratch_models.model_selection.stratified_holdout` with the protocol's defaults.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Class labels (the churn label).
    test_size : float, default 0.2
        Share of each class in the test part.
    seed : int, default 42

    Returns
    -------
    train_idx, test_idx : ndarray of int64, sorted
    """
    return stratified_holdout(y, test_size, seed)


def frame_columns(frame: pd.DataFrame, names: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """Columns of ``frame`` as numpy arrays (booleans as float 0/1), the preprocessor's input."""
    out = {}
    for name in names:
        col = frame[name].to_numpy()
        if col.dtype == bool:
            col = col.astype(np.float64)
        out[name] = col
    return out


@dataclass
class TaskData:
    """Featurised train/test matrices of one task.

    Attributes
    ----------
    preprocessor : TabularPreprocessor
        Fitted on the training rows only.
    X_train, X_test : ndarray of shape (n, n_features_out), float64
    y_train, y_test : ndarray of shape (n,)
        int 0/1 for classification, float64 USD for regression.
    train_idx, test_idx : ndarray of int64
        Rows of the source frame.
    """

    preprocessor: TabularPreprocessor
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray

    @property
    def feature_names(self) -> list[str]:
        """Model feature order."""
        return self.preprocessor.feature_names_out_


def with_derived(frame: pd.DataFrame, profile: DatasetProfile) -> pd.DataFrame:
    """``frame`` with the profile's derived features it lacks (a new frame if any is added).

    Parameters
    ----------
    frame : DataFrame
        Typed by :func:`batch.ingest.read_source_csv` with ``profile``.
    profile : DatasetProfile

    Returns
    -------
    DataFrame
    """
    missing = [d for d in profile.derived_features if d not in frame.columns]
    if not missing:
        return frame
    derived = profile.derive(frame)
    return frame.assign(**{name: derived[name] for name in missing})


def classification_data(frame: pd.DataFrame, profile: DatasetProfile, seed: int = 42) -> TaskData:
    """Stratified 80/20 split on the churn label; one-hot + scaling fitted on train.

    Derived features the frame lacks are computed first (:func:`with_derived`).
    """
    frame = with_derived(frame, profile)
    y = frame[profile.classification_target].to_numpy().astype(np.int64)
    tr, te = stratified_split(y, 0.2, seed)
    pre = TabularPreprocessor(profile.numeric_features, profile.categorical_features)
    cols = frame_columns(frame, profile.features)
    pre.fit({k: v[tr] for k, v in cols.items()})
    X = pre.transform(cols)
    return TaskData(pre, X[tr], X[te], y[tr], y[te], tr, te)


def regression_data(frame: pd.DataFrame, profile: DatasetProfile, seed: int = 42) -> TaskData:
    """The same split as :func:`classification_data` (stratified on churn), regression target.

    Raises
    ------
    ValueError
        If the profile has no value target (then no regressor is trained).
    """
    if profile.regression_target is None:
        raise ValueError(f"profile {profile.name!r} has no value_target: no regressor is trained")
    frame = with_derived(frame, profile)
    y_cls = frame[profile.classification_target].to_numpy().astype(np.int64)
    tr, te = stratified_split(y_cls, 0.2, seed)
    num, cat = profile.regression_features()
    pre = TabularPreprocessor(num, cat)
    cols = frame_columns(frame, num + cat)
    pre.fit({k: v[tr] for k, v in cols.items()})
    X = pre.transform(cols)
    y = frame[profile.regression_target].to_numpy(dtype=np.float64)
    return TaskData(pre, X[tr], X[te], y[tr], y[te], tr, te)
