"""Model selection on the training part only: ``churn bench gbm-cv`` (the zoo booster's
hyperparameters) and ``churn bench models-cv`` (nested cross-validation against the references)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from batch import zoo
from batch.features import classification_data
from batch.ingest import read_source_csv
from churn_stream.bench.references import holdout_references
from schemas.profiles import get_profile

#: Stage 1 of ``churn bench gbm-cv``: depth 3 (the reference's) x minimum child weight x
#: (learning rate, rounds) x column share; the zoo's previous defaults first.
GBM_GRID: list[dict[str, Any]] = [
    {"max_depth": 3, "min_child_weight": mcw, "learning_rate": lr, "n_estimators": rounds, "colsample_bytree": col}
    for mcw in (10.0, 3.0, 30.0)
    for lr, rounds in ((0.02, 600), (0.05, 240))
    for col in (0.5, 0.8)
]


def gbm_neighbours(best: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage 2 of ``churn bench gbm-cv``: the stage-1 winner one step away in depth (2, 4)
    and in minimum child weight (half and double)."""
    keys = ("max_depth", "min_child_weight", "learning_rate", "n_estimators", "colsample_bytree")
    base = {k: best[k] for k in keys}
    out = [{**base, "max_depth": dd} for dd in (2, 4)]
    out += [{**base, "min_child_weight": best["min_child_weight"] * f} for f in (0.5, 2.0)]
    seen = [{k: r[k] for k in keys} for r in GBM_GRID]
    return [c for c in out if c not in seen]


def select_gbm_params(
    dataset: str = "telco",
    seeds: tuple[int, ...] = (101, 102),
    n_folds: int = 5,
    grid: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Cross-validate gradient-boosting candidates on the training part of the fixed protocol only.

    Two stages: :data:`GBM_GRID`, then :func:`gbm_neighbours` of its best (only the
    given ``grid`` when one is passed). For each candidate, ``len(seeds)``
    repetitions of stratified ``n_folds``-fold out-of-fold probabilities of the training
    rows (fold seeds distinct from the
    threshold-tuning seeds); the criterion is the mean over repetitions of the
    F1 at the out-of-fold-optimal threshold (the quantity the zoo is ranked on),
    with out-of-fold ROC-AUC and log-loss reported beside it. The hold-out is never
    touched. Returns one dict per candidate, best first.
    """
    from threadpoolctl import threadpool_limits

    from batch.cycle import DEFAULT_SOURCES
    from batch.metrics import best_f1_threshold, roc_auc
    from batch.training import stratified_folds
    from scratch_models.boosting import GradientBoostingClassifier

    profile = get_profile(dataset)
    data = classification_data(read_source_csv(DEFAULT_SOURCES[dataset], profile), profile)
    X, y = data.X_train, data.y_train
    out: list[dict[str, Any]] = []

    def run(candidates: list[dict[str, Any]]) -> None:
        for params in candidates:
            t0 = time.process_time()
            f1s, aucs, losses = [], [], []
            for seed in seeds:
                fold = stratified_folds(y, n_folds, seed)
                oof = np.empty(y.shape[0])
                for k in range(n_folds):
                    model = GradientBoostingClassifier(subsample=0.8, random_state=42, **params)
                    oof[fold == k] = model.fit(X[fold != k], y[fold != k]).predict_proba(X[fold == k])[:, 1]
                f1s.append(best_f1_threshold(y, oof)[1])
                aucs.append(roc_auc(y, oof))
                p = np.clip(oof, 1e-12, 1 - 1e-12)
                losses.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
            row = {
                **params,
                "cv_f1_tuned": float(np.mean(f1s)),
                "cv_roc_auc": float(np.mean(aucs)),
                "cv_log_loss": float(np.mean(losses)),
                "cpu_s": time.process_time() - t0,
            }
            print(json.dumps(row), flush=True)
            out.append(row)

    with threadpool_limits(1):
        run(GBM_GRID if grid is None else grid)
        if grid is None:
            run(gbm_neighbours(max(out, key=lambda r: r["cv_f1_tuned"])))
    return sorted(out, key=lambda r: -r["cv_f1_tuned"])


# --------------------------------------------------------------------- nested cross-validation
def nested_cv(
    models: tuple[str, ...] = ("gradient_boosting",),
    dataset: str = "telco",
    outer_seeds: tuple[int, ...] = (7, 8),
    n_folds: int = 5,
) -> list[dict[str, Any]]:
    """Scratch classifiers beside their references on repeated outer folds of the training part.

    The issue's protocol scores each model once, on one 1,409-row hold-out, where a tuned
    F1 moves by about ±0.04 (95 % bootstrap interval). This repeats the whole protocol
    inside the training part: for each of ``len(outer_seeds)`` x ``n_folds`` stratified
    outer splits, the model's threshold is tuned on 5-fold out-of-fold probabilities of
    the outer training rows (:func:`batch.training.oof_threshold`, as the batch cycle
    does), the model is fitted on those rows and scored on the outer test fold. The
    issue's hold-out is never touched.

    The paired differences (ours - reference) of the outer splits are summarised by
    their mean and two standard errors: the naive one, and Nadeau & Bengio's corrected
    resampled-t one, which accounts for the overlap of the outer training sets
    (Nadeau & Bengio, "Inference for the Generalization Error", Machine Learning 52,
    2003: variance x (1/J + n_test/n_train) instead of 1/J).

    Parameters
    ----------
    models : tuple of str
        Zoo classifier names.
    dataset : str, default "telco"
    outer_seeds : tuple of int
        Seeds of the repeated stratified outer folds.
    n_folds : int, default 5

    Returns
    -------
    list of dict
        One per model: ``model``, ``reference``, ``splits`` (J), per-split lists
        ``f1_tuned``, ``reference_f1_tuned``, ``roc_auc``, ``reference_roc_auc``, and
        ``mean_*`` of each, ``f1_tuned_diff``/``roc_auc_diff`` (mean paired difference)
        with ``*_diff_se`` (naive) and ``*_diff_se_corrected``, ``fit_s``.
    """
    from threadpoolctl import threadpool_limits

    from batch.cycle import DEFAULT_SOURCES
    from batch.metrics import classification_metrics
    from batch.training import THRESHOLD_FOLDS, oof_threshold, stratified_folds

    profile = get_profile(dataset)
    data = classification_data(read_source_csv(DEFAULT_SOURCES[dataset], profile), profile)
    X, y = data.X_train, data.y_train
    refs = holdout_references({n: i for i, n in enumerate(data.feature_names)})
    factories = zoo.classifiers(set(models))
    unknown = set(models) - set(factories)
    if unknown:
        raise ValueError(f"not zoo classifiers: {sorted(unknown)}")
    out = []
    with threadpool_limits(1):
        for name in models:
            label, ref_factory = refs[name]
            t0 = time.perf_counter()
            res: dict[str, list[float]] = {
                k: [] for k in ("f1_tuned", "reference_f1_tuned", "roc_auc", "reference_roc_auc")
            }
            for seed in outer_seeds:
                outer = stratified_folds(y, n_folds, seed)
                for k in range(n_folds):
                    tr, te = outer != k, outer == k
                    sides: tuple[tuple[str, Callable[[], Any]], ...] = (
                        ("", factories[name]),
                        ("reference_", ref_factory),
                    )
                    for prefix, factory in sides:
                        threshold = oof_threshold(factory, X[tr], y[tr], THRESHOLD_FOLDS, seed + 1000)
                        # Any: the zoo types its factories as BaseModel, which declares no fit (each model does).
                        model: Any = factory()
                        proba = model.fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
                        m = classification_metrics(y[te], proba, threshold)
                        res[f"{prefix}f1_tuned"].append(m["f1"])
                        res[f"{prefix}roc_auc"].append(m["roc_auc"])
            row: dict[str, Any] = {"model": name, "reference": label, "splits": len(res["f1_tuned"]), **res}
            # n_test / n_train of an outer split is 1 / (n_folds - 1).
            correction = 1.0 / row["splits"] + 1.0 / (n_folds - 1)
            for metric in ("f1_tuned", "roc_auc"):
                d = np.subtract(res[metric], res[f"reference_{metric}"])
                row[f"mean_{metric}"] = float(np.mean(res[metric]))
                row[f"mean_reference_{metric}"] = float(np.mean(res[f"reference_{metric}"]))
                row[f"{metric}_diff"] = float(d.mean())
                row[f"{metric}_diff_se"] = float(d.std(ddof=1) / np.sqrt(d.shape[0]))
                row[f"{metric}_diff_se_corrected"] = float(np.sqrt(correction * d.var(ddof=1)))
            row["fit_s"] = time.perf_counter() - t0
            out.append(row)
    return out


def format_nested_cv(rows: list[dict[str, Any]]) -> str:
    """One line per model: mean tuned F1 and ROC-AUC, ours and the reference's, and the paired difference."""
    lines = []
    for r in rows:
        lines.append(f"{r['model']} vs {r['reference']}, {r['splits']} outer splits of the training part:")
        for metric, label in (("f1_tuned", "tuned F1"), ("roc_auc", "ROC-AUC")):
            lines.append(
                f"  {label:8s} ours {r[f'mean_{metric}']:.4f}  reference {r[f'mean_reference_{metric}']:.4f}"
                f"  ours - reference {r[f'{metric}_diff']:+.4f} (se {r[f'{metric}_diff_se']:.4f}, "
                f"corrected se {r[f'{metric}_diff_se_corrected']:.4f})"
            )
        lines.append(f"  per split tuned F1, ours:      {' '.join(f'{v:.3f}' for v in r['f1_tuned'])}")
        lines.append(f"  per split tuned F1, reference: {' '.join(f'{v:.3f}' for v in r['reference_f1_tuned'])}")
        lines.append(f"  ({r['fit_s']:.0f} s)")
    return "\n".join(lines)
