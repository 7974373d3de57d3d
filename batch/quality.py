"""The data-quality gate: checks a cycle's typed frame before anything is trained.

Checks, in order: freshness (source age), schema (ingestion's verdict), completeness
(null or blank share per column), target health (regression target positive and
sane; churn class balance) and drift against the previous training set (PSI per
feature). Each check ends ``pass``, ``warn`` or ``fail``; any ``fail`` stops the
cycle with :class:`~batch.quality_report.DataQualityError` before training. The report
(:mod:`batch.quality_report`) goes to S3 and to the cycle's MLflow run.

PSI and the reference bins (quantile edges of numeric features, categories plus an
"unseen" bin, epsilon) are :mod:`scratch_models.drift`'s, shared with the worker's drift
monitor; the reference here is the last accepted training set's raw typed frame.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from batch.quality_report import (
    FAIL,
    PASS,
    WARN,
    CheckResult,
    DataQualityError,
    DataQualityReport,
    load_reference,
    log_findings,
    log_report,
    save_reference,
    write_report,
)
from schemas.profiles import DatasetProfile
from scratch_models.drift import PSI_EPSILON, FeatureReference

logger = logging.getLogger(__name__)

_NUMERIC_KINDS = ("int", "float")

__all__ = ["CheckResult", "DataQualityError", "DataQualityReport", "QualityConfig", "gate", "run_gate"]


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the gate.

    Attributes
    ----------
    max_source_age_h : float or None, default 48.0
        Freshness: a source older than this is stale; None skips the check.
    freshness_fail : bool, default False
        Whether a stale source fails the gate; by default it only warns (the shipped
        Telco file is static and would otherwise never pass).
    max_null_share : float, default 0.05
        Completeness: largest share of null or blank values per column.
    max_nonpositive_share : float, default 0.01
        Regression target: largest share of values <= 0 (Telco: 11 of 7,043 are 0.0,
        tenure-0 customers not billed yet).
    max_median_multiple : float, default 200.0
        Regression target: its maximum may be at most this multiple of its median. Customer
        value is heavy-tailed (the synthetic retail set reaches ~90x); the check is there to
        catch unit errors and corrupt values (cents read as dollars, sentinels like 9999999).
    min_minority_share : float, default 0.1
        Class balance: a minority class share below this is a warning (one class only fails).
    psi_bins : int, default 10
        Quantile bins of a numeric feature, edges from the reference.
    psi_eps : float, default 1e-4
        Smallest bin share, so an empty bin gives a large but finite PSI.
    psi_warn, psi_fail : float, default 0.1, 0.25
    """

    max_source_age_h: float | None = 48.0
    freshness_fail: bool = False
    max_null_share: float = 0.05
    max_nonpositive_share: float = 0.01
    max_median_multiple: float = 200.0
    min_minority_share: float = 0.1
    psi_bins: int = 10
    psi_eps: float = PSI_EPSILON
    psi_warn: float = 0.1
    psi_fail: float = 0.25

    @classmethod
    def from_settings(cls, settings) -> QualityConfig:
        """The thresholds that settings carry (``CHURN_DQ_*``), defaults for the rest."""
        age = getattr(settings, "dq_max_source_age_h", 48)
        return cls(
            max_source_age_h=None if age is None or int(age) <= 0 else float(age),
            freshness_fail=bool(getattr(settings, "dq_freshness_fail", False)),
        )


# -------------------------------------------------------------------- checks
def check_freshness(source_time: datetime | None, config: QualityConfig, now: datetime | None = None) -> CheckResult:
    """Age of the source (file mtime or newest object) against ``config.max_source_age_h``."""
    if source_time is None or config.max_source_age_h is None:
        return CheckResult("freshness", PASS, "not checked (no source time or no maximum age configured)")
    now = now or datetime.now(UTC)
    age_h = (now - source_time).total_seconds() / 3600.0
    details = {"source_time": source_time.isoformat(), "age_h": round(age_h, 3), "max_age_h": config.max_source_age_h}
    if age_h <= config.max_source_age_h:
        return CheckResult(
            "freshness", PASS, f"source is {age_h:.1f} h old (max {config.max_source_age_h:g} h)", details
        )
    status = FAIL if config.freshness_fail else WARN
    return CheckResult(
        "freshness", status, f"source is {age_h:.1f} h old, older than max {config.max_source_age_h:g} h", details
    )


def check_completeness(frame: pd.DataFrame, config: QualityConfig) -> CheckResult:
    """Null or blank share per column against ``config.max_null_share``."""
    shares: dict[str, float] = {}
    for name in frame.columns:
        col = frame[name]
        missing = col.isna()
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            missing |= col.astype(str).str.strip().eq("")
        shares[name] = float(missing.mean()) if len(col) else 1.0
    bad = {k: v for k, v in shares.items() if v > config.max_null_share}
    worst = max(shares, key=lambda k: shares[k]) if shares else None
    details = {"null_share": {k: round(v, 6) for k, v in shares.items()}, "max_null_share": config.max_null_share}
    if bad:
        listed = ", ".join(f"{k}={v:.3f}" for k, v in sorted(bad.items(), key=lambda kv: -kv[1]))
        return CheckResult("completeness", FAIL, f"null/blank share above {config.max_null_share:g}: {listed}", details)
    msg = (
        "no nulls or blanks"
        if not worst or shares[worst] == 0
        else f"largest null/blank share {worst}={shares[worst]:.4f} (max {config.max_null_share:g})"
    )
    return CheckResult("completeness", PASS, msg, details)


def check_regression_target(frame: pd.DataFrame, profile: DatasetProfile, config: QualityConfig) -> CheckResult:
    """Regression target positive and sane: share <= 0, negatives, max against a multiple of the median."""
    name = profile.regression_target
    y = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    y = y[np.isfinite(y)]
    if len(y) == 0:
        return CheckResult("target_regression", FAIL, f"{name}: no finite values")
    nonpos = float(np.mean(y <= 0))
    negatives = int(np.sum(y < 0))
    median, top = float(np.median(y)), float(np.max(y))
    ratio = top / median if median > 0 else float("inf")
    details = {
        "column": name,
        "nonpositive_share": round(nonpos, 6),
        "negatives": negatives,
        "median": median,
        "max": top,
        "max_over_median": round(ratio, 3),
        "max_nonpositive_share": config.max_nonpositive_share,
        "max_median_multiple": config.max_median_multiple,
    }
    problems = []
    if negatives:
        problems.append(f"{negatives} negative value(s)")
    if nonpos > config.max_nonpositive_share:
        problems.append(f"share <= 0 is {nonpos:.4f} > {config.max_nonpositive_share:g}")
    if ratio > config.max_median_multiple:
        problems.append(f"max {top:.2f} is {ratio:.1f} x the median {median:.2f} > {config.max_median_multiple:g} x")
    if problems:
        return CheckResult("target_regression", FAIL, f"{name}: " + "; ".join(problems), details)
    return CheckResult("target_regression", PASS, f"{name}: share <= 0 {nonpos:.4f}, max/median {ratio:.2f}", details)


def check_class_balance(frame: pd.DataFrame, profile: DatasetProfile, config: QualityConfig) -> CheckResult:
    """Churn label shares; a WARNING below ``config.min_minority_share``, a failure with one class only."""
    name = profile.classification_target
    y = frame[name].to_numpy().astype(np.int64)
    positive = float(np.mean(y == 1)) if len(y) else 0.0
    minority = min(positive, 1.0 - positive)
    details = {
        "column": name,
        "positive_share": round(positive, 6),
        "minority_share": round(minority, 6),
        "min_minority_share": config.min_minority_share,
    }
    if minority == 0.0:
        return CheckResult("class_balance", FAIL, f"{name}: one class only (positive share {positive:.4f})", details)
    if minority < config.min_minority_share:
        return CheckResult(
            "class_balance", WARN, f"{name}: minority share {minority:.4f} below {config.min_minority_share:g}", details
        )
    return CheckResult("class_balance", PASS, f"{name}: positive share {positive:.4f}", details)


def check_drift(
    frame: pd.DataFrame,
    reference: pd.DataFrame | None,
    profile: DatasetProfile,
    config: QualityConfig,
    reference_cycle: str | None = None,
) -> CheckResult:
    """PSI per feature (and the churn label) against the previous training set."""
    if reference is None:
        return CheckResult("drift", PASS, "not checked (no previous training set)")
    columns = [
        c for c in (*profile.features, profile.classification_target) if c in frame.columns and c in reference.columns
    ]
    psi: dict[str, dict[str, Any]] = {}
    for name in columns:
        kind = "numeric" if profile.source_types.get(name) in _NUMERIC_KINDS else "categorical"
        if kind == "numeric":
            ref = FeatureReference.numeric_from_values(name, reference[name].to_numpy(), config.psi_bins)
        else:
            ref = FeatureReference.categorical_from_values(name, reference[name].to_numpy())
        value = ref.psi(frame[name].to_numpy(), config.psi_eps)
        status = FAIL if value >= config.psi_fail else WARN if value >= config.psi_warn else PASS
        psi[name] = {"psi": round(value, 6), "kind": kind, "status": status}
    details = {
        "reference_cycle": reference_cycle,
        "reference_rows": len(reference),
        "psi": psi,
        "psi_warn": config.psi_warn,
        "psi_fail": config.psi_fail,
    }
    failed = {k: v["psi"] for k, v in psi.items() if v["status"] == FAIL}
    warned = {k: v["psi"] for k, v in psi.items() if v["status"] == WARN}
    if failed:
        listed = ", ".join(f"{k}={v:.3f}" for k, v in sorted(failed.items(), key=lambda kv: -kv[1]))
        return CheckResult("drift", FAIL, f"PSI >= {config.psi_fail:g} vs cycle {reference_cycle}: {listed}", details)
    if warned:
        listed = ", ".join(f"{k}={v:.3f}" for k, v in sorted(warned.items(), key=lambda kv: -kv[1]))
        return CheckResult("drift", WARN, f"PSI >= {config.psi_warn:g} vs cycle {reference_cycle}: {listed}", details)
    top = max(psi, key=lambda k: psi[k]["psi"]) if psi else None
    msg = f"largest PSI {top}={psi[top]['psi']:.4f} vs cycle {reference_cycle}" if top else "no common features"
    return CheckResult("drift", PASS, msg, details)


def run_gate(
    frame: pd.DataFrame | None,
    profile: DatasetProfile,
    *,
    cycle_id: str,
    source: str,
    config: QualityConfig | None = None,
    source_time: datetime | None = None,
    reference: pd.DataFrame | None = None,
    reference_cycle: str | None = None,
    schema_error: Exception | None = None,
) -> DataQualityReport:
    """Run every check on a cycle's typed frame (no I/O).

    Parameters
    ----------
    frame : DataFrame or None
        The typed frame from :func:`batch.ingest.read_source_csv`; None when ingestion failed.
    profile : DatasetProfile
    cycle_id, source : str
    config : QualityConfig, optional
    source_time : datetime, optional
        UTC modification time of the source (file mtime, newest object).
    reference : DataFrame, optional
        The previous training set's typed frame (drift reference).
    reference_cycle : str, optional
    schema_error : Exception, optional
        Ingestion's error; the schema check fails with its message and nothing else is checked.

    Returns
    -------
    DataQualityReport
    """
    config = config or QualityConfig()
    t0 = time.perf_counter()
    report = DataQualityReport(
        profile.name, cycle_id, source, rows=0 if frame is None else len(frame), reference_cycle=reference_cycle
    )
    report.checks.append(check_freshness(source_time, config))
    if schema_error is not None or frame is None:
        report.checks.append(
            CheckResult("schema", FAIL, str(schema_error or "no frame"), {"error": type(schema_error).__name__})
        )
    else:
        report.checks.append(
            CheckResult(
                "schema",
                PASS,
                f"{len(frame.columns)} columns typed as the {profile.name} profile",
                {"columns": list(frame.columns)},
            )
        )
        report.checks.append(check_completeness(frame, config))
        if profile.regression_target is not None:  # no value target: no regressor, nothing to check
            report.checks.append(check_regression_target(frame, profile, config))
        report.checks.append(check_class_balance(frame, profile, config))
        report.checks.append(check_drift(frame, reference, profile, config, reference_cycle))
    report.duration_s = time.perf_counter() - t0
    return report


# ----------------------------------------------------------------------- gate
def gate(
    storage,
    tracker,
    run_id: str,
    frame: pd.DataFrame | None,
    profile: DatasetProfile,
    *,
    cycle_id: str,
    source: str,
    config: QualityConfig | None = None,
    source_time: datetime | None = None,
    schema_error: Exception | None = None,
    raw_key: str | None = None,
) -> DataQualityReport:
    """Run the gate for one cycle, publish its report, and stop the cycle on failure.

    The drift reference is the last cycle that passed; when this one passes too and
    ``raw_key`` (its typed frame in ``raw-data``) is given, it becomes the next reference.

    Parameters
    ----------
    storage : minio.Minio
    tracker : mlflow.MlflowClient
    run_id : str
        The cycle's parent MLflow run.
    frame, profile, cycle_id, source, config, source_time, schema_error
        As in :func:`run_gate`.
    raw_key : str, optional
        Key of this cycle's typed frame in the ``raw-data`` bucket.

    Returns
    -------
    DataQualityReport
        When no check failed.

    Raises
    ------
    DataQualityError
        When a check failed; the report is already in S3 and MLflow.
    """
    ref_cycle, reference = (None, None) if frame is None else load_reference(storage, profile.name)
    report = run_gate(
        frame,
        profile,
        cycle_id=cycle_id,
        source=source,
        config=config,
        source_time=source_time,
        reference=reference,
        reference_cycle=ref_cycle,
        schema_error=schema_error,
    )
    log_findings(report)
    uris = write_report(storage, report)
    log_report(tracker, run_id, report)
    logger.info("dq report cycle_id=%s json=%s md=%s", cycle_id, uris["json"], uris["md"])
    if not report.passed:
        raise DataQualityError(report) from schema_error
    if raw_key is not None:
        save_reference(storage, profile.name, cycle_id, "raw-data", raw_key)
    return report
