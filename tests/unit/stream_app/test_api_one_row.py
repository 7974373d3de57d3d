"""The API's one-customer encoder gives exactly ``TabularPreprocessor.transform``'s row."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.profiles import TELCO
from scratch_models import TabularPreprocessor
from stream_app.api.one_row import OneRowEncoder, one_row_encoder
from stream_app.contract import TELCO_CONTRACT


@pytest.fixture(scope="module")
def telco_rows(telco_csv) -> list[dict]:
    import orjson

    from churn_stream.produce import csv_to_customer_events
    from schemas.events import customer_event_model

    model = customer_event_model(TELCO)
    return [model.model_validate(orjson.loads(v)).__dict__ for _, v in csv_to_customer_events(telco_csv, limit=300)]


@pytest.fixture(scope="module")
def pre(telco_rows) -> TabularPreprocessor:
    numeric = list(TELCO.numeric_features)
    categorical = list(TELCO.categorical_features)
    return TabularPreprocessor(numeric, categorical).fit(TELCO_CONTRACT.columns(telco_rows, numeric + categorical))


def _one(pre: TabularPreprocessor, row: dict) -> dict[str, np.ndarray]:
    return TELCO_CONTRACT.columns([row], pre.feature_names_in_)


def test_each_row_equals_transform_and_unknowns_are_its_all_zero_blocks(pre, telco_rows):
    encoder = OneRowEncoder(pre)
    seen_unknown = 0
    for i, row in enumerate(telco_rows):
        if i % 3 == 0:  # one or two categories never seen in training
            row = {**row, pre.categorical_features[i % len(pre.categorical_features)]: "carrier pigeon"}
            if i % 2:
                row["contract"] = "handshake"
        columns = _one(pre, row)
        X, unknown = encoder.transform(columns)
        expected = pre.transform(columns)
        assert X.dtype == np.float64 and X.shape == expected.shape == (1, len(pre.feature_names_out_))
        np.testing.assert_array_equal(X, expected)
        assert unknown == [c for c in pre.categorical_features if pre.last_unknown_counts_[c]]
        seen_unknown += bool(unknown)
    assert seen_unknown > 0  # the fixture does exercise unseen categories


def test_nan_is_imputed_with_the_median_and_infinity_refused_as_transform_does(pre, telco_rows):
    columns = _one(pre, telco_rows[0])
    name = pre.numeric_features[0]
    columns[name] = np.array([np.nan])
    np.testing.assert_array_equal(OneRowEncoder(pre).transform(columns)[0], pre.transform(columns))
    columns[name] = np.array([np.inf])
    with pytest.raises(ValueError, match="infinity") as theirs:
        pre.transform(columns)
    with pytest.raises(ValueError, match="infinity") as ours:
        OneRowEncoder(pre).transform(columns)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("which", ["numeric", "categorical"])
def test_a_missing_column_is_the_same_value_error(pre, telco_rows, which):
    columns = _one(pre, telco_rows[0])
    name = (pre.numeric_features if which == "numeric" else pre.categorical_features)[0]
    del columns[name]
    with pytest.raises(ValueError) as theirs:
        pre.transform(columns)
    with pytest.raises(ValueError) as ours:
        OneRowEncoder(pre).transform(columns)
    assert str(ours.value) == str(theirs.value)


def test_a_numeric_column_encoded_as_categories_reads_as_transform_does(telco_rows):
    cols = TELCO_CONTRACT.columns(telco_rows, ["senior_citizen", "tenure_months"])
    pre = TabularPreprocessor(["tenure_months"], ["senior_citizen"]).fit(cols)
    columns = TELCO_CONTRACT.columns(telco_rows[:1], ["senior_citizen", "tenure_months"])
    assert columns["senior_citizen"].dtype == np.float64
    X, unknown = OneRowEncoder(pre).transform(columns)
    np.testing.assert_array_equal(X, pre.transform(columns))
    assert unknown == []


def test_one_encoder_per_preprocessor(pre):
    assert one_row_encoder(pre) is one_row_encoder(pre)
    other = TabularPreprocessor(pre.numeric_features, pre.categorical_features)
    other.median_, other.mean_, other.scale_ = pre.median_, pre.mean_, pre.scale_
    other.categories_, other.feature_names_out_ = pre.categories_, pre.feature_names_out_
    assert one_row_encoder(other) is not one_row_encoder(pre)
