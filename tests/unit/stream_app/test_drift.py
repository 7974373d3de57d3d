"""PSI drift monitor: reference profile from the training matrix, sliding window, drift records."""

from __future__ import annotations

import numpy as np
import pytest

from batch.cycle import reference_profile
from batch.features import classification_data, frame_columns
from batch.ingest import read_source_csv
from schemas.events import DriftRecord
from schemas.profiles import TELCO
from stream_app.drift import DriftMonitor, drift_document


@pytest.fixture(scope="module")
def frame(telco_csv):
    return read_source_csv(telco_csv, TELCO)


@pytest.fixture(scope="module")
def data(frame):
    return classification_data(frame, TELCO)


@pytest.fixture(scope="module")
def profile(data):
    return reference_profile(data.preprocessor, data.X_train)


@pytest.fixture(scope="module")
def train_columns(frame, data):
    cols = frame_columns(frame, TELCO.features)
    return {k: v[data.train_idx] for k, v in cols.items()}


def test_reference_profile_is_json_able_and_covers_every_feature(profile, data):
    import json

    json.dumps(profile)
    assert set(profile["numeric"]) == set(TELCO.numeric_features)
    assert set(profile["categorical"]) == set(TELCO.categorical_features)
    assert profile["n_rows"] == len(data.X_train)
    for spec in profile["numeric"].values():
        assert len(spec["proportions"]) == len(spec["edges"]) + 1 <= 10
        assert sum(spec["proportions"]) == pytest.approx(1.0)
    tenure = profile["numeric"]["tenure_months"]
    assert len(tenure["edges"]) == 9  # a continuous-ish column gets every decile
    contract = profile["categorical"]["contract"]
    assert sorted(contract["categories"]) == ["Month-to-month", "One year", "Two year"]
    assert sum(contract["proportions"]) == pytest.approx(1.0)


def test_training_rows_in_the_window_give_psi_near_zero(profile, train_columns):
    monitor = DriftMonitor(profile, window=len(train_columns["tenure_months"]))
    monitor.update(train_columns)
    values = monitor.psi()
    assert set(values) == set(TELCO.features)
    assert max(values.values()) < 1e-9  # the very rows the profile was computed from


def test_shifted_window_exceeds_threshold_on_the_shifted_features_only(profile, frame, data):
    test_idx = data.test_idx
    cols = {k: v[test_idx] for k, v in frame_columns(frame, TELCO.features).items()}
    monitor = DriftMonitor(profile, window=5000)
    monitor.update(cols)
    assert max(monitor.psi().values()) < 0.1  # hold-out rows: same population

    shifted = dict(cols)
    shifted["tenure_months"] = np.zeros_like(cols["tenure_months"])
    shifted["monthly_charges_usd"] = cols["monthly_charges_usd"] * 3
    shifted_monitor = DriftMonitor(profile, window=5000)
    shifted_monitor.update(shifted)
    values = shifted_monitor.psi()
    assert values["tenure_months"] > 0.25 and values["monthly_charges_usd"] > 0.25
    assert values["contract"] < 0.1

    doc = drift_document(
        values,
        window_size=shifted_monitor.size,
        window_capacity=5000,
        model_name="churn-classifier",
        model_version="7",
        threshold=0.25,
    )
    record = DriftRecord.model_validate(doc)
    assert record.alert and {"tenure_months", "monthly_charges_usd"} <= set(record.drifted_features)
    assert "contract" not in record.drifted_features


def test_window_is_bounded_and_old_events_fall_out(profile, frame):
    cols = frame_columns(frame, TELCO.features)
    normal = {k: v[:300] for k, v in cols.items()}
    shifted = dict(normal)
    shifted["tenure_months"] = np.zeros(300)
    monitor = DriftMonitor(profile, window=500)
    monitor.update(shifted)
    assert monitor.size == 300 and monitor.psi()["tenure_months"] > 0.25
    for _ in range(4):  # 1,200 normal events push every shifted one out (ring wraps around)
        monitor.update(normal)
        assert monitor.size <= 500
    assert monitor.size == 500 and monitor.events_seen == 1500
    assert monitor.psi()["tenure_months"] < 0.25
    big = {k: np.concatenate([v, v, v]) for k, v in shifted.items()}  # one batch larger than the window
    monitor.update(big)
    assert monitor.size == 500 and monitor.psi()["tenure_months"] > 0.25


def test_unseen_categories_and_missing_values():
    profile = {
        "numeric": {"x": {"edges": [1.0, 2.0], "proportions": [0.3, 0.4, 0.3]}},
        "categorical": {"c": {"categories": ["b", "a"], "proportions": [0.5, 0.5]}},
    }
    monitor = DriftMonitor(profile, window=100)
    monitor.update({"x": np.array([np.nan, np.nan]), "c": np.array(["zzz", "zzz"])})
    values = monitor.psi()
    assert "x" not in values  # only missing values: nothing to compare
    assert values["c"] > 0.25  # a category never seen in training is drift
    monitor.update({"x": np.array([0.5, 1.5, 1.5, 2.5]), "c": np.array(["a", "b", "a", "b"])})
    assert monitor.size == 6


def test_pipeline_without_a_profile_has_no_monitor():
    class P:
        metadata = {"dataset": "telco"}

    assert DriftMonitor.from_pipeline(P()) is None
