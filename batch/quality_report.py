"""The data-quality report and where it lives: its model, JSON and Markdown forms, S3 and MLflow I/O.

:mod:`batch.quality` runs the checks and fills a :class:`DataQualityReport`; this
module holds the report itself, writes it to S3
(``processed-data/<dataset>/<cycle_id>/dq_report.json|.md``) and to the cycle's MLflow
run, and keeps the pointer to the drift reference (the raw typed frame of the last
cycle that passed the gate, ``processed-data/<dataset>/dq_reference.json``).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from schemas.registry import DQ_REPORT_MARKDOWN_PATH, DQ_REPORT_PATH

logger = logging.getLogger(__name__)

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}
#: Pointer to the raw typed frame of the last cycle that passed the gate (the drift reference).
REFERENCE_KEY = "{dataset}/dq_reference.json"
REPORT_KEY = "{dataset}/{cycle_id}/dq_report"


class DataQualityError(ValueError):
    """The data-quality gate failed; nothing was trained.

    Attributes
    ----------
    report : DataQualityReport
    """

    def __init__(self, report: DataQualityReport) -> None:
        self.report = report
        super().__init__(report.failure_message())


@dataclass
class CheckResult:
    """One check's verdict: ``name``, ``status`` (pass/warn/fail), a one-line ``message`` and ``details``."""

    name: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataQualityReport:
    """Every check of one cycle's gate.

    Attributes
    ----------
    dataset, cycle_id, source : str
    rows : int
    checks : list of CheckResult
    reference_cycle : str or None
        The cycle whose data the drift check compared against.
    created_at : str
        UTC ISO-8601.
    duration_s : float
    """

    dataset: str
    cycle_id: str
    source: str
    rows: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    reference_cycle: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    duration_s: float = 0.0

    @property
    def status(self) -> str:
        """The worst status of any check (``pass`` when there are none)."""
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=PASS)

    @property
    def passed(self) -> bool:
        """No check failed (warnings allowed)."""
        return self.status != FAIL

    def check(self, name: str) -> CheckResult:
        """The check called ``name``."""
        return next(c for c in self.checks if c.name == name)

    def failure_message(self) -> str:
        """Which checks failed, with their numbers."""
        failed = [c for c in self.checks if c.status == FAIL]
        body = "; ".join(f"{c.name}: {c.message}" for c in failed) or "no failed check"
        return f"data-quality gate failed for {self.dataset} cycle {self.cycle_id}: {body}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``status`` included)."""
        out = asdict(self)
        out["status"] = self.status
        return out

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default)

    def to_markdown(self) -> str:
        """The report as Markdown: one table of checks, then PSI per feature."""
        lines = [
            f"# Data-quality report: {self.dataset} cycle {self.cycle_id}",
            "",
            f"**Status: {self.status.upper()}**  ",
            f"source `{self.source}`, {self.rows} rows, checked in {self.duration_s:.2f} s at {self.created_at}",
            "",
            "| check | status | finding |",
            "|---|---|---|",
        ]
        for c in self.checks:
            lines.append(f"| {c.name} | {c.status.upper()} | {c.message.replace('|', '/')} |")
        psi = next((c for c in self.checks if c.name == "drift"), None)
        if psi and psi.details.get("psi"):
            lines += [
                "",
                f"## PSI per feature (reference cycle {self.reference_cycle})",
                "",
                "| feature | kind | PSI | status |",
                "|---|---|---|---|",
            ]
            for name, row in sorted(psi.details["psi"].items(), key=lambda kv: -kv[1]["psi"]):
                lines.append(f"| {name} | {row['kind']} | {row['psi']:.4f} | {row['status'].upper()} |")
        return "\n".join(lines) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# ------------------------------------------------------------------ storage
def load_reference(storage, dataset: str) -> tuple[str | None, pd.DataFrame | None]:
    """The previous training set: the raw typed frame of the last cycle that passed the gate.

    Returns
    -------
    (cycle_id, frame), or (None, None) when no cycle has passed yet.
    """
    import pyarrow.parquet as pq
    from minio.error import S3Error

    try:
        resp = storage.get_object("processed-data", REFERENCE_KEY.format(dataset=dataset))
        try:
            pointer = json.loads(resp.read())
        finally:
            resp.close()
            resp.release_conn()
    except S3Error as err:
        if err.code == "NoSuchKey":
            return None, None
        raise
    resp = storage.get_object(pointer["bucket"], pointer["key"])
    try:
        frame = pq.read_table(io.BytesIO(resp.read())).to_pandas()
    finally:
        resp.close()
        resp.release_conn()
    return pointer["cycle_id"], frame


def save_reference(storage, dataset: str, cycle_id: str, bucket: str, key: str) -> None:
    """Point the drift reference at this cycle's raw typed frame (after its gate passed)."""
    body = json.dumps({"cycle_id": cycle_id, "bucket": bucket, "key": key}).encode()
    storage.put_object(
        "processed-data",
        REFERENCE_KEY.format(dataset=dataset),
        io.BytesIO(body),
        len(body),
        content_type="application/json",
    )


def write_report(storage, report: DataQualityReport) -> dict[str, str]:
    """Put ``dq_report.json`` and ``dq_report.md`` under ``processed-data/<dataset>/<cycle_id>/``.

    Returns
    -------
    dict
        ``json`` and ``md`` S3 URIs.
    """
    base = REPORT_KEY.format(dataset=report.dataset, cycle_id=report.cycle_id)
    uris = {}
    for ext, text, ctype in (
        ("json", report.to_json(), "application/json"),
        ("md", report.to_markdown(), "text/markdown"),
    ):
        body = text.encode()
        storage.put_object("processed-data", f"{base}.{ext}", io.BytesIO(body), len(body), content_type=ctype)
        uris[ext] = f"s3://processed-data/{base}.{ext}"
    return uris


def log_report(tracker, run_id: str, report: DataQualityReport) -> None:
    """Attach the report to the cycle's MLflow run (``dq_report.json``, ``dq_report.md``, ``dq_status`` tag)."""
    tracker.log_dict(run_id, report.to_dict(), DQ_REPORT_PATH)
    tracker.log_text(run_id, report.to_markdown(), DQ_REPORT_MARKDOWN_PATH)
    tracker.set_tag(run_id, "dq_status", report.status)
    drift = next((c for c in report.checks if c.name == "drift"), None)
    if drift is not None and drift.details.get("psi"):
        tracker.log_metric(run_id, "dq_max_psi", max(v["psi"] for v in drift.details["psi"].values()))


def log_findings(report: DataQualityReport) -> None:
    """One log line per check that did not pass, and a summary line."""
    for c in report.checks:
        if c.status == FAIL:
            logger.error("dq check=%s status=fail cycle_id=%s %s", c.name, report.cycle_id, c.message)
        elif c.status == WARN:
            logger.warning("dq check=%s status=warn cycle_id=%s %s", c.name, report.cycle_id, c.message)
    logger.info(
        "dq gate status=%s cycle_id=%s rows=%d duration_s=%.3f",
        report.status,
        report.cycle_id,
        report.rows,
        report.duration_s,
    )
