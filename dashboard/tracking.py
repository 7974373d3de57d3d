"""Read-only MLflow views for the dashboard: latest cycle leaderboard, champion curves, versions, DQ report.

Every read goes through :class:`ModelsReader`, which caches each answer for a few
seconds so a page refresh every 10 s by any number of browsers costs the tracking
server a handful of calls. Nothing here writes to MLflow; artifacts are downloaded
into a temporary directory and parsed.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.namespace import DEFAULT_DATASET, Namespace
from schemas.registry import (
    CHAMPION,
    CONFUSION_MATRIX_PATH,
    DQ_REPORT_PATH,
    PR_CURVE_PATH,
    ROC_CURVE_PATH,
)

logger = logging.getLogger(__name__)

#: Metrics shown on the leaderboard, in this column order (absent ones stay blank).
LEADERBOARD_METRICS = (
    "roc_auc",
    "f1",
    "f1_tuned",
    "accuracy",
    "precision",
    "recall",
    "threshold",
    "r2",
    "rmse",
    "mae",
    "mape",
    "fit_s",
)


def _candidates(path: str, *folders: str) -> tuple[str, ...]:
    """``path`` where batch logs it, then its file name at the run's root and in each of ``folders``."""
    name = Path(path).name
    return tuple(dict.fromkeys((path, name, *(f"{folder}/{name}" for folder in folders))))


#: The data-quality gate's report on the cycle run: where ``batch.quality`` logs it first,
#: then the other folders the dashboard has always accepted.
DQ_REPORT_CANDIDATES = _candidates(DQ_REPORT_PATH, "dq", "data_quality")
#: Optional evaluation artifacts of a classifier run (JSON); drawn when present, never computed here.
CURVE_ARTIFACTS = {
    "roc": _candidates(ROC_CURVE_PATH),
    "pr": _candidates(PR_CURVE_PATH),
    "confusion": _candidates(CONFUSION_MATRIX_PATH),
}


def _ms_to_iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: Run states after which a run's metrics and artifacts no longer change.
TERMINAL_RUN_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})


class _TTLCache:
    """``key -> (expires, value)`` under one lock; at most ``max_items`` entries, oldest dropped first.

    An entry stored with ``ttl_s=math.inf`` never expires: it is for answers that cannot
    change once read (a finished run's metrics, a registered version's artifacts), so
    the dashboard downloads them once instead of on every refresh.
    """

    def __init__(self, ttl_s: float, max_items: int = 64) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._lock = threading.Lock()
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, compute: Callable[[], Any], ttl_s: float | None = None) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = compute()
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (now + (self.ttl_s if ttl_s is None else ttl_s), value)
            while len(self._items) > self.max_items:
                del self._items[next(iter(self._items))]
        return value


class ModelsReader:
    """Cached, read-only queries of the MLflow tracking server and registry.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    dataset : str, default "telco"
        A profile's name: experiment ``churn-<dataset>`` and the registered model names of
        its namespace (:meth:`schemas.namespace.Namespace.registered_models`).
    ttl_s : float, default 5.0
        Seconds an answer is reused.

    Attributes
    ----------
    classifier_name : str
        The data set's registered churn classifier (``churn-classifier``, ``retail-churn-classifier``).
    """

    def __init__(self, tracker, dataset: str = DEFAULT_DATASET, ttl_s: float = 5.0) -> None:
        self.tracker = tracker
        self.experiment = f"churn-{dataset}"
        self.registered_models = Namespace.for_dataset(dataset).registered_models()
        self.classifier_name = self.registered_models[0]
        self._cache = _TTLCache(ttl_s)

    # ------------------------------------------------------------- cycle
    def latest_cycle(self) -> dict[str, Any] | None:
        """The newest ``cycle-*`` parent run: ``run_id``, ``name``, ``status``, ``started``, ``ended``; None if none."""
        return self._cache.get("latest_cycle", self._latest_cycle)

    def _latest_cycle(self) -> dict[str, Any] | None:
        exp = self.tracker.get_experiment_by_name(self.experiment)
        if exp is None:
            return None
        runs = self.tracker.search_runs(
            [exp.experiment_id],
            filter_string="attributes.run_name LIKE 'cycle-%'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            return None
        r = runs[0]
        return {
            "run_id": r.info.run_id,
            "experiment_id": exp.experiment_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "started": _ms_to_iso(r.info.start_time),
            "ended": _ms_to_iso(r.info.end_time),
        }

    def aliases(self) -> dict[str, dict[str, str]]:
        """``{registered name: {alias: version}}`` for every registered model that exists."""
        return self._cache.get("aliases", self._aliases)

    def _aliases(self) -> dict[str, dict[str, str]]:
        from mlflow.exceptions import MlflowException

        out = {}
        for name in self.registered_models:
            try:
                rm = self.tracker.get_registered_model(name)
            except MlflowException:
                continue
            out[name] = {a: str(v) for a, v in (rm.aliases or {}).items()}
        return out

    def versions(self) -> list[dict[str, Any]]:
        """Every registered version of every model, newest first, with its aliases and registration time."""
        return self._cache.get("versions", self._versions)

    def _versions(self) -> list[dict[str, Any]]:
        aliases = self.aliases()
        rows = []
        for name in aliases:
            by_version: dict[str, list[str]] = {}
            for alias, v in aliases[name].items():
                by_version.setdefault(v, []).append(alias)
            for mv in self.tracker.search_model_versions(f"name='{name}'", max_results=1000):
                tags = mv.tags or {}
                metric = next(((k, tags[k]) for k in ("roc_auc", "r2") if k in tags), (None, None))
                rows.append(
                    {
                        "registered_model": name,
                        "version": int(mv.version),
                        "model": tags.get("model"),
                        "aliases": ", ".join(sorted(by_version.get(str(mv.version), []))),
                        "metric": metric[0],
                        "value": float(metric[1]) if metric[1] is not None else None,
                        "registered_at": _ms_to_iso(mv.creation_timestamp),
                        "updated_at": _ms_to_iso(mv.last_updated_timestamp),
                        "run_id": mv.run_id,
                    }
                )
        rows.sort(key=lambda r: (r["registered_at"] or "", r["version"]), reverse=True)
        return rows

    def leaderboard(self) -> list[dict[str, Any]]:
        """Every nested run (one model) of the latest cycle with its metrics and the alias its version holds.

        A finished cycle's runs are read once and kept (keyed by cycle and aliases);
        a running cycle's are read again after the cache's ``ttl_s``.
        """
        cycle = self.latest_cycle()
        if cycle is None:
            return []
        held = tuple(sorted((r["run_id"], r["aliases"], r["version"]) for r in self.versions() if r["aliases"]))
        done = cycle["status"] in TERMINAL_RUN_STATES
        return self._cache.get(
            ("leaderboard", cycle["run_id"], cycle["status"], held),
            lambda: self._leaderboard(cycle),
            ttl_s=math.inf if done else None,
        )

    def _leaderboard(self, cycle: dict[str, Any]) -> list[dict[str, Any]]:
        runs = self.tracker.search_runs(
            [cycle["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{cycle['run_id']}'", max_results=500
        )
        held: dict[str, tuple[str, int]] = {}  # run_id -> (aliases of its registered version, version)
        for row in self.versions():
            if row["aliases"]:
                held[row["run_id"]] = (row["aliases"], row["version"])
        rows = []
        for r in runs:
            tags = r.data.tags
            alias, version = held.get(r.info.run_id, ("", None))
            row = {
                "model": tags.get("model", r.info.run_name),
                "task": tags.get("task", ""),
                "alias": alias,
                "version": version,
                "run_id": r.info.run_id,
            }
            row.update({k: round(float(r.data.metrics[k]), 5) for k in LEADERBOARD_METRICS if k in r.data.metrics})
            rows.append(row)
        key = {"classification": "roc_auc", "regression": "r2"}
        rows.sort(key=lambda x: (x["task"], -(x.get(key.get(x["task"], ""), float("-inf")) or 0)))
        return rows

    # --------------------------------------------------------- artifacts
    def _read_json_artifact(self, run_id: str, candidates: tuple[str, ...]) -> Any | None:
        """The first of ``candidates`` that the run logged, parsed; None when none is there."""
        names: set[str] = set()
        for folder in {str(Path(c).parent) for c in candidates}:
            try:
                listed = self.tracker.list_artifacts(run_id, None if folder == "." else folder)
            except Exception as exc:  # noqa: BLE001 - a missing folder or unreachable store reads as "not logged"
                logger.debug("list_artifacts run_id=%s folder=%s error=%s", run_id, folder, exc)
                continue
            names.update(f.path for f in listed)
        for path in candidates:
            if path in names:
                with tempfile.TemporaryDirectory() as tmp:
                    local = self.tracker.download_artifacts(run_id, path, tmp)
                    return json.loads(Path(local).read_text())
        return None

    def champion_evaluation(self) -> dict[str, Any]:
        """The classifier's champion: version, model, metrics and any logged ROC/PR/confusion artifacts.

        Read once per champion version: a registered version's run and artifacts do not change.
        """
        version = self.aliases().get(self.classifier_name, {}).get(CHAMPION)
        if version is None:
            return {}
        return self._cache.get(
            ("champion_evaluation", version), lambda: self._champion_evaluation(version), ttl_s=math.inf
        )

    def _champion_evaluation(self, version: str) -> dict[str, Any]:
        mv = self.tracker.get_model_version(self.classifier_name, version)
        run = self.tracker.get_run(mv.run_id)
        out: dict[str, Any] = {
            "version": version,
            "model": (mv.tags or {}).get("model"),
            "run_id": mv.run_id,
            "metrics": dict(run.data.metrics),
        }
        for kind, candidates in CURVE_ARTIFACTS.items():
            out[kind] = self._read_json_artifact(mv.run_id, candidates)
        return out

    def dq_report(self) -> dict[str, Any] | None:
        """The latest cycle's ``dq_report.json``, None when the cycle has none.

        Read once per finished cycle; a running cycle's is read again after ``ttl_s``.
        """
        cycle = self.latest_cycle()
        if cycle is None:
            return None
        done = cycle["status"] in TERMINAL_RUN_STATES
        return self._cache.get(
            ("dq_report", cycle["run_id"], cycle["status"]),
            lambda: self._dq_report(cycle),
            ttl_s=math.inf if done else None,
        )

    def _dq_report(self, cycle: dict[str, Any]) -> dict[str, Any] | None:
        report = self._read_json_artifact(cycle["run_id"], DQ_REPORT_CANDIDATES)
        return report if isinstance(report, dict) else None


def psi_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-feature PSI rows ``{feature, kind, psi, status, warn_at, fail_at}`` from a DQ report, highest PSI first.

    The gate (``batch.quality``) puts them in its ``drift`` check:
    ``checks[name="drift"].details = {"psi": {feature: {"psi", "kind", "status"}}, "psi_warn", "psi_fail"}``.
    A top-level ``psi`` mapping (``{feature: value}`` or ``{feature: {"psi": ...}}``) is read the same way.
    """
    details: dict[str, Any] = {}
    for check in report.get("checks") or []:
        if isinstance(check, dict) and check.get("name") == "drift" and isinstance(check.get("details"), dict):
            details = check["details"]
            break
    if not isinstance(details.get("psi"), dict) and isinstance(report.get("psi"), dict):
        details = report
    psi = details.get("psi")
    if not isinstance(psi, dict):
        return []
    warn_at, fail_at = details.get("psi_warn"), details.get("psi_fail")
    rows: list[dict[str, Any]] = []
    for feature, v in psi.items():
        value = v.get("psi") if isinstance(v, dict) else v
        if not isinstance(value, (int, float)):
            continue
        status = v.get("status") if isinstance(v, dict) else None
        if status is None and isinstance(fail_at, (int, float)) and isinstance(warn_at, (int, float)):
            status = "fail" if value >= fail_at else "warn" if value >= warn_at else "pass"
        rows.append(
            {
                "feature": str(feature),
                "kind": v.get("kind", "") if isinstance(v, dict) else "",
                "psi": round(float(value), 4),
                "status": str(status or ""),
                "warn_at": warn_at,
                "fail_at": fail_at,
            }
        )
    rows.sort(key=lambda r: -r["psi"])
    return rows
