"""``churn bench models``: every scratch model beside its scikit-learn / xgboost reference, in one run.

Same data, same split, same featurisation, same threshold tuning (5-fold
out-of-fold predictions on the training part) for both sides; the hold-out is only used for the metrics.
Both sides run with BLAS limited to one thread, as one worker process would (the zoo's
forests and booster fit with n_jobs=-1 threads; their references here use one, so
predict times compare single-threaded calls).
Requires the ``bench`` extra (scikit-learn, xgboost).

The references are in :mod:`churn_stream.bench.references`; ``churn bench fit`` is in
:mod:`churn_stream.bench.fit_scale`, ``churn bench gbm-cv`` and ``models-cv`` in
:mod:`churn_stream.bench.model_selection`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from batch import zoo
from batch.features import classification_data, regression_data
from batch.ingest import read_source_csv
from batch.training import train_classifier, train_regressor
from churn_stream.bench.references import holdout_references
from plumbing.progress import Progress
from schemas.profiles import get_profile


def _predict_ms_per_1k(model: Any, X: np.ndarray, classifier: bool, repeats: int = 7) -> float:
    rows = X[:1000]
    fn = model.predict_proba if classifier else model.predict
    fn(rows)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(rows)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0 * 1000.0 / len(rows))


#: Hold-out resamples of the tuned-F1 bootstrap intervals.
BOOTSTRAP_RESAMPLES = 1000


def _f1(y: np.ndarray, pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """F1 of 0/1 labels ``y`` and 0/1 predictions ``pred`` along ``axis`` (vectorised for the bootstrap)."""
    tp = np.sum(y * pred, axis=axis)
    return 2.0 * tp / np.maximum(np.sum(y, axis=axis) + np.sum(pred, axis=axis), 1)


def tuned_f1_intervals(
    y: np.ndarray, pred: np.ndarray, ref_pred: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, list[float]]:
    """95 % percentile-bootstrap intervals of the hold-out F1 of two classifiers and of their difference.

    Both are resampled together (paired: the same hold-out rows in each resample), each at
    its own threshold tuned on training data, so the interval of the difference says
    whether the hold-out can tell the two apart (Efron & Tibshirani, *An Introduction to
    the Bootstrap*, 1993, ch. 13; ``scipy.stats.bootstrap``).

    Parameters
    ----------
    y, pred, ref_pred : ndarray of shape (n_test,)
        True 0/1 labels and the two models' 0/1 predictions at their tuned thresholds.
    resamples : int, default 1000
    seed : int, default 0

    Returns
    -------
    dict
        ``f1_tuned_ci95``, ``reference_f1_tuned_ci95`` and ``f1_tuned_minus_reference_ci95``,
        each ``[low, high]``.
    """
    from scipy.stats import bootstrap

    y, a, b = (np.asarray(v, dtype=np.float64) for v in (y, pred, ref_pred))
    out = {}
    for key, stat in (
        ("f1_tuned_ci95", lambda y_, a_, b_, axis=-1: _f1(y_, a_, axis)),
        ("reference_f1_tuned_ci95", lambda y_, a_, b_, axis=-1: _f1(y_, b_, axis)),
        ("f1_tuned_minus_reference_ci95", lambda y_, a_, b_, axis=-1: _f1(y_, a_, axis) - _f1(y_, b_, axis)),
    ):
        res = bootstrap(
            (y, a, b),
            stat,
            paired=True,
            vectorized=True,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        out[key] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return out


def _row(
    name: str, task: str, ours, ref, ref_label: str, X_test: np.ndarray, y_test: np.ndarray | None = None
) -> dict[str, Any]:
    classifier = task == "classification"
    row: dict[str, Any] = {"model": name, "task": task, "reference": ref_label}
    for prefix, trained in (("", ours), ("reference_", ref)):
        m = trained.metrics
        if classifier:
            row.update({f"{prefix}roc_auc": m["roc_auc"], f"{prefix}f1": m["f1"], f"{prefix}f1_tuned": m["f1_tuned"]})
        else:
            row.update(
                {
                    f"{prefix}rmse": m["rmse"],
                    f"{prefix}mae": m["mae"],
                    f"{prefix}r2": m["r2"],
                    f"{prefix}mape": m["mape"],
                }
            )
        row[f"{prefix}fit_s"] = m["fit_s"]
        row[f"{prefix}predict_ms_per_1k"] = _predict_ms_per_1k(trained.model, X_test, classifier)
    row["predict_speed_ratio"] = row["reference_predict_ms_per_1k"] / row["predict_ms_per_1k"]
    if classifier and y_test is not None and ours.holdout_pred is not None and ref.holdout_pred is not None:
        row.update(tuned_f1_intervals(y_test, ours.holdout_pred >= ours.threshold, ref.holdout_pred >= ref.threshold))
    return row


def bench_models(
    dataset: str = "telco", only: set[str] | None = None, source: str | Path | None = None
) -> list[dict[str, Any]]:
    """Train every zoo model and its reference on the fixed protocol; return one row per model.

    Parameters
    ----------
    dataset : str, default "telco"
        A shipped profile's name or a profile file.
    only : set of str, optional
        Zoo models to run.
    source : str or Path, optional
        CSV to read; default the dataset's shipped file (telco only).

    Returns
    -------
    list of dict
        Fields ``model``, ``task``, ``roc_auc``, ``f1``, ``f1_tuned`` (classifiers) or
        ``rmse``, ``mae``, ``r2``, ``mape`` (regressors), ``fit_s``, ``predict_ms_per_1k``,
        ``reference`` and the same figures prefixed ``reference_``, and
        ``predict_speed_ratio`` (reference time / ours; > 1 means ours is faster). No
        regressor rows when the profile has no value target.

    Raises
    ------
    batch.cycle_input.MissingSourceError
        If ``source`` is None and the dataset ships no file.
    """
    from threadpoolctl import threadpool_limits

    from batch.cycle_input import default_source

    profile = get_profile(dataset)
    frame = read_source_csv(default_source(profile.name, source), profile)
    cls_data = classification_data(frame, profile)
    reg_data = regression_data(frame, profile) if profile.regression_target is not None else None
    refs = holdout_references({n: i for i, n in enumerate((reg_data or cls_data).feature_names)})
    rows = []
    regressors = zoo.regressors(only) if reg_data is not None else {}  # no value target: no regressor
    total = len(zoo.classifiers(only)) + len(regressors)
    with threadpool_limits(1), Progress(f"bench models {profile.name}", total, unit="model") as bar:
        for name, factory in zoo.classifiers(only).items():
            bar.set_postfix(name)
            label, ref_factory = refs[name]
            ours = train_classifier(name, factory, cls_data)
            ref = train_classifier(label, ref_factory, cls_data)
            rows.append(_row(name, "classification", ours, ref, label, cls_data.X_test, cls_data.y_test))
            bar.update()
        for name, factory in regressors.items():
            assert reg_data is not None
            bar.set_postfix(name)
            label, ref_factory = refs[name]
            ours = train_regressor(name, factory, reg_data)
            ref = train_regressor(label, ref_factory, reg_data)
            rows.append(_row(name, "regression", ours, ref, label, reg_data.X_test))
            bar.update()
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table: ours | reference | delta, one line per model."""
    out = []
    head = (
        f"{'model':28s} {'task':5s} {'AUC/R2':>7s} {'F1':>6s} {'F1tun':>6s} {'fit s':>6s} {'ms/1k':>7s} | "
        f"{'ref AUC/R2':>10s} {'ref F1tun':>9s} {'ref fit':>7s} {'ref ms/1k':>9s} | "
        f"{'dQ':>7s} {'speed x':>7s}  reference"
    )
    out.append(head)
    out.append("-" * len(head))
    for r in rows:
        if r["task"] == "classification":
            q, rq = r["roc_auc"], r["reference_roc_auc"]
            f1, f1t, rf1t = f"{r['f1']:.3f}", f"{r['f1_tuned']:.3f}", f"{r['reference_f1_tuned']:.3f}"
        else:
            q, rq = r["r2"], r["reference_r2"]
            f1, f1t, rf1t = "", "", ""
        out.append(
            f"{r['model']:28s} {r['task'][:5]:5s} {q:7.4f} {f1:>6s} {f1t:>6s} {r['fit_s']:6.2f} "
            f"{r['predict_ms_per_1k']:7.2f} | {rq:10.4f} {rf1t:>9s} {r['reference_fit_s']:7.2f} "
            f"{r['reference_predict_ms_per_1k']:9.2f} | {q - rq:+7.4f} {r['predict_speed_ratio']:7.2f}  "
            f"{r['reference']}"
        )
    cls = [r for r in rows if r["task"] == "classification"]
    if cls:
        best = max(cls, key=lambda r: r["f1_tuned"])
        best_ref = max(cls, key=lambda r: r["reference_f1_tuned"])
        out.append(
            f"best scratch tuned F1: {best['model']} {best['f1_tuned']:.4f}; "
            f"best reference tuned F1: {best_ref['reference']} {best_ref['reference_f1_tuned']:.4f}"
        )
        with_ci = [r for r in cls if "f1_tuned_ci95" in r]
        if with_ci:
            out.append(f"tuned F1 on the hold-out, 95% paired bootstrap intervals ({BOOTSTRAP_RESAMPLES} resamples):")
            for r in with_ci:
                lo, hi = r["f1_tuned_ci95"]
                rlo, rhi = r["reference_f1_tuned_ci95"]
                dlo, dhi = r["f1_tuned_minus_reference_ci95"]
                out.append(
                    f"  {r['model']:26s} [{lo:.3f}, {hi:.3f}]  reference [{rlo:.3f}, {rhi:.3f}]  "
                    f"ours - reference [{dlo:+.3f}, {dhi:+.3f}]"
                )
    out.append(f"zoo fit seconds (scratch, final fits): {sum(r['fit_s'] for r in rows):.1f}")
    return "\n".join(out)


def run_bench_models(
    dataset: str = "telco",
    json_path: str | Path | None = None,
    only: set[str] | None = None,
    source: str | Path | None = None,
) -> list[dict[str, Any]]:
    """CLI body: run, print the table (and the machine), optionally write the JSON list."""
    t0 = time.perf_counter()
    rows = bench_models(dataset, only, source)
    load = os.getloadavg()
    print(
        f"# churn bench models: dataset={dataset} machine={platform.machine()} cores={os.cpu_count()} "
        f"load_avg={load[0]:.2f} BLAS threads=1 wall={time.perf_counter() - t0:.1f}s"
    )
    print(format_table(rows))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
    return rows
