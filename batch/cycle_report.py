"""What a cycle did: :class:`CycleResult`, its JSON summary and the Markdown comparison of the models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batch import quality
from batch.cycle_input import UNCHANGED_INPUT
from batch.training import TrainedModel

#: The summary's word for a dataset whose profile names no value target (no regressor trained).
NO_VALUE_TARGET = "no value target"


@dataclass
class CycleResult:
    """What one cycle did.

    Attributes
    ----------
    cycle_id : str
    dataset : str
        The profile's name.
    rows : int
    models : list of TrainedModel
    registered : dict
        The classifier version promoted this cycle (``model_version``, ``alias``
        ``champion`` or ``challenger``, ``artifact_uri``, ``sha256``, metrics).
    promoted : dict of str to dict
        The same per registered model name (``churn-classifier``, ``sales-regressor``;
        ``<dataset>-churn-classifier`` ... for datasets other than telco).
    report : str
        Markdown comparison of every model's hold-out metrics.
    announced : bool
        Whether a model-updated event was published.
    quality : batch.quality.DataQualityReport or None
        The data-quality gate's report.
    timings_s : dict of str to float
        Seconds per stage.
    input_sha256 : str
        SHA-256 of the typed input; it names the cycle's data objects in S3.
    unchanged_since : str or None
        Set when nothing was trained because the input (and model set) equals the last
        accepted cycle's: that cycle's id.
    raw_uri, processed_uri : str
        The raw typed frame and the processed training set in S3 (empty when unchanged).
    contract_sha256 : str
        The profile's digest, recorded with every registered version.
    value_target : str or None
        The profile's value target; None: no regressor was trained.
    """

    cycle_id: str
    dataset: str
    rows: int
    models: list[TrainedModel] = field(default_factory=list)
    registered: dict[str, Any] = field(default_factory=dict)
    promoted: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: str = ""
    announced: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    quality: quality.DataQualityReport | None = None
    input_sha256: str = ""
    unchanged_since: str | None = None
    raw_uri: str = ""
    processed_uri: str = ""
    contract_sha256: str = ""
    value_target: str | None = None

    @property
    def status(self) -> str:
        """``"trained"``, or ``"unchanged input"`` when the cycle skipped an input it had already trained on."""
        return UNCHANGED_INPUT if self.unchanged_since else "trained"

    def summary(self) -> dict[str, Any]:
        """JSON-able summary for the CLI.

        Returns
        -------
        dict
            ``regression`` is :data:`NO_VALUE_TARGET` when the profile has no value target.
        """
        return {
            "cycle_id": self.cycle_id,
            "status": self.status,
            "unchanged_since": self.unchanged_since,
            "input_sha256": self.input_sha256,
            "dataset": self.dataset,
            "contract_sha256": self.contract_sha256,
            "regression": self.value_target or NO_VALUE_TARGET,
            "rows": self.rows,
            "models": {m.name: {k: round(v, 6) for k, v in m.metrics.items()} for m in self.models},
            "registered": self.registered,
            "promoted": {
                k: {kk: vv for kk, vv in v.items() if kk != "feature_names"} for k, v in self.promoted.items()
            },
            "announced": self.announced,
            "dq_status": self.quality.status if self.quality else None,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
        }


def comparison_report(models: list[TrainedModel], value_target: str | None = "total_charges_usd") -> str:
    """Markdown table of every model's hold-out metrics, best per task first.

    Parameters
    ----------
    models : list of TrainedModel
    value_target : str or None, default "total_charges_usd"
        Named in the regressors' heading; None says no regressor was trained.

    Returns
    -------
    str
    """
    cls = sorted((m for m in models if "roc_auc" in m.metrics), key=lambda m: -m.metrics["roc_auc"])
    reg = sorted((m for m in models if "r2" in m.metrics), key=lambda m: -m.metrics["r2"])
    lines = [
        "## Classifiers (hold-out)",
        "",
        "| model | ROC-AUC | F1 @0.5 | F1 tuned | threshold | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for m in cls:
        x = m.metrics
        lines.append(
            f"| {m.name} | {x['roc_auc']:.4f} | {x['f1']:.4f} | {x['f1_tuned']:.4f} | "
            f"{x['threshold']:.3f} | {x['fit_s']:.2f} |"
        )
    if value_target is None:
        lines += ["", f"No regressor: {NO_VALUE_TARGET} in the profile."]
    else:
        lines += [
            "",
            f"## Regressors of {value_target} (hold-out)",
            "",
            "| model | R^2 | RMSE | MAE | MAPE % | fit s |",
            "|---|---|---|---|---|---|",
        ]
        for m in reg:
            x = m.metrics
            lines.append(
                f"| {m.name} | {x['r2']:.5f} | {x['rmse']:.2f} | {x['mae']:.2f} | {x['mape']:.2f} | {x['fit_s']:.2f} |"
            )
    if cls:
        lines += ["", f"Best classifier: **{cls[0].name}**."]
    if reg:
        lines += [f"Best regressor: **{reg[0].name}**."]
    return "\n".join(lines) + "\n"


#: How the leaderboard and the promotion decision name a task's metric.
METRIC_LABELS = {"roc_auc": "ROC-AUC", "r2": "R²"}


def leaderboard(models: list[TrainedModel], promoted: dict[str, dict[str, Any]] | None = None) -> str:
    """Plain-text table of every model's hold-out figures, best per task first, for a terminal.

    Parameters
    ----------
    models : list of TrainedModel
    promoted : dict of str to dict, optional
        :attr:`CycleResult.promoted`: the registered version of each task's best model is
        named beside it (``champion v12`` or ``challenger v13``).

    Returns
    -------
    str
        Columns model, task, ROC-AUC and F1 (at the tuned threshold) for classifiers, R² and
        RMSE for regressors, fit seconds; no trailing newline. Empty when ``models`` is.
    """
    if not models:
        return ""
    marks = {
        (p["model"], "roc_auc" in p["metrics"]): f"{p['alias']} v{p['model_version']}"
        for p in (promoted or {}).values()
    }
    cls = sorted((m for m in models if "roc_auc" in m.metrics), key=lambda m: -m.metrics["roc_auc"])
    reg = sorted((m for m in models if "r2" in m.metrics), key=lambda m: -m.metrics["r2"])
    rows = [("model", "task", "ROC-AUC", "F1", "R²", "RMSE", "fit s", "")]
    for m in cls:
        x = m.metrics
        rows.append(
            (
                m.name,
                "churn",
                f"{x['roc_auc']:.3f}",
                f"{x['f1_tuned']:.3f}",
                "",
                "",
                f"{x['fit_s']:.2f}",
                marks.get((m.name, True), ""),
            )
        )
    for m in reg:
        x = m.metrics
        rows.append(
            (
                m.name,
                "value",
                "",
                "",
                f"{x['r2']:.4f}",
                f"{x['rmse']:,.1f}",
                f"{x['fit_s']:.2f}",
                marks.get((m.name, False), ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    numeric = {2, 3, 4, 5, 6}
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths[:-1]))
    return "\n".join(lines)


def promotion_decisions(result: CycleResult) -> list[str]:
    """The promotion decision of each registered model in words, one line each.

    Parameters
    ----------
    result : CycleResult

    Returns
    -------
    list of str
        ``"churn-classifier: gradient_boosting v7 promoted to champion: ROC-AUC 0.848 beats
        0.842 (v5) on this hold-out"``, ``"... held as challenger (champion stays v5): tie:
        ..."``, or for an unchanged input ``"unchanged input: same as cycle ...; nothing
        trained or registered (--force to retrain)"``.
    """
    if result.unchanged_since:
        return [
            f"{UNCHANGED_INPUT}: same as cycle {result.unchanged_since}; nothing trained or registered "
            "(--force to retrain)"
        ]
    lines = []
    for name, p in result.promoted.items():
        metric = "roc_auc" if "roc_auc" in p["metrics"] else "r2"
        label, digits = METRIC_LABELS[metric], 3 if metric == "roc_auc" else 4
        score = p["metrics"][metric]
        who = f"{name}: {p['model']} v{p['model_version']}"
        before = p.get(f"champion_{metric}")
        if p["alias"] == "champion":
            if before is None:
                lines.append(f"{who} promoted to champion: {label} {score:.{digits}f} (no champion before)")
            else:
                source = p.get("champion_metric_source", "this hold-out")
                where = "on this hold-out" if source == "this hold-out" else f"({source})"
                lines.append(
                    f"{who} promoted to champion: {label} {score:.{digits}f} beats {before:.{digits}f} "
                    f"(v{p['champion_version']}) {where}"
                )
        else:
            why = p.get("promotion_held", "not promoted")
            lines.append(f"{who} held as challenger (champion stays v{p.get('champion_version', '?')}): {why}")
    return lines
