"""``churn bench models``: every scratch model beside its scikit-learn / xgboost reference, in one run.

Same data, same split, same featurisation, same threshold tuning (5-fold
out-of-fold predictions on the training part) for both sides; the hold-out is only used for the metrics.
Both sides run with BLAS limited to one thread, as one worker process would (the zoo's
forests and booster fit with n_jobs=-1 threads; their references here use one, so
predict times compare single-threaded calls).
Requires the ``bench`` extra (scikit-learn, xgboost).

Also here: ``churn bench fit`` (boosting and forests on a synthetic million-row table,
each fit in a fresh process for its own peak RSS) and ``churn bench gbm-cv`` (the
zoo booster's hyperparameters cross-validated on Telco's training part only).
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
from schemas.profiles import get_profile


class _ClusterReference:
    """k clusters from a scikit-learn clusterer, each scored by its training churn rate (k-means / Ward)."""

    def __init__(
        self, kind: str = "kmeans", n_clusters: int = 20, max_samples: int = 2000, random_state: int = 42
    ) -> None:
        self.kind, self.n_clusters, self.max_samples, self.random_state = kind, n_clusters, max_samples, random_state

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {"kind": self.kind, "n_clusters": self.n_clusters}

    def fit(self, X: np.ndarray, y: np.ndarray) -> _ClusterReference:
        from sklearn.cluster import AgglomerativeClustering, KMeans

        if self.kind == "kmeans":
            km = KMeans(self.n_clusters, n_init=3, random_state=self.random_state).fit(X)
            self.centers_, labels, Xs, ys = km.cluster_centers_, km.labels_, X, y
        else:
            rng = np.random.default_rng(self.random_state)
            idx = rng.choice(len(X), size=min(self.max_samples, len(X)), replace=False)
            Xs, ys = X[idx], y[idx]
            labels = AgglomerativeClustering(self.n_clusters, linkage="ward").fit_predict(Xs)
            self.centers_ = np.vstack([Xs[labels == k].mean(axis=0) for k in range(self.n_clusters)])
        prior = ys.mean()
        self.rates_ = np.array(
            [(ys[labels == k].sum() + 10 * prior) / ((labels == k).sum() + 10) for k in range(self.n_clusters)]
        )
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        d = ((X[:, None, :] - self.centers_[None, :, :]) ** 2).sum(axis=2)
        p = self.rates_[np.argmin(d, axis=1)]
        return np.column_stack([1 - p, p])


def _references(feature_index: dict[str, int]) -> dict[str, tuple[str, Any]]:
    """Zoo name -> (reference label, factory)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression, Perceptron, Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier
    from xgboost import XGBClassifier, XGBRegressor

    tenure = feature_index.get("tenure_months", 0)
    return {
        "logistic_regression": ("sklearn LogisticRegression", lambda: LogisticRegression(max_iter=1000)),
        "decision_tree": (
            "sklearn DecisionTree depth 5",
            lambda: DecisionTreeClassifier(max_depth=5, min_samples_leaf=5, random_state=42),
        ),
        "random_forest": (
            "sklearn RandomForest 100",
            lambda: RandomForestClassifier(100, min_samples_leaf=5, random_state=42, n_jobs=1),
        ),
        "svm": (
            "sklearn SVC linear + Platt",
            lambda: CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid", cv=3, ensemble=False),
        ),
        "kmeans": ("sklearn KMeans k=20", lambda: _ClusterReference("kmeans")),
        "agglomerative": ("sklearn Agglomerative Ward k=20", lambda: _ClusterReference("ward")),
        "perceptron": (
            "sklearn Perceptron + Platt",
            lambda: CalibratedClassifierCV(Perceptron(random_state=42), method="sigmoid", cv=3),
        ),
        "mlp": (
            "sklearn MLP (32,)",
            lambda: MLPClassifier((32,), alpha=10.0, early_stopping=True, max_iter=200, random_state=42),
        ),
        "naive_bayes": ("sklearn GaussianNB", GaussianNB),
        "random_forest_pca": (
            "sklearn PCA(.95)+RandomForest 100",
            lambda: make_pipeline(
                PCA(0.95), RandomForestClassifier(100, min_samples_leaf=5, random_state=42, n_jobs=1)
            ),
        ),
        "svm_pca": (
            "sklearn PCA(.95)+SVC linear",
            lambda: make_pipeline(
                PCA(0.95), CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid", cv=3, ensemble=False)
            ),
        ),
        "gradient_boosting": (
            "xgboost XGBClassifier 300x3 lr.05",
            lambda: XGBClassifier(n_estimators=300, max_depth=3, learning_rate=0.05, n_jobs=1, random_state=42),
        ),
        "linear_regression": (
            "sklearn LinearRegression (tenure)",
            lambda: make_pipeline(FunctionTransformer(lambda X: X[:, [tenure]]), LinearRegression()),
        ),
        "multiple_regression": ("sklearn Ridge(1)", lambda: Ridge(alpha=1.0)),
        "polynomial_regression": (
            "sklearn PolynomialFeatures(2)+Ridge(1)",
            lambda: make_pipeline(PolynomialFeatures(2), Ridge(alpha=1.0)),
        ),
        "gradient_boosting_regressor": (
            "xgboost XGBRegressor 500x6 lr.1",
            lambda: XGBRegressor(n_estimators=500, max_depth=6, learning_rate=0.1, n_jobs=1, random_state=42),
        ),
    }


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


def bench_models(dataset: str = "telco", only: set[str] | None = None) -> list[dict[str, Any]]:
    """Train every zoo model and its reference on the fixed protocol; return one row per model.

    Returns
    -------
    list of dict
        Fields ``model``, ``task``, ``roc_auc``, ``f1``, ``f1_tuned`` (classifiers) or
        ``rmse``, ``mae``, ``r2``, ``mape`` (regressors), ``fit_s``, ``predict_ms_per_1k``,
        ``reference`` and the same figures prefixed ``reference_``, and
        ``predict_speed_ratio`` (reference time / ours; > 1 means ours is faster).
    """
    from threadpoolctl import threadpool_limits

    from batch.cycle import DEFAULT_SOURCES

    profile = get_profile(dataset)
    frame = read_source_csv(DEFAULT_SOURCES[dataset], profile)
    cls_data = classification_data(frame, profile)
    reg_data = regression_data(frame, profile)
    refs = _references({n: i for i, n in enumerate(reg_data.feature_names)})
    rows = []
    with threadpool_limits(1):
        for name, factory in zoo.classifiers(only).items():
            label, ref_factory = refs[name]
            ours = train_classifier(name, factory, cls_data)
            ref = train_classifier(label, ref_factory, cls_data)
            rows.append(_row(name, "classification", ours, ref, label, cls_data.X_test, cls_data.y_test))
        for name, factory in zoo.regressors(only).items():
            label, ref_factory = refs[name]
            ours = train_regressor(name, factory, reg_data)
            ref = train_regressor(label, ref_factory, reg_data)
            rows.append(_row(name, "regression", ours, ref, label, reg_data.X_test))
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
    dataset: str = "telco", json_path: str | Path | None = None, only: set[str] | None = None
) -> list[dict[str, Any]]:
    """CLI body: run, print the table (and the machine), optionally write the JSON list."""
    t0 = time.perf_counter()
    rows = bench_models(dataset, only)
    load = os.getloadavg()
    print(
        f"# churn bench models: dataset={dataset} machine={platform.machine()} cores={os.cpu_count()} "
        f"load_avg={load[0]:.2f} BLAS threads=1 wall={time.perf_counter() - t0:.1f}s"
    )
    print(format_table(rows))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


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
    refs = _references({n: i for i, n in enumerate(data.feature_names)})
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
                    for prefix, factory in (("", factories[name]), ("reference_", ref_factory)):
                        threshold = oof_threshold(factory, X[tr], y[tr], THRESHOLD_FOLDS, seed + 1000)
                        proba = factory().fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
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


# --------------------------------------------------------------------- fit at scale
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


def _zoo_params(name: str) -> dict[str, Any]:
    """Hyperparameters of the zoo's ``name`` model, class defaults included."""
    return zoo.classifiers({name})[name]().get_params()


def _scale_references(n_jobs: int) -> dict[str, tuple[str, Any]]:
    """Zoo name -> (label, factory) of the reference fitted beside each scratch model at scale:
    the same trees, depth, row sampling and threads as the zoo's entry."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from xgboost import XGBClassifier

    gbm = _zoo_params("gradient_boosting")
    rf = _zoo_params("random_forest")
    rfp = _zoo_params("random_forest_pca")

    def sk_forest(p: dict[str, Any]) -> Any:
        return RandomForestClassifier(
            p.get("n_estimators", 100),
            max_depth=p.get("max_depth"),
            min_samples_leaf=p.get("min_samples_leaf", 1),
            max_samples=p.get("max_samples"),
            n_jobs=n_jobs,
            random_state=42,
        )

    return {
        "gradient_boosting": (
            "xgboost hist, same trees/depth/lr/sampling",
            lambda: XGBClassifier(
                tree_method="hist",
                max_bin=256,
                n_estimators=gbm["n_estimators"],
                max_depth=gbm["max_depth"],
                learning_rate=gbm["learning_rate"],
                min_child_weight=gbm["min_child_weight"],
                subsample=gbm["subsample"],
                colsample_bytree=gbm["colsample_bytree"],
                n_jobs=n_jobs,
                random_state=42,
            ),
        ),
        "random_forest": ("sklearn RandomForest, same trees/depth/leaf/max_samples", lambda: sk_forest(rf)),
        "random_forest_pca": (
            "sklearn PCA(.95)+RandomForest, same forest",
            lambda: make_pipeline(PCA(rfp.get("n_components", 0.95)), sk_forest(rfp)),
        ),
    }


def _fit_job(job: dict[str, Any]) -> dict[str, Any]:
    """Body of one fit in a fresh process: data, fit, wall/CPU seconds, peak RSS."""
    import resource

    from threadpoolctl import threadpool_limits

    X, y = synthetic_churn(job["rows"], job["features"], job["seed"])
    # Hold-out scored after the fit, so the figures show the model learned the signal.
    X_test, y_test = synthetic_churn(20_000, job["features"], job["seed"] + 1)
    data_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if job["side"] == "scratch":
        model = zoo.classifiers({job["model"]})[job["model"]]()
    else:
        model = _scale_references(job["n_jobs"])[job["model"]][1]()
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
        n_jobs = _zoo_params(name).get("n_jobs") or 1
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
            "reference": _scale_references(n_jobs)[name][0],
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
