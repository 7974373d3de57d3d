"""``churn bench fit``: boosting and forests on a synthetic million-row table, each fit in a
fresh process for its own peak RSS, beside a reference with the same trees."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from batch import zoo
from churn_stream.bench.references import scale_references, zoo_params

#: Models of ``churn bench fit``: the tree ensembles the batch trains on large tables.
SCALE_MODELS = ("gradient_boosting", "random_forest", "random_forest_pca")
#: Targets of the issue: seconds and bytes per fit.
SCALE_TARGET_S = 300.0
SCALE_TARGET_RSS = 6 * 2**30


def synthetic_churn(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable synthetic churn table: ``X`` (rows, features) float64 and 0/1 ``y`` (rows,).

    A quarter of the columns are 0/1 flags (one-hot-like), a quarter small counts,
    the rest continuous; churn follows a logistic model with interactions and a
    threshold effect on eight of the columns (about 31 % positives).
    Generated in row blocks so the only large allocation is ``X`` itself.
    """
    if rows < 100 or features < 8:
        raise ValueError(f"synthetic_churn: expected rows >= 100 and features >= 8, got {rows}, {features}")
    rng = np.random.default_rng(seed)
    X = np.empty((rows, features))
    y = np.empty(rows, dtype=np.int64)
    n_flag, n_count = features // 4, features // 4
    step = 1 << 16
    for a in range(0, rows, step):
        b = min(rows, a + step)
        blk = X[a:b]
        blk[:, :n_flag] = rng.random((b - a, n_flag)) < 0.3
        blk[:, n_flag : n_flag + n_count] = rng.poisson(3.0, (b - a, n_count))
        blk[:, n_flag + n_count :] = rng.normal(size=(b - a, features - n_flag - n_count))
        c = n_flag + n_count
        z = (
            1.2 * blk[:, 0]
            - 0.8 * blk[:, 1]
            + 0.3 * (blk[:, n_flag] - 3.0)
            + blk[:, c] * blk[:, c + 1]
            + np.sin(2.0 * blk[:, c + 2])
            + 0.8 * (blk[:, c + 3] > 0.5)
            - 0.4 * blk[:, c + 4] ** 2
            + 0.5 * blk[:, 2] * blk[:, c + 5]
            - 1.1
        )
        y[a:b] = z + rng.logistic(size=b - a) > 0
    return X, y


def _fit_job(job: dict[str, Any]) -> dict[str, Any]:
    """Body of one fit in a fresh process: data, fit, wall/CPU seconds, peak RSS."""
    import resource

    from threadpoolctl import threadpool_limits

    X, y = synthetic_churn(job["rows"], job["features"], job["seed"])
    # Hold-out scored after the fit, so the figures show the model learned the signal.
    X_test, y_test = synthetic_churn(20_000, job["features"], job["seed"] + 1)
    data_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if job["side"] == "scratch":
        # Any: the zoo types its factories as BaseModel, which declares no fit (each model does).
        model: Any = zoo.classifiers({job["model"]})[job["model"]]()
    else:
        model = scale_references(job["n_jobs"])[job["model"]][1]()
    with threadpool_limits(1):  # BLAS single-threaded on both sides; trees use n_jobs threads
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(X, y)
        fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    from batch.metrics import roc_auc

    auc = roc_auc(y_test, model.predict_proba(X_test)[:, 1])
    return {
        "fit_s": fit_s,
        "cpu_s": cpu_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "data_rss_bytes": data_rss,
        "roc_auc": auc,
    }


def _run_in_fresh_process(job: dict[str, Any]) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_fit_job, job).result()


def bench_fit(
    rows: int = 1_000_000,
    features: int = 80,
    models: tuple[str, ...] = SCALE_MODELS,
    reference_rows: int | None = 100_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Fit each scale model and its reference on a synthetic table, each in a fresh process.

    Parameters
    ----------
    rows, features : int
        Size of the synthetic training table (:func:`synthetic_churn`).
    models : tuple of str
        Zoo names among :data:`SCALE_MODELS`.
    reference_rows : int or None, default 100_000
        Rows the scikit-learn forest references are fitted on (exact-split forests
        take tens of minutes at a million rows); None fits them on ``rows`` too.
        xgboost always gets ``rows``.
    seed : int

    Returns
    -------
    list of dict
        Per model: ``fit_s``, ``cpu_s``, ``peak_rss_bytes`` (whole process, data
        included), ``data_rss_bytes`` (before the fit), ``roc_auc`` on 20,000 fresh
        rows, the same ``reference_*`` figures, ``reference_rows`` and the targets.
    """
    unknown = set(models) - set(SCALE_MODELS)
    if unknown:
        raise ValueError(f"models: expected names among {SCALE_MODELS}, got {sorted(unknown)}")
    out = []
    for name in models:
        n_jobs = zoo_params(name).get("n_jobs") or 1
        n_jobs = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
        ours = _run_in_fresh_process(
            {"side": "scratch", "model": name, "rows": rows, "features": features, "seed": seed, "n_jobs": n_jobs}
        )
        ref_rows = rows if (name == "gradient_boosting" or reference_rows is None) else min(rows, reference_rows)
        ref = _run_in_fresh_process(
            {"side": "reference", "model": name, "rows": ref_rows, "features": features, "seed": seed, "n_jobs": n_jobs}
        )
        row = {
            "model": name,
            "rows": rows,
            "features": features,
            "n_jobs": n_jobs,
            **ours,
            "reference": scale_references(n_jobs)[name][0],
            "reference_rows": ref_rows,
            **{f"reference_{k}": v for k, v in ref.items()},
            "target_fit_s": SCALE_TARGET_S,
            "target_peak_rss_bytes": SCALE_TARGET_RSS,
        }
        row["met"] = bool(row["fit_s"] < SCALE_TARGET_S and row["peak_rss_bytes"] < SCALE_TARGET_RSS)
        out.append(row)
        print(format_fit_table([row], header=not out[:-1]), flush=True)
    return out


def format_fit_table(rows: list[dict[str, Any]], header: bool = True) -> str:
    """One line per model: ours, target, reference (with the rows it was fitted on)."""
    gb = 2**30
    lines = []
    if header:
        head = (
            f"{'model':18s} {'rows':>9s} {'fit s':>7s} {'cpu s':>7s} {'peak GB':>7s} {'data GB':>7s} {'AUC':>6s}"
            f" | {'target':>13s} {'met':>3s} | {'ref rows':>9s} {'ref fit s':>9s} {'ref cpu s':>9s}"
            f" {'ref GB':>6s} {'ref AUC':>7s}  reference"
        )
        lines += [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:18s} {r['rows']:9d} {r['fit_s']:7.1f} {r['cpu_s']:7.1f} {r['peak_rss_bytes'] / gb:7.2f}"
            f" {r['data_rss_bytes'] / gb:7.2f} {r['roc_auc']:6.4f} | "
            f"{'<' + str(int(r['target_fit_s'])) + 's <6GB':>13s}"
            f" {'yes' if r['met'] else 'NO':>3s} | {r['reference_rows']:9d} {r['reference_fit_s']:9.1f}"
            f" {r['reference_cpu_s']:9.1f} {r['reference_peak_rss_bytes'] / gb:6.2f} {r['reference_roc_auc']:7.4f}"
            f"  {r['reference']}"
        )
    return "\n".join(lines)


def run_bench_fit(
    rows: int = 1_000_000,
    features: int = 80,
    models: tuple[str, ...] = SCALE_MODELS,
    reference_rows: int | None = 100_000,
    json_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """CLI body of ``churn bench fit``: print the machine, one line per model, optionally the JSON list."""
    load = os.getloadavg()
    print(
        f"# churn bench fit: synthetic churn table {rows} x {features} float64, each fit in a fresh process; "
        f"machine={platform.machine()} cores={os.cpu_count()} load_avg at start={load[0]:.2f}; "
        f"sklearn forests fitted on {reference_rows or rows} rows (exact splits are far slower), "
        f"xgboost on all rows; fit s = wall, cpu s = all threads, peak GB = process max RSS incl. data"
    )
    out = bench_fit(rows, features, models, reference_rows)
    print(f"# load_avg at end={os.getloadavg()[0]:.2f}")
    if json_path is not None:
        Path(json_path).write_text(json.dumps(out, indent=2) + "\n")
    return out
