"""``churn bench batch``: one full batch cycle against the configured stack, stage by stage.

Runs :func:`batch.cycle.run_cycle` exactly as ``churn batch run`` does (ingest ->
features -> data-quality gate -> training of every zoo model -> hold-out evaluation ->
MLflow logging and registration -> promotion -> announce) on a retail file of
``--rows`` generated customers (deterministic seed) or ``--source``, or on the
shipped Telco file, and prints each stage's seconds and the peak memory beside the
issue's targets:

* retail, 1,000,000 rows: full cycle under 15 minutes, peak memory under 6 GB;
* Telco (7,043 rows): full cycle under 90 s.

Peak memory is the largest resident set of this process and its children: the
kernel's high-water mark of this process (``getrusage``) and a 0.2 s psutil sampler
over the process tree, whichever is larger. The stack's servers are separate
processes and not counted. CPU seconds (user + system of this process) are printed
too: on a shared machine wall time depends on the load average, CPU time much less.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

#: (dataset, rows the target is stated for or None for any) -> (full-cycle seconds, peak GB or None).
TARGETS: dict[str, tuple[int | None, float, float | None]] = {
    "retail": (1_000_000, 15 * 60.0, 6.0),
    "telco": (None, 90.0, None),
}

#: Stages in cycle order; ``fit`` .. ``log_models`` split the training stages.
STAGES = ("ingest", "features", "quality", "train_classification", "train_regression", "promote", "announce")
TRAINING_PARTS = ("fit", "tune_threshold", "evaluate", "log_models")


class PeakRss:
    """Samples the RSS of this process plus its children every ``interval_s`` in a thread.

    Parameters
    ----------
    interval_s : float, default 0.2
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._proc = psutil.Process()

    def _sample(self) -> int:
        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # a child that just exited
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())


def _self_maxrss_bytes() -> int:
    # Linux reports ru_maxrss in KiB.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class BatchBenchResult:
    """Figures of one benchmarked cycle.

    Attributes
    ----------
    dataset : str
    rows : int
        Source rows of the cycle.
    source : str
    cycle_s : float
        Wall seconds of the whole cycle (``run_cycle``).
    cpu_s : float
        User + system CPU seconds of this process during the cycle.
    peak_rss_gb : float
        Peak resident memory of this process tree in GB (10^9 bytes).
    load_average : list of float
        1, 5 and 15 minute load averages at the end of the run.
    stages_s : dict of str to float
        Seconds per cycle stage, plus the training parts ``fit``, ``tune_threshold``,
        ``evaluate`` and ``log_models`` summed over models.
    models : dict of str to dict
        Per model: ``task``, ``fit_rows``, ``fit_s``, ``fit_cpu_s``, ``tune_s``, ``eval_s``, and its
        hold-out ROC-AUC or R^2.
    targets : dict
        ``cycle_s`` and ``peak_rss_gb`` targets (None where the issue sets none for this
        data set and size) and whether each is met.
    settings : dict
        The batch scaling settings the cycle ran with.
    """

    dataset: str
    rows: int
    source: str
    cycle_s: float
    cpu_s: float
    peak_rss_gb: float
    load_average: list[float]
    stages_s: dict[str, float]
    models: dict[str, dict[str, Any]]
    targets: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, int] = field(default_factory=dict)
    generate_s: float | None = None
    cycle_id: str = ""
    promoted: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _targets(dataset: str, rows: int, cycle_s: float, peak_gb: float) -> dict[str, Any]:
    if dataset not in TARGETS:  # a profile of the user's own: measured, not judged
        return dict.fromkeys(("stated_for_rows", "cycle_s", "peak_rss_gb", "cycle_met", "peak_met")) | {
            "applies": False
        }
    for_rows, max_s, max_gb = TARGETS[dataset]
    applies = for_rows is None or rows == for_rows
    out: dict[str, Any] = {"stated_for_rows": for_rows, "applies": applies, "cycle_s": max_s, "peak_rss_gb": max_gb}
    out["cycle_met"] = (cycle_s < max_s) if applies else None
    out["peak_met"] = (peak_gb < max_gb) if applies and max_gb is not None else None
    return out


def format_report(r: BatchBenchResult) -> str:
    """The human-readable table printed by ``churn bench batch``."""
    t = r.targets
    if t["applies"]:
        scope = ""
    elif t["stated_for_rows"] is None:
        scope = f"  (no target is stated for dataset {r.dataset}; not judged)"
    else:
        scope = f"  (targets are stated for {t['stated_for_rows']:,} rows; not judged here)"

    def verdict(met: bool | None) -> str:
        return {True: "met", False: "NOT MET", None: "-"}[met]

    lines = [
        f"churn bench batch: dataset={r.dataset} rows={r.rows:,} source={r.source} cycle_id={r.cycle_id}",
        f"load average (1/5/15 min) at the end: {r.load_average[0]:.2f} {r.load_average[1]:.2f} "
        f"{r.load_average[2]:.2f} on {os.cpu_count()} CPUs{scope}",
        "",
        f"{'':<28}{'measured':>12}{'target':>12}  verdict",
        f"{'full cycle, wall s':<28}{r.cycle_s:>12.1f}"
        f"{('< ' + format(t['cycle_s'], '.0f')) if t['cycle_s'] else '-':>12}  "
        f"{verdict(t['cycle_met'])}",
        f"{'full cycle, CPU s':<28}{r.cpu_s:>12.1f}{'':>12}",
        f"{'peak RSS, GB':<28}{r.peak_rss_gb:>12.2f}"
        f"{('< ' + format(t['peak_rss_gb'], 'g')) if t['peak_rss_gb'] else '-':>12}  {verdict(t['peak_met'])}",
    ]
    if r.generate_s is not None:
        lines.append(f"{'(generate source, not in cycle) s':<28}{r.generate_s:>7.1f}")
    lines += ["", "stage seconds (wall):"]
    for stage in STAGES:
        if stage in r.stages_s:
            lines.append(f"  {stage:<26}{r.stages_s[stage]:>10.1f}")
    lines.append("  of which, over all models:")
    for part in TRAINING_PARTS:
        if part in r.stages_s:
            lines.append(f"    {part:<24}{r.stages_s[part]:>10.1f}")
    lines += [
        "",
        f"  {'model':<30}{'task':<16}{'fit rows':>10}{'fit s':>9}{'fit CPU s':>11}{'tune s':>9}"
        f"{'eval s':>9}{'AUC / R^2':>11}",
    ]
    for name, m in sorted(r.models.items(), key=lambda kv: -kv[1]["fit_s"]):
        lines.append(
            f"  {name:<30}{m['task']:<16}{m['fit_rows']:>10,}{m['fit_s']:>9.1f}{m['fit_cpu_s']:>11.1f}"
            f"{m['tune_s']:>9.1f}{m['eval_s']:>9.1f}{m['score']:>11.4f}"
        )
    lines += ["", "scaling settings: " + " ".join(f"{k}={v}" for k, v in r.settings.items())]
    return "\n".join(lines)


def run_bench_batch(
    settings,
    *,
    dataset: str = "retail",
    rows: int = 1_000_000,
    source: str | Path | None = None,
    seed: int = 0,
    json_path: str | Path | None = None,
    only: set[str] | None = None,
    echo=print,
) -> BatchBenchResult:
    """Benchmark one full batch cycle on the configured stack.

    Parameters
    ----------
    settings : plumbing.settings.Settings
        Endpoints of S3, MLflow and Kafka, and the batch scaling settings.
    dataset : str, default "retail"
        A shipped profile's name or a profile file; the targets are stated for retail and telco.
    rows : int, default 1_000_000
        Retail customers to generate with ``seed`` when ``source`` is not given
        (ignored for Telco, which always uses its shipped file unless ``source``).
    source : path, optional
        CSV to ingest instead of generating one; required for datasets other than retail and telco.
    seed : int, default 0
    json_path : path, optional
        Also write the figures (:meth:`BatchBenchResult.to_dict`) here as JSON.
    only : set of str, optional
        Train only these zoo models (for quick checks; a full-cycle figure needs all).
    echo : callable, default print
        Receives the report text.

    Returns
    -------
    BatchBenchResult

    Raises
    ------
    ValueError
        On ``rows`` below 1.
    KeyError, schemas.profiles.ProfileError
        On an unknown ``dataset``.
    batch.cycle_input.MissingSourceError
        Without ``source`` for a dataset that is neither retail nor telco.
    """
    from batch.cycle import run_cycle
    from batch.cycle_input import default_source
    from plumbing.clients import make_storage, make_tracker
    from schemas.profiles import get_profile

    profile = get_profile(dataset)
    dataset = profile.name
    if rows < 1:
        raise ValueError(f"rows: expected >= 1, got {rows!r}")
    with tempfile.TemporaryDirectory(prefix="churn-bench-batch-") as tmp:
        generate_s = None
        if source is None and dataset == "retail":
            from batch.retail import write_retail_csv

            source = Path(tmp) / f"retail_{rows}_seed{seed}.csv"
            t0 = time.perf_counter()
            write_retail_csv(source, rows=rows, seed=seed)
            generate_s = time.perf_counter() - t0
        else:
            source = default_source(dataset, source)
        storage, tracker = make_storage(settings), make_tracker(settings)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        with PeakRss() as peak:
            result = run_cycle(settings, storage, tracker, dataset=profile, source=source, only=only)
        cycle_s = time.perf_counter() - t0
        cpu_s = time.process_time() - cpu0
    peak_gb = max(peak.peak_bytes, _self_maxrss_bytes()) / 1e9
    models = {}
    for m in result.models:
        task = "classification" if "roc_auc" in m.metrics else "regression"
        models[m.name] = {
            "task": task,
            "fit_rows": int(m.params.get("fit_rows", 0)),
            "fit_s": round(m.metrics["fit_s"], 6),
            "fit_cpu_s": round(m.metrics.get("fit_cpu_s", 0.0), 6),
            "tune_s": round(m.metrics.get("tune_s", 0.0), 6),
            "eval_s": round(m.metrics.get("eval_s", 0.0), 6),
            "score": round(m.metrics["roc_auc"] if task == "classification" else m.metrics["r2"], 5),
        }
    caps = {
        k: getattr(settings, k)
        for k in (
            "batch_oof_max_rows",
            "batch_sample_max_rows",
            "batch_poly_max_rows",
            "batch_ensemble_max_rows",
            "batch_fit_max_rows",
            "batch_blas_threads",
        )
    }
    bench = BatchBenchResult(
        dataset=dataset,
        rows=result.rows,
        source=str(source) if generate_s is None else f"generated(seed={seed})",
        cycle_s=round(cycle_s, 3),
        cpu_s=round(cpu_s, 3),
        peak_rss_gb=round(peak_gb, 3),
        load_average=[round(x, 2) for x in os.getloadavg()],
        stages_s={k: round(v, 6) for k, v in result.timings_s.items()},
        models=models,
        targets=_targets(dataset, result.rows, cycle_s, peak_gb),
        settings=caps,
        generate_s=None if generate_s is None else round(generate_s, 3),
        cycle_id=result.cycle_id,
        promoted={k: {kk: v.get(kk) for kk in ("model", "model_version", "alias")} for k, v in result.promoted.items()},
    )
    if only is not None:
        logger.warning("bench batch trained only %s of the zoo: not a full-cycle figure", sorted(only))
    echo(format_report(bench))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(bench.to_dict(), indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()
    return bench


#: Training-row sizes of ``churn bench batch-curve`` by default.
CURVE_SIZES = (50_000, 100_000, 200_000, 400_000)


def run_ensemble_curve(
    settings,
    *,
    rows: int = 600_000,
    sizes: tuple[int, ...] = CURVE_SIZES,
    seed: int = 0,
    models: tuple[str, ...] | None = None,
    json_path: str | Path | None = None,
    echo=print,
) -> dict[str, Any]:
    """Learning curve of the zoo's tree ensembles: hold-out quality and fit seconds per training-row cap.

    Generates ``rows`` retail customers, featurises them exactly as a cycle does (80/20
    stratified split; classifiers hold out 10 % of the training part for the threshold
    when it exceeds ``batch_oof_max_rows``), then fits each ensemble of
    :data:`batch.zoo.ENSEMBLES` on a stratified sample of each size in ``sizes``
    (:class:`batch.training.FitPlan`'s sampling, as ``batch_ensemble_max_rows`` does)
    and scores it on the **whole** hold-out: ROC-AUC and tuned F1 for classifiers,
    R^2 for the regressor. No stack is needed (nothing is logged to MLflow or S3).
    The figures are the evidence behind the default of ``batch_ensemble_max_rows``.

    Parameters
    ----------
    settings : plumbing.settings.Settings
        Only ``batch_oof_max_rows`` is read.
    rows : int, default 600_000
        Source rows; the largest size must fit in the training part (0.72 ``rows``
        classifier fit rows, 0.8 ``rows`` regressor fit rows) or it is skipped.
    sizes : tuple of int, default :data:`CURVE_SIZES`
    seed : int, default 0
        Seed of the generated file.
    models : tuple of str, optional
        Subset of the ensembles (default all four).
    json_path : path, optional
        Also write the figures here as JSON.
    echo : callable, default print

    Returns
    -------
    dict
        ``rows``, ``holdout_rows``, ``load_average`` and ``points``: one dict per
        (model, size) with ``model``, ``task``, ``fit_rows``, ``fit_s``, ``fit_cpu_s``
        and ``roc_auc``/``f1_tuned`` or ``r2``.

    Raises
    ------
    ValueError
        On an unknown model name, ``rows`` below 1000 or a size below 1.
    """
    from batch import zoo
    from batch.features import classification_data, regression_data
    from batch.ingest import read_source_csv
    from batch.retail import engineer_features, write_retail_csv
    from batch.training import plan_tasks, train_classifier, train_regressor
    from schemas.profiles import get_profile

    chosen = tuple(models or sorted(zoo.ENSEMBLES))
    unknown = set(chosen) - zoo.ENSEMBLES
    if unknown:
        raise ValueError(f"models: expected some of {sorted(zoo.ENSEMBLES)}, got {sorted(unknown)}")
    if rows < 1000 or any(s < 1 for s in sizes):
        raise ValueError(f"rows >= 1000 and sizes >= 1 expected, got rows={rows!r} sizes={sizes!r}")
    profile = get_profile("retail")
    with tempfile.TemporaryDirectory(prefix="churn-bench-curve-") as tmp:
        src = write_retail_csv(Path(tmp) / "retail.csv", rows=rows, seed=seed)
        frame = engineer_features(read_source_csv(src, profile))
    data = classification_data(frame, profile)
    reg_data = regression_data(frame, profile)
    del frame
    cls_plan, reg_plan = plan_tasks(data, reg_data, oof_max_rows=settings.batch_oof_max_rows)
    factories = zoo.classifiers(set(chosen)) | zoo.regressors(set(chosen))
    points = []
    for name in chosen:
        is_cls = name in zoo.classifiers(set(chosen))
        plan = cls_plan if is_cls else reg_plan
        if plan is None:  # retail has a value target: its regression plan always exists
            raise ValueError(f"{name}: the {profile.name} profile has no value target")
        for size in sorted(sizes):
            if size > plan.y_fit.shape[0]:
                logger.warning("curve: %s size %d exceeds the %d fit rows; skipped", name, size, plan.y_fit.shape[0])
                continue
            plan.sample_caps = {name: size}
            if is_cls:
                trained = train_classifier(name, factories[name], data, plan=plan)
                quality = {"roc_auc": trained.metrics["roc_auc"], "f1_tuned": trained.metrics["f1_tuned"]}
            else:
                trained = train_regressor(name, factories[name], reg_data, plan=plan)
                quality = {"r2": trained.metrics["r2"]}
            points.append(
                {
                    "model": name,
                    "task": "classification" if is_cls else "regression",
                    "fit_rows": int(trained.params["fit_rows"]),
                    "fit_s": round(trained.metrics["fit_s"], 3),
                    "fit_cpu_s": round(trained.metrics["fit_cpu_s"], 3),
                }
                | {k: round(v, 5) for k, v in quality.items()}
            )
            echo(_curve_line(points[-1]))
    out = {
        "rows": rows,
        "seed": seed,
        "holdout_rows": int(data.y_test.shape[0]),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "points": points,
    }
    echo(format_curve(out))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out


def _curve_line(p: dict[str, Any]) -> str:
    score = f"AUC {p['roc_auc']:.4f} F1 {p['f1_tuned']:.4f}" if "roc_auc" in p else f"R^2 {p['r2']:.4f}"
    return f"  {p['model']:<30}{p['fit_rows']:>10,}{p['fit_s']:>9.1f}{p['fit_cpu_s']:>11.1f}  {score}"


def format_curve(out: dict[str, Any]) -> str:
    """The table printed by ``churn bench batch-curve``."""
    la = out["load_average"]
    lines = [
        f"churn bench batch-curve: retail rows={out['rows']:,} seed={out['seed']} "
        f"hold-out rows={out['holdout_rows']:,} (always scored in full)",
        f"load average (1/5/15 min) at the end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs",
        "",
        f"  {'model':<30}{'fit rows':>10}{'fit s':>9}{'fit CPU s':>11}  hold-out",
    ]
    lines += [_curve_line(p) for p in out["points"]]
    return "\n".join(lines)
