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


def _codes_of(columns, categories):
    """What the featuriser hands on: each text value's index in its categories, -1 if unseen."""
    out = {}
    for name, cats in categories.items():
        idx = np.searchsorted(cats, columns[name])
        found = np.minimum(idx, len(cats) - 1)
        out[name] = np.where(cats[found] == columns[name], found, -1)
    return out


def test_categorical_bins_from_the_featurisers_codes_match_the_text(profile, train_columns, data):
    pre = data.preprocessor
    categories = dict(zip(pre.categorical_features, pre.categories_))
    cols = {k: v[:300].copy() for k, v in train_columns.items()}
    cols["contract"] = cols["contract"].astype(object)
    cols["contract"][:40] = "Three year"  # in neither the training categories nor the reference
    cols["contract"] = cols["contract"].astype(str)
    # The preprocessor knows a category the reference does not (a rare one dropped from the profile):
    # its code maps to the reference's unseen bin, as its text would.
    categories["gender"] = np.array(["Female", "Male", "Other"])
    cols["gender"] = cols["gender"].astype(object)
    cols["gender"][:25] = "Other"
    cols["gender"] = cols["gender"].astype(str)
    codes = _codes_of(cols, categories)
    assert (codes["contract"][:40] == -1).all() and (codes["gender"][:25] == 2).all()

    from_text, from_codes = DriftMonitor(profile, window=100), DriftMonitor(profile, window=100)
    for start in (240, 0, 60):  # wraps around the ring: rows 20..119 stay
        rows = slice(start, start + 60)
        from_text.update({k: v[rows] for k, v in cols.items()})
        from_codes.update({k: v[rows] for k, v in cols.items()}, {k: v[rows] for k, v in codes.items()}, categories)
    np.testing.assert_array_equal(from_codes._ring, from_text._ring)
    unseen_contract = len(profile["categorical"]["contract"]["categories"])
    assert (from_codes._ring[:, from_codes.features.index("contract")] == unseen_contract).sum() == 20  # rows 20..39
    assert from_codes.psi() == from_text.psi()


def test_codes_of_categories_missing_a_reference_category_are_not_used(profile, train_columns):
    # "Two year" is in the reference but not among these categories: its code would be -1, the
    # unseen bin, so the monitor bins the text instead.
    categories = {"contract": np.array(["Month-to-month", "One year"])}
    cols = {k: v[:100] for k, v in train_columns.items()}
    codes = _codes_of(cols, categories)
    assert (codes["contract"] == -1).any()
    from_text, from_codes = DriftMonitor(profile, window=100), DriftMonitor(profile, window=100)
    from_text.update(cols)
    from_codes.update(cols, codes, categories)
    np.testing.assert_array_equal(from_codes._ring, from_text._ring)
