"""Synthetic retail data: deterministic, parses with the RETAIL profile, labels that depend on behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from batch.features import classification_data, regression_data
from batch.ingest import IngestError, arrow_schema, read_source_csv, to_arrow
from batch.metrics import roc_auc
from batch.retail import AS_OF, engineer_features, generate_table, write_retail_csv
from churn_stream.cli import main
from schemas.profiles import RETAIL, get_profile
from scratch_models.linear import LogisticRegression


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    return write_retail_csv(tmp_path_factory.mktemp("retail") / "small.csv", rows=2_000, seed=7)


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    """20,000 customers, ingested and engineered as the batch job does."""
    path = write_retail_csv(tmp_path_factory.mktemp("retail") / "big.csv", rows=20_000, seed=11)
    return engineer_features(read_source_csv(path, RETAIL))


# -------------------------------------------------------------- determinism
def test_same_seed_same_bytes_different_seed_differs(tmp_path, small_csv):
    again = write_retail_csv(tmp_path / "again.csv", rows=2_000, seed=7)
    other = write_retail_csv(tmp_path / "other.csv", rows=2_000, seed=8)
    assert again.read_bytes() == small_csv.read_bytes()
    assert other.read_bytes() != small_csv.read_bytes()


def test_rows_below_one_rejected():
    with pytest.raises(ValueError, match="rows: expected an integer >= 1"):
        generate_table(0, seed=0)


# ------------------------------------------------------------------- schema
def test_header_is_the_profiles_source_columns_in_order(small_csv):
    header = small_csv.read_text(encoding="utf-8").split("\n", 1)[0]
    assert [c.strip('"') for c in header.split(",")] == list(RETAIL.source_columns)
    assert len(RETAIL.source_columns) == 78
    assert get_profile("retail") is RETAIL


def test_read_source_csv_parses_a_generated_file(small_csv):
    frame = read_source_csv(small_csv, RETAIL)
    assert len(frame) == 2_000
    assert list(frame.columns) == list(RETAIL.source_columns.values())
    table = to_arrow(frame, RETAIL)
    assert table.schema == arrow_schema(RETAIL)
    assert table.schema.field("transaction_date").type == pa.string()
    assert frame["churned"].dtype == bool and frame["total_sales_usd"].dtype == np.float64
    assert frame["customer_id"].is_unique


def test_profile_features_are_known_fields():
    fields = set(RETAIL.source_columns.values()) | set(RETAIL.derived_features)
    assert set(RETAIL.features) <= fields
    assert set(RETAIL.regression_excluded) <= set(RETAIL.features)
    dates = {f for f, kind in RETAIL.source_types.items() if kind == "date"}
    ids = {"customer_id", "transaction_id", "product_id", "promotion_id"}
    targets = {RETAIL.classification_target, RETAIL.regression_target}
    assert not set(RETAIL.features) & (dates | ids | targets)


def test_bad_date_is_rejected_with_its_column_and_row(tmp_path, small_csv):
    lines = small_csv.read_text(encoding="utf-8").splitlines()
    col = list(RETAIL.source_columns).index("transaction_date")
    fields = lines[2].split(",")  # no generated value holds a comma
    fields[col] = "2024-13-01"
    lines[2] = ",".join(fields)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(
        IngestError,
        match=r"transaction_date: expected an ISO date YYYY-MM-DD, got '2024-13-01' "
        r"at data row 2",
    ):
        read_source_csv(bad, RETAIL)


def test_internal_consistency(frame):
    days = frame["days_since_last_purchase"].to_numpy()
    expected = (AS_OF - days.astype("timedelta64[D]")).astype(str)
    assert (frame["transaction_date"].to_numpy().astype(str) == expected).all()
    assert (frame["last_purchase_date"] == frame["transaction_date"]).all()
    assert (frame["online_purchases"] + frame["in_store_purchases"] == frame["total_transactions"]).all()
    assert (frame["min_single_purchase_value_usd"] <= frame["avg_transaction_value_usd"] + 0.01).all()
    assert (frame["avg_transaction_value_usd"] <= frame["max_single_purchase_value_usd"] + 0.01).all()
    assert frame["age"].between(18, 80).all()
    assert days.max() <= (frame["membership_years"] * 365.25).max()


# ------------------------------------------------------------------- labels
def test_churn_rate_within_bounds(frame):
    assert 0.15 <= frame["churned"].mean() <= 0.30


def test_churn_depends_on_recency(frame):
    days = frame["days_since_last_purchase"]
    low, high = days.quantile([0.1, 0.9])
    recent = frame.loc[days <= low, "churned"].mean()
    lapsed = frame.loc[days >= high, "churned"].mean()
    assert lapsed > 3 * recent and lapsed - recent > 0.3


def test_scratch_logistic_regression_learns_churn(frame):
    data = classification_data(frame, RETAIL)
    model = LogisticRegression().fit(data.X_train, data.y_train)
    auc = roc_auc(data.y_test, model.predict_proba(data.X_test)[:, 1])
    assert auc > 0.7


def test_total_sales_positive_and_follows_frequency_times_basket(frame):
    sales = frame["total_sales_usd"].to_numpy()
    assert (sales > 0).all()
    frequency_x_basket = frame["total_transactions"].to_numpy() * frame["avg_purchase_value_usd"].to_numpy()
    assert np.corrcoef(np.log(sales), np.log(frequency_x_basket))[0, 1] > 0.8


def test_regression_data_leaves_out_the_invoice_figures(frame):
    data = regression_data(frame, RETAIL)
    names = set(data.feature_names)
    for leak in RETAIL.regression_excluded + (RETAIL.regression_target,):
        assert leak not in names
    assert data.X_train.shape[0] == 16_000 and np.isfinite(data.X_train).all()
    assert (data.y_train > 0).all()


# --------------------------------------------------------- engineered features
def test_engineered_features_on_a_hand_example():
    columns = {
        "quantity": np.array([3, 1]),
        "unit_price_usd": np.array([2.5, 10.0]),
        "app_usage": np.array(["High", "Low"], dtype=object),
        "social_media_engagement": np.array(["Medium", "Unknown"], dtype=object),
        "email_subscriptions": np.array([True, False]),
        "days_since_last_purchase": np.array([73, 10]),
        "membership_years": np.array([2.0, 0.0]),
        "online_purchases": np.array([3, 0]),
        "in_store_purchases": np.array([1, 0]),
    }
    out = RETAIL.derive(columns)
    assert tuple(out) == RETAIL.derived_features
    np.testing.assert_allclose(out["line_value_usd"], [7.5, 10.0])
    np.testing.assert_allclose(out["engagement_score"], [(2 + 1 + 2) / 6, np.nan])
    np.testing.assert_allclose(out["recency_ratio"], [73 / 730.5, 10.0])  # membership floored at 1 day
    np.testing.assert_allclose(out["online_share"], [0.75, np.nan])


def test_engineer_features_adds_columns_without_touching_the_input(small_csv):
    raw = read_source_csv(small_csv, RETAIL)
    before = raw.copy()
    out = engineer_features(raw)
    pd.testing.assert_frame_equal(raw, before)
    assert list(out.columns) == list(raw.columns) + list(RETAIL.derived_features)
    assert out["engagement_score"].between(0, 1).all() and out["online_share"].between(0, 1).all()


# ---------------------------------------------------------------------- CLI
def test_cli_data_generate(tmp_path):
    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(main, ["data", "generate", "retail", "--rows", "50", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["rows"] == 50 and summary["bytes"] == out.stat().st_size
    assert out.read_bytes() == write_retail_csv(tmp_path / "direct.csv", rows=50, seed=3).read_bytes()
