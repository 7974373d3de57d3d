"""The training protocol: stratified split and featurisation fitted on training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch.features import classification_data, frame_columns, regression_data, stratified_split
from batch.ingest import read_source_csv
from schemas.profiles import TELCO


@pytest.fixture(scope="module")
def frame(telco_csv) -> pd.DataFrame:
    return read_source_csv(telco_csv, TELCO)


@pytest.fixture(scope="module")
def cls_data(frame):
    return classification_data(frame, TELCO)


def labels(seed: int = 0, n: int = 1001) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice([0, 1, 2], size=n, p=[0.6, 0.3, 0.1])


@pytest.mark.parametrize("test_size", [0.1, 0.2, 0.33])
@pytest.mark.parametrize("seed", [0, 7, 42])
def test_split_keeps_class_ratios_within_one_row_per_class(seed, test_size):
    y = labels(seed)
    train, test = stratified_split(y, test_size, seed)
    for cls in np.unique(y):
        n_cls = int(np.sum(y == cls))
        n_test = int(np.sum(y[test] == cls))
        assert abs(n_test - test_size * n_cls) <= 1, (cls, n_test, n_cls)
        assert n_test + int(np.sum(y[train] == cls)) == n_cls
    # Overall test share off by at most one row per class.
    assert abs(len(test) - test_size * len(y)) <= len(np.unique(y))


@pytest.mark.parametrize("seed", [0, 42])
def test_split_is_disjoint_complete_and_sorted(seed):
    y = labels(seed)
    train, test = stratified_split(y, 0.2, seed)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert train.dtype.kind == "i" and test.dtype.kind == "i"


def test_split_is_deterministic_per_seed():
    y = labels(3)
    a = stratified_split(y, 0.2, seed=11)
    b = stratified_split(y, 0.2, seed=11)
    c = stratified_split(y, 0.2, seed=12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_works_on_string_labels():
    y = np.array(["no"] * 80 + ["yes"] * 20)
    train, test = stratified_split(y, 0.25, seed=1)
    assert np.sum(y[test] == "yes") == 5 and np.sum(y[test] == "no") == 20
    assert len(train) == 75


def test_classification_split_sizes_on_telco(frame, cls_data):
    y = frame["churned"].to_numpy()
    assert len(cls_data.train_idx) + len(cls_data.test_idx) == 7043
    assert np.intersect1d(cls_data.train_idx, cls_data.test_idx).size == 0
    assert int(cls_data.y_test.sum()) == round(0.2 * 1869)
    assert len(cls_data.y_test) - int(cls_data.y_test.sum()) == round(0.2 * (7043 - 1869))
    np.testing.assert_array_equal(cls_data.y_train, y[cls_data.train_idx].astype(np.int64))
    np.testing.assert_array_equal(cls_data.y_test, y[cls_data.test_idx].astype(np.int64))
    assert cls_data.X_train.shape == (len(cls_data.train_idx), len(cls_data.feature_names))
    assert cls_data.X_test.shape == (len(cls_data.test_idx), len(cls_data.feature_names))
    assert cls_data.X_train.dtype == np.float64


def test_preprocessor_is_fitted_on_train_rows_only(frame, cls_data):
    pre = cls_data.preprocessor
    tenure = frame["tenure_months"].to_numpy(dtype=np.float64)
    j = pre.numeric_features.index("tenure_months")
    train_mean = tenure[cls_data.train_idx].mean()
    assert pre.mean_[j] == pytest.approx(train_mean, rel=1e-12)
    assert pre.scale_[j] == pytest.approx(tenure[cls_data.train_idx].std(), rel=1e-12)
    assert pre.median_[j] == np.median(tenure[cls_data.train_idx])
    # The full-data mean differs, so this check can tell the two apart.
    assert abs(tenure.mean() - train_mean) > 1e-6
    # Scaled training column has mean 0 and std 1; the test column generally does not.
    col = cls_data.feature_names.index("tenure_months")
    assert cls_data.X_train[:, col].mean() == pytest.approx(0.0, abs=1e-10)
    assert cls_data.X_train[:, col].std() == pytest.approx(1.0, abs=1e-10)
    assert abs(cls_data.X_test[:, col].mean()) > 1e-6


def test_features_cover_the_profile_in_order(cls_data):
    names = cls_data.feature_names
    assert names[: len(TELCO.numeric_features)] == list(TELCO.numeric_features)
    assert "contract=Month-to-month" in names
    assert "contract=Two year" in names
    assert cls_data.preprocessor.feature_names_in_ == list(TELCO.features)
    # One-hot rows: exactly one indicator per categorical feature.
    onehot = cls_data.X_train[:, len(TELCO.numeric_features) :]
    np.testing.assert_array_equal(onehot.sum(axis=1), np.full(len(onehot), len(TELCO.categorical_features)))


def test_split_is_deterministic_on_telco(frame, cls_data):
    again = classification_data(frame, TELCO)
    np.testing.assert_array_equal(again.test_idx, cls_data.test_idx)
    np.testing.assert_array_equal(again.X_train, cls_data.X_train)
    other = classification_data(frame, TELCO, seed=1)
    assert not np.array_equal(other.test_idx, cls_data.test_idx)


def test_regression_data_same_split_no_target_leak(frame, cls_data):
    reg = regression_data(frame, TELCO)
    np.testing.assert_array_equal(reg.test_idx, cls_data.test_idx)
    assert "total_charges_usd" not in reg.feature_names
    np.testing.assert_array_equal(reg.y_test, frame["total_charges_usd"].to_numpy()[reg.test_idx])


def test_frame_columns_turns_booleans_into_floats(frame):
    cols = frame_columns(frame.iloc[:3], ["partner", "tenure_months", "contract"])
    assert cols["partner"].dtype == np.float64
    np.testing.assert_array_equal(cols["partner"], [1.0, 0.0, 0.0])
    assert cols["tenure_months"].dtype == np.int64
    assert list(cols["contract"]) == ["Month-to-month", "One year", "Month-to-month"]
