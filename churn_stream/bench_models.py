"""``churn bench models``: every scratch model beside its scikit-learn / xgboost reference, in one run.

Same data, same split, same featurisation, same threshold tuning (5-fold
out-of-fold predictions on the training part) for both sides; the hold-out is only used for the metrics.
Both sides run with BLAS limited to one thread, as one worker process would.
Requires the ``bench`` extra (scikit-learn, xgboost).
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

    def __init__(self, kind: str = "kmeans", n_clusters: int = 20, max_samples: int = 2000,
                 random_state: int = 42) -> None:
        self.kind, self.n_clusters, self.max_samples, self.random_state = kind, n_clusters, max_samples, random_state

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {"kind": self.kind, "n_clusters": self.n_clusters}

    def fit(self, X: np.ndarray, y: np.ndarray) -> "_ClusterReference":
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
        self.rates_ = np.array([(ys[labels == k].sum() + 10 * prior) / ((labels == k).sum() + 10)
                                for k in range(self.n_clusters)])
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
        "decision_tree": ("sklearn DecisionTree depth 5",
                          lambda: DecisionTreeClassifier(max_depth=5, min_samples_leaf=5, random_state=42)),
        "random_forest": ("sklearn RandomForest 100",
                          lambda: RandomForestClassifier(100, min_samples_leaf=5, random_state=42, n_jobs=1)),
        "svm": ("sklearn SVC linear + Platt", lambda: CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid",
                                                                          cv=3, ensemble=False)),
        "kmeans": ("sklearn KMeans k=20", lambda: _ClusterReference("kmeans")),
        "agglomerative": ("sklearn Agglomerative Ward k=20", lambda: _ClusterReference("ward")),
        "perceptron": ("sklearn Perceptron + Platt",
                       lambda: CalibratedClassifierCV(Perceptron(random_state=42), method="sigmoid", cv=3)),
        "mlp": ("sklearn MLP (32,)", lambda: MLPClassifier((32,), alpha=10.0, early_stopping=True,
                                                           max_iter=200, random_state=42)),
        "naive_bayes": ("sklearn GaussianNB", GaussianNB),
        "random_forest_pca": ("sklearn PCA(.95)+RandomForest 100",
                              lambda: make_pipeline(PCA(0.95), RandomForestClassifier(
                                  100, min_samples_leaf=5, random_state=42, n_jobs=1))),
        "svm_pca": ("sklearn PCA(.95)+SVC linear",
                    lambda: make_pipeline(PCA(0.95), CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid",
                                                                            cv=3, ensemble=False))),
        "gradient_boosting": ("xgboost XGBClassifier 300x3 lr.05",
                              lambda: XGBClassifier(n_estimators=300, max_depth=3, learning_rate=0.05, n_jobs=1,
                                                    random_state=42)),
        "linear_regression": ("sklearn LinearRegression (tenure)",
                              lambda: make_pipeline(FunctionTransformer(lambda X: X[:, [tenure]]),
                                                    LinearRegression())),
        "multiple_regression": ("sklearn Ridge(1)", lambda: Ridge(alpha=1.0)),
        "polynomial_regression": ("sklearn PolynomialFeatures(2)+Ridge(1)",
                                  lambda: make_pipeline(PolynomialFeatures(2), Ridge(alpha=1.0))),
        "gradient_boosting_regressor": ("xgboost XGBRegressor 500x6 lr.1",
                                        lambda: XGBRegressor(n_estimators=500, max_depth=6, learning_rate=0.1,
                                                             n_jobs=1, random_state=42)),
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


def _row(name: str, task: str, ours, ref, ref_label: str, X_test: np.ndarray) -> dict[str, Any]:
    classifier = task == "classification"
    row: dict[str, Any] = {"model": name, "task": task, "reference": ref_label}
    for prefix, trained in (("", ours), ("reference_", ref)):
        m = trained.metrics
        if classifier:
            row.update({f"{prefix}roc_auc": m["roc_auc"], f"{prefix}f1": m["f1"], f"{prefix}f1_tuned": m["f1_tuned"]})
        else:
            row.update({f"{prefix}rmse": m["rmse"], f"{prefix}mae": m["mae"], f"{prefix}r2": m["r2"],
                        f"{prefix}mape": m["mape"]})
        row[f"{prefix}fit_s"] = m["fit_s"]
        row[f"{prefix}predict_ms_per_1k"] = _predict_ms_per_1k(trained.model, X_test, classifier)
    row["predict_speed_ratio"] = row["reference_predict_ms_per_1k"] / row["predict_ms_per_1k"]
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
            rows.append(_row(name, "classification", ours, ref, label, cls_data.X_test))
        for name, factory in zoo.regressors(only).items():
            label, ref_factory = refs[name]
            ours = train_regressor(name, factory, reg_data)
            ref = train_regressor(label, ref_factory, reg_data)
            rows.append(_row(name, "regression", ours, ref, label, reg_data.X_test))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table: ours | reference | delta, one line per model."""
    out = []
    head = (f"{'model':28s} {'task':5s} {'AUC/R2':>7s} {'F1':>6s} {'F1tun':>6s} {'fit s':>6s} {'ms/1k':>7s} | "
            f"{'ref AUC/R2':>10s} {'ref F1tun':>9s} {'ref fit':>7s} {'ref ms/1k':>9s} | {'dQ':>7s} {'speed x':>7s}  reference")
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
            f"{r['reference_predict_ms_per_1k']:9.2f} | {q - rq:+7.4f} {r['predict_speed_ratio']:7.2f}  {r['reference']}"
        )
    cls = [r for r in rows if r["task"] == "classification"]
    if cls:
        best = max(cls, key=lambda r: r["f1_tuned"])
        best_ref = max(cls, key=lambda r: r["reference_f1_tuned"])
        out.append(f"best scratch tuned F1: {best['model']} {best['f1_tuned']:.4f}; "
                   f"best reference tuned F1: {best_ref['reference']} {best_ref['reference_f1_tuned']:.4f}")
    out.append(f"zoo fit seconds (scratch, final fits): {sum(r['fit_s'] for r in rows):.1f}")
    return "\n".join(out)


def run_bench_models(dataset: str = "telco", json_path: str | Path | None = None,
                     only: set[str] | None = None) -> list[dict[str, Any]]:
    """CLI body: run, print the table (and the machine), optionally write the JSON list."""
    t0 = time.perf_counter()
    rows = bench_models(dataset, only)
    load = os.getloadavg()
    print(f"# churn bench models: dataset={dataset} machine={platform.machine()} cores={os.cpu_count()} "
          f"load_avg={load[0]:.2f} BLAS threads=1 wall={time.perf_counter() - t0:.1f}s")
    print(format_table(rows))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
    return rows
