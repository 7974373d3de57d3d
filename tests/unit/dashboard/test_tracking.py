"""Reading the data-quality gate's report: PSI rows with thresholds, whatever the nesting."""

from __future__ import annotations

from dashboard.tracking import psi_rows


def test_psi_rows_from_the_gates_drift_check():
    report = {"status": "warn", "checks": [
        {"name": "schema", "status": "pass", "message": "ok", "details": {}},
        {"name": "drift", "status": "warn", "message": "PSI >= 0.1",
         "details": {"psi": {"tenure_months": {"psi": 0.12, "kind": "numeric", "status": "warn"},
                             "contract": {"psi": 0.31, "kind": "categorical", "status": "fail"},
                             "gender": {"psi": 0.0, "kind": "categorical", "status": "pass"}},
                     "psi_warn": 0.1, "psi_fail": 0.25}}]}
    rows = psi_rows(report)
    assert [r["feature"] for r in rows] == ["contract", "tenure_months", "gender"]  # highest PSI first
    assert rows[0] == {"feature": "contract", "kind": "categorical", "psi": 0.31, "status": "fail",
                       "warn_at": 0.1, "fail_at": 0.25}


def test_psi_rows_from_a_flat_mapping_derive_the_status_from_thresholds():
    rows = psi_rows({"psi": {"a": 0.3, "b": 0.15, "c": 0.01, "d": "n/a"}, "psi_warn": 0.1, "psi_fail": 0.25})
    assert {r["feature"]: r["status"] for r in rows} == {"a": "fail", "b": "warn", "c": "pass"}


def test_no_psi_in_the_report_gives_no_rows():
    assert psi_rows({"status": "pass", "checks": [{"name": "drift", "status": "pass", "details": {}}]}) == []
    assert psi_rows({}) == []
