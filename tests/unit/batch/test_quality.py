"""The data-quality gate: PSI against hand computations, each check's verdict on real and broken Telco data."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from batch import quality
from batch.ingest import IngestError, read_source_csv
from batch.quality import (
    DataQualityError,
    QualityConfig,
    run_gate,
)
from schemas.profiles import TELCO
from scratch_models.drift import FeatureReference


@pytest.fixture(scope="module")
def frame(telco_csv) -> pd.DataFrame:
    return read_source_csv(telco_csv, TELCO)


def gate(frame, reference=None, **kw):
    return run_gate(
        frame,
        TELCO,
        cycle_id="c2",
        source="test.csv",
        reference=reference,
        reference_cycle="c1" if reference is not None else None,
        **kw,
    )


# ----------------------------------------------------------------------- PSI
# PSI itself is pinned by hand in tests/unit/scratch_models/test_drift.py.
def test_identical_data_has_zero_psi(frame):
    for name in ("tenure_months", "monthly_charges_usd", "total_charges_usd"):
        values = frame[name].to_numpy()
        assert FeatureReference.numeric_from_values(name, values).psi(values) == pytest.approx(0.0, abs=1e-15)
    values = frame["contract"].to_numpy()
    assert FeatureReference.categorical_from_values("contract", values).psi(values) == pytest.approx(0.0, abs=1e-15)


# --------------------------------------------------------------------- gate
def test_telco_against_itself_passes_every_check(frame):
    report = gate(frame, reference=frame, source_time=datetime.now(UTC))
    assert report.status == "pass", report.to_markdown()
    assert [c.name for c in report.checks] == [
        "freshness",
        "schema",
        "completeness",
        "target_regression",
        "class_balance",
        "drift",
    ]
    drift = report.check("drift").details["psi"]
    assert set(drift) == set(TELCO.features) | {"churned"}
    assert all(v["psi"] == 0.0 for v in drift.values())
    assert drift["tenure_months"]["kind"] == "numeric" and drift["senior_citizen"]["kind"] == "categorical"
    balance = report.check("class_balance").details
    assert balance["positive_share"] == pytest.approx(1869 / 7043, abs=1e-6)
    target = report.check("target_regression").details
    assert target["nonpositive_share"] == pytest.approx(11 / 7043, abs=1e-6)
    assert 6.0 < target["max_over_median"] < 6.5


def test_a_random_half_of_telco_against_the_other_passes(frame):
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(frame))
    half_a, half_b = frame.iloc[idx[: len(idx) // 2]], frame.iloc[idx[len(idx) // 2 :]]
    report = gate(half_b, reference=half_a)
    assert report.check("drift").status == "pass"
    assert max(v["psi"] for v in report.check("drift").details["psi"].values()) < 0.02


def test_shifted_distribution_fails_drift_with_numbers(frame):
    shifted = frame.copy()
    shifted["monthly_charges_usd"] = shifted["monthly_charges_usd"] * 1.5
    report = gate(shifted, reference=frame)
    drift = report.check("drift")
    assert drift.status == "fail"
    psi = drift.details["psi"]["monthly_charges_usd"]["psi"]
    assert psi > 0.25
    assert psi == pytest.approx(
        FeatureReference.numeric_from_values("m", frame["monthly_charges_usd"].to_numpy()).psi(
            shifted["monthly_charges_usd"].to_numpy()
        ),
        rel=1e-5,
    )
    err = DataQualityError(report)
    assert "drift" in str(err) and f"monthly_charges_usd={psi:.3f}" in str(err) and "c1" in str(err)
    assert drift.details["psi"]["tenure_months"]["status"] == "pass"


def test_moderate_shift_warns_and_thresholds_are_configurable(frame):
    rng = np.random.default_rng(1)
    moved = frame.copy()
    # Move 30 % of month-to-month customers to two-year contracts: a moderate shift in one feature.
    m2m = np.flatnonzero(moved["contract"].to_numpy() == "Month-to-month")
    pick = rng.choice(m2m, size=int(0.3 * len(m2m)), replace=False)
    moved.loc[moved.index[pick], "contract"] = "Two year"
    value = FeatureReference.categorical_from_values("c", frame["contract"].to_numpy()).psi(
        moved["contract"].to_numpy()
    )
    assert 0.1 <= value < 0.25
    assert gate(moved, reference=frame).check("drift").status == "warn"
    strict = QualityConfig(psi_warn=0.05, psi_fail=value - 1e-6)
    assert gate(moved, reference=frame, config=strict).check("drift").status == "fail"


def test_no_reference_skips_drift(frame):
    check = gate(frame).check("drift")
    assert check.status == "pass" and "not checked" in check.message


def test_freshness_warns_by_default_and_fails_when_configured(frame):
    old = datetime.now(UTC) - timedelta(days=10)
    assert gate(frame, source_time=old).check("freshness").status == "warn"
    assert gate(frame, source_time=old).passed
    strict = QualityConfig(max_source_age_h=24, freshness_fail=True)
    report = gate(frame, source_time=old, config=strict)
    assert report.check("freshness").status == "fail"
    assert "240.0 h old" in report.failure_message()
    assert gate(frame, source_time=datetime.now(UTC), config=strict).check("freshness").status == "pass"
    assert gate(frame, source_time=old, config=QualityConfig(max_source_age_h=None)).check("freshness").status == "pass"


def test_completeness_fails_above_the_null_share(frame):
    holes = frame.copy()
    holes["payment_method"] = holes["payment_method"].astype(object)
    holes.loc[holes.index[:705], "payment_method"] = ""  # 705 / 7043 = 0.1001
    holes["monthly_charges_usd"] = holes["monthly_charges_usd"].astype(float)
    holes.loc[holes.index[:100], "monthly_charges_usd"] = np.nan  # 0.0142: below 0.05
    check = gate(holes).check("completeness")
    assert check.status == "fail"
    assert "payment_method=0.100" in check.message and "monthly_charges" not in check.message
    assert check.details["null_share"]["monthly_charges_usd"] == pytest.approx(100 / 7043, abs=1e-6)


def test_target_health_zeros_and_outliers_fail(frame):
    zeros = frame.copy()
    zeros.loc[zeros.index[:200], "total_charges_usd"] = 0.0  # 211 / 7043 = 0.030 > 0.01
    check = gate(zeros).check("target_regression")
    assert check.status == "fail" and "share <= 0 is 0.0300" in check.message
    outlier = frame.copy()
    outlier.loc[outlier.index[0], "total_charges_usd"] = 1e6
    check = gate(outlier).check("target_regression")
    assert check.status == "fail" and "x the median" in check.message


def test_class_balance_warns_below_minority_share_and_fails_with_one_class(frame):
    churned = frame.index[frame["churned"].to_numpy()]
    rare = frame.drop(churned[: len(churned) - 400])  # 400 of 5574 churned: 0.072
    report = gate(rare)
    assert report.check("class_balance").status == "warn" and report.passed
    assert report.check("class_balance").details["minority_share"] == pytest.approx(400 / 5574, abs=1e-6)
    one = frame.drop(churned)
    assert gate(one).check("class_balance").status == "fail"


def test_schema_error_is_recorded_and_fails(tmp_path, telco_csv):
    lines = telco_csv.read_text(encoding="utf-8").splitlines()
    head = lines[0].split(",")
    row = lines[1].split(",")
    row[head.index("MonthlyCharges")] = "lots"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], ",".join(row), *lines[2:50]]) + "\n", encoding="utf-8")
    with pytest.raises(IngestError) as info:
        read_source_csv(bad, TELCO)
    report = run_gate(None, TELCO, cycle_id="c", source="bad.csv", schema_error=info.value)
    assert report.status == "fail" and report.check("schema").status == "fail"
    assert "MonthlyCharges: expected a finite number >= 0, got 'lots'" in report.failure_message()


def test_report_json_and_markdown(frame):
    shifted = frame.copy()
    shifted["tenure_months"] = shifted["tenure_months"] // 2
    report = gate(shifted, reference=frame)
    data = json.loads(report.to_json())
    assert data["status"] == "fail" and data["rows"] == 7043 and data["reference_cycle"] == "c1"
    assert {c["name"] for c in data["checks"]} >= {"drift", "schema", "completeness"}
    md = report.to_markdown()
    assert "**Status: FAIL**" in md and "| drift | FAIL |" in md
    assert md.index("| tenure_months |") < md.index("| gender |")  # PSI table sorted, worst first


def test_gate_records_its_duration(frame):
    # Its speed is logged with every cycle ("dq gate ... duration_s=") and not asserted here.
    report = gate(frame, reference=frame)
    assert math.isfinite(report.duration_s) and report.duration_s > 0.0


def test_quality_config_from_settings():
    from plumbing.settings import Settings

    cfg = QualityConfig.from_settings(
        Settings.from_env({"CHURN_DQ_MAX_SOURCE_AGE_H": "0", "CHURN_DQ_FRESHNESS_FAIL": "true"})
    )
    assert cfg.max_source_age_h is None and cfg.freshness_fail
    assert QualityConfig.from_settings(Settings()).max_source_age_h == 48.0
    assert quality.QualityConfig().psi_fail == 0.25
