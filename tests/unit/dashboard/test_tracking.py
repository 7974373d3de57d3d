"""Reading the data-quality gate's report: PSI rows with thresholds, whatever the nesting."""

from __future__ import annotations

from dashboard.tracking import psi_rows


def test_psi_rows_from_the_gates_drift_check():
    report = {
        "status": "warn",
        "checks": [
            {"name": "schema", "status": "pass", "message": "ok", "details": {}},
            {
                "name": "drift",
                "status": "warn",
                "message": "PSI >= 0.1",
                "details": {
                    "psi": {
                        "tenure_months": {"psi": 0.12, "kind": "numeric", "status": "warn"},
                        "contract": {"psi": 0.31, "kind": "categorical", "status": "fail"},
                        "gender": {"psi": 0.0, "kind": "categorical", "status": "pass"},
                    },
                    "psi_warn": 0.1,
                    "psi_fail": 0.25,
                },
            },
        ],
    }
    rows = psi_rows(report)
    assert [r["feature"] for r in rows] == ["contract", "tenure_months", "gender"]  # highest PSI first
    assert rows[0] == {
        "feature": "contract",
        "kind": "categorical",
        "psi": 0.31,
        "status": "fail",
        "warn_at": 0.1,
        "fail_at": 0.25,
    }


def test_psi_rows_from_a_flat_mapping_derive_the_status_from_thresholds():
    rows = psi_rows({"psi": {"a": 0.3, "b": 0.15, "c": 0.01, "d": "n/a"}, "psi_warn": 0.1, "psi_fail": 0.25})
    assert {r["feature"]: r["status"] for r in rows} == {"a": "fail", "b": "warn", "c": "pass"}


def test_no_psi_in_the_report_gives_no_rows():
    assert psi_rows({"status": "pass", "checks": [{"name": "drift", "status": "pass", "details": {}}]}) == []
    assert psi_rows({}) == []


def test_ttl_cache_reuses_until_expiry_and_keeps_immutable_answers():
    import math

    from dashboard.tracking import _TTLCache

    cache = _TTLCache(ttl_s=0.05, max_items=3)
    calls = []

    def compute(tag):
        def f():
            calls.append(tag)
            return len(calls)

        return f

    assert cache.get("a", compute("a")) == 1
    assert cache.get("a", compute("a")) == 1  # within ttl: no second read
    assert cache.get("done", compute("done"), ttl_s=math.inf) == 2
    import time

    time.sleep(0.06)
    assert cache.get("a", compute("a")) == 3  # expired: read again
    assert cache.get("done", compute("done"), ttl_s=math.inf) == 2  # never expires
    assert calls == ["a", "done", "a"]


def test_ttl_cache_is_bounded_oldest_first():
    import math

    from dashboard.tracking import _TTLCache

    cache = _TTLCache(ttl_s=60, max_items=3)
    for k in range(5):
        cache.get(k, lambda k=k: k * 10, ttl_s=math.inf)
    assert list(cache._items) == [2, 3, 4]
    assert cache.get(0, lambda: "recomputed") == "recomputed"  # evicted entries are read again


def test_artifacts_are_looked_up_where_batch_logs_them_first():
    from dashboard.tracking import CURVE_ARTIFACTS, DQ_REPORT_CANDIDATES
    from schemas.registry import CONFUSION_MATRIX_PATH, DQ_REPORT_PATH, PR_CURVE_PATH, ROC_CURVE_PATH

    assert DQ_REPORT_CANDIDATES == (DQ_REPORT_PATH, f"dq/{DQ_REPORT_PATH}", f"data_quality/{DQ_REPORT_PATH}")
    assert {kind: paths[0] for kind, paths in CURVE_ARTIFACTS.items()} == {
        "roc": ROC_CURVE_PATH,
        "pr": PR_CURVE_PATH,
        "confusion": CONFUSION_MATRIX_PATH,
    }
    assert CURVE_ARTIFACTS["roc"] == (ROC_CURVE_PATH, "roc_curve.json")
