"""The scikit-learn / xgboost references the benchmarks fit beside each scratch model.

Requires the ``bench`` extra (scikit-learn, xgboost); both are imported inside the
factories so importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batch import zoo


class ClusterReference:
    """k clusters from a scikit-learn clusterer, each scored by its training churn rate (k-means / Ward).

    Parameters
    ----------
    kind : {"kmeans", "ward"}, default "kmeans"
    n_clusters : int, default 20
    max_samples : int, default 2000
        Rows Ward clustering is fitted on (it is quadratic in rows).
    random_state : int, default 42
    """

    def __init__(
        self, kind: str = "kmeans", n_clusters: int = 20, max_samples: int = 2000, random_state: int = 42
    ) -> None:
        self.kind, self.n_clusters, self.max_samples, self.random_state = kind, n_clusters, max_samples, random_state

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {"kind": self.kind, "n_clusters": self.n_clusters}

    def fit(self, X: np.ndarray, y: np.ndarray) -> ClusterReference:
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


def holdout_references(feature_index: dict[str, int]) -> dict[str, tuple[str, Any]]:
    """The reference of every zoo model in ``churn bench models`` and ``models-cv``.

    Parameters
    ----------
    feature_index : dict of str to int
        Column of each feature (the simple regression reference uses ``tenure_months``).

    Returns
    -------
    dict of str to (str, callable)
        Zoo name -> (reference label, factory returning an unfitted estimator).
    """
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
        "kmeans": ("sklearn KMeans k=20", lambda: ClusterReference("kmeans")),
        "agglomerative": ("sklearn Agglomerative Ward k=20", lambda: ClusterReference("ward")),
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


def zoo_params(name: str) -> dict[str, Any]:
    """Hyperparameters of the zoo's ``name`` model, class defaults included.

    Parameters
    ----------
    name : str
        A zoo classifier.

    Returns
    -------
    dict
    """
    return zoo.classifiers({name})[name]().get_params()


def scale_references(n_jobs: int) -> dict[str, tuple[str, Any]]:
    """The reference fitted beside each scratch model at scale (``churn bench fit``).

    Same trees, depth, row sampling and threads as the zoo's entry.

    Parameters
    ----------
    n_jobs : int
        Threads of the reference's trees.

    Returns
    -------
    dict of str to (str, callable)
        Zoo name -> (label, factory).
    """
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from xgboost import XGBClassifier

    gbm = zoo_params("gradient_boosting")
    rf = zoo_params("random_forest")
    rfp = zoo_params("random_forest_pca")

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
