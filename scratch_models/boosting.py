"""Second-order gradient tree boosting in the manner of XGBoost.

Chen & Guestrin, "XGBoost: A Scalable Tree Boosting System", KDD 2016: each tree
fits the second-order Taylor expansion of the loss around the current margin.
With per-row gradient ``g`` and hessian ``h``, a leaf holding rows ``I`` gets the
weight ``w* = -G / (H + lambda)`` (``G = sum_I g``, ``H = sum_I h``; eq. 5) and a
split gains ``0.5 [G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G^2/(H+lambda)] - gamma``
(eq. 7). Shrinkage (``learning_rate``), row subsampling and per-tree column
subsampling follow sec. 2.3. Splits are searched on 255 quantile bins per feature
computed once before boosting (the paper's approximate algorithm, sec. 3.3).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from scratch_models import _histogram as H
from scratch_models.base import BaseModel, ClassifierMixin, RegressorMixin
from scratch_models.linear import _sigmoid
from scratch_models.tree import _importances, _TreeStateMixin
from scratch_models.validation import check_X_y


class _BaseGradientBoosting(_TreeStateMixin, BaseModel):
    """Shared boosting loop; subclasses give the loss (gradient, hessian, loss value)."""

    def __init__(
        self,
        n_estimators: int = 100,
        learning_rate: float = 0.1,
        max_depth: int = 3,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        gamma: float = 0.0,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        max_bins: int = 255,
        base_score: float | None = None,
        n_iter_no_change: int | None = None,
        validation_fraction: float = 0.1,
        n_jobs: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.gamma = gamma
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_bins = max_bins
        self.base_score = base_score
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.n_jobs = n_jobs
        self.random_state = random_state

    # --- loss hooks
    def _base_margin(self, y: np.ndarray) -> float:
        raise NotImplementedError

    def _grad_hess(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _loss(self, y: np.ndarray, margin: np.ndarray) -> float:
        raise NotImplementedError

    def _validation_split(self, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = y.shape[0]
        perm = rng.permutation(n)
        k = max(1, int(round(self.validation_fraction * n)))
        return np.sort(perm[k:]), np.sort(perm[:k])

    def _check_params(self) -> None:
        if not isinstance(self.n_estimators, (int, np.integer)) or self.n_estimators < 1:
            raise ValueError(f"n_estimators: expected an int >= 1, got {self.n_estimators!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: expected > 0, got {self.learning_rate!r}")
        if not isinstance(self.max_depth, (int, np.integer)) or self.max_depth < 1:
            raise ValueError(f"max_depth: expected an int >= 1, got {self.max_depth!r}")
        if self.min_child_weight < 0 or self.reg_lambda < 0 or self.gamma < 0:
            raise ValueError(
                "min_child_weight, reg_lambda and gamma: expected >= 0, got "
                f"{self.min_child_weight!r}, {self.reg_lambda!r}, {self.gamma!r}"
            )
        for name in ("subsample", "colsample_bytree"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name}: expected a fraction in (0, 1], got {v!r}")
        nj = self.n_jobs
        if nj is not None and (isinstance(nj, bool) or not isinstance(nj, (int, np.integer)) or nj == 0 or nj < -1):
            raise ValueError(f"n_jobs: expected None, -1 or an int >= 1, got {nj!r}")
        if self.n_iter_no_change is not None:
            if self.n_iter_no_change < 1:
                raise ValueError(f"n_iter_no_change: expected an int >= 1 or None, got {self.n_iter_no_change!r}")
            if not 0.0 < self.validation_fraction < 1.0:
                raise ValueError(
                    f"validation_fraction: expected a fraction in (0, 1), got {self.validation_fraction!r}"
                )

    def _boost(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit ``trees_`` on ``X`` (float64, validated) and float targets ``y`` (0/1 or real)."""
        self._check_params()
        n_threads = 1 if self.n_jobs is None else (os.cpu_count() or 1) if self.n_jobs == -1 else int(self.n_jobs)
        if n_threads > 1:
            with ThreadPoolExecutor(n_threads) as pool:
                self._boost_with(X, y, pool)
        else:
            self._boost_with(X, y, None)

    def _boost_with(self, X: np.ndarray, y: np.ndarray, pool: ThreadPoolExecutor | None) -> None:
        n, d = X.shape
        rng = np.random.default_rng(self.random_state)
        mapper = H.BinMapper(self.max_bins, rng).fit(X)
        codes = mapper.transform(X)
        if self.n_iter_no_change is not None:
            tr, va = self._validation_split(y, rng)
        else:
            tr, va = np.arange(n), np.arange(0)
        codes_tr, y_tr = (codes, y) if va.shape[0] == 0 else (np.ascontiguousarray(codes[:, tr]), y[tr])
        codes_va, y_va = codes[:, va], y[va]
        n_tr = y_tr.shape[0]

        base = self._base_margin(y_tr) if self.base_score is None else self._margin_of(float(self.base_score))
        margin = np.full(n_tr, base)
        margin_va = np.full(y_va.shape[0], base)
        crit = H.newton_criterion(self.reg_lambda)
        n_sub = max(1, int(round(self.subsample * n_tr)))
        n_col = max(1, int(round(self.colsample_bytree * d)))
        lr = float(self.learning_rate)

        trees: list[H.GrownTree] = []
        best_loss, best_iter, val_losses = np.inf, 0, []
        stats = np.empty((n_tr, 2))
        for it in range(self.n_estimators):
            g, h = self._grad_hess(y_tr, margin)
            stats[:, 0] = g
            stats[:, 1] = h
            if n_sub == n_tr:
                rows = np.arange(n_tr)
            else:
                # The drawn rows in increasing order: a mask is O(n) where sorting the draw is not.
                drawn = np.zeros(n_tr, dtype=bool)
                drawn[rng.choice(n_tr, n_sub, replace=False)] = True
                rows = np.flatnonzero(drawn)
            feats = None if n_col == d else np.sort(rng.choice(d, n_col, replace=False))
            tree = H.grow_tree(
                codes_tr,
                mapper.n_bins,
                stats,
                rows,
                crit,
                max_depth=self.max_depth,
                min_samples_split=0.0,
                min_samples_leaf=self.min_child_weight,
                min_gain=self.gamma,
                features=feats,
                pool=pool,
            )
            tree.value *= lr
            trees.append(tree)
            # Margin update: rows the tree was grown on know their leaf already.
            if n_sub == n_tr:
                leaf = tree.row_leaf
            else:
                leaf = np.empty(n_tr, dtype=np.intp)
                leaf[rows] = tree.row_leaf
                out = np.flatnonzero(~drawn)
                leaf[out] = H.apply_binned(tree, codes_tr[:, out])
            margin += tree.value[leaf, 0]
            # Kept trees need no per-row leaves (3 MB a tree at a million rows: 2 GB over 600 trees).
            tree.row_leaf = np.empty(0, dtype=np.int32)
            if va.shape[0]:
                margin_va += tree.value[H.apply_binned(tree, codes_va), 0]
                loss = self._loss(y_va, margin_va)
                val_losses.append(loss)
                if loss < best_loss - 1e-12:
                    best_loss, best_iter = loss, it + 1
                elif self.n_iter_no_change is not None and it + 1 - best_iter >= self.n_iter_no_change:
                    break
        if va.shape[0]:
            trees = trees[:best_iter]
            self.validation_loss_ = np.asarray(val_losses)
        self.trees_ = H.TreeArrays.from_grown(trees, mapper.edges)
        self.base_margin_ = float(base)
        self.n_estimators_ = len(trees)
        self.feature_importances_ = _importances(trees, d)
        self.n_features_in_ = d

    def _margin_of(self, base_score: float) -> float:
        return base_score

    def leaves(self, X: Any) -> np.ndarray | None:
        """Leaf index of every row in every tree, for :meth:`decision_function` and
        :meth:`feature_contributions` of the same rows (or some of them) to share.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_trees, n_samples), uint8, or None
            None when the trees are deeper than the complete-tree form takes (depth > 6):
            then the other methods find the leaves themselves.
        """
        X = self._validate_X(X)
        return self.trees_.leaf_indices(X) if self.trees_._complete is not None else None

    def _checked_leaves(self, X: np.ndarray, leaves: np.ndarray | None) -> np.ndarray | None:
        if leaves is not None and leaves.shape != (self.trees_.n_trees, X.shape[0]):
            raise ValueError(
                f"leaves: expected shape ({self.trees_.n_trees}, {X.shape[0]}) from leaves(X), got {leaves.shape}"
            )
        return leaves

    def decision_function(self, X: Any, leaves: np.ndarray | None = None) -> np.ndarray:
        """Raw margin: base margin plus the sum of leaf weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        leaves : ndarray of shape (n_trees, n_samples), uint8, optional
            :meth:`leaves` of ``X``, when already known.

        Returns
        -------
        ndarray of shape (n_samples,), float64
            Log-odds of the positive class (classifier) or the prediction (regressor).
        """
        X = self._validate_X(X)
        return self.base_margin_ + self.trees_.leaf_sums(X, self._checked_leaves(X, leaves))[0]

    def feature_contributions(self, X: Any, leaves: np.ndarray | None = None) -> np.ndarray:
        """Per-feature contribution to the margin along each row's decision paths.

        Saabas path attribution (Saabas, "Interpreting random forests", 2014): each
        split on feature ``f`` credits ``f`` with the change of node weight from the
        node to the child the row takes. For every row,
        ``contributions.sum(axis=1) + expected_value_ == decision_function(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        leaves : ndarray of shape (n_trees, n_samples), uint8, optional
            :meth:`leaves` of ``X`` (its columns of these rows), when already known.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
            In margin units (log-odds for the classifier).
        """
        X = self._validate_X(X)
        contrib, _ = self.trees_.contributions(X, leaves=self._checked_leaves(X, leaves))
        return contrib

    @property
    def expected_value_(self) -> float:
        """Margin before any split: base margin plus the sum of root weights, float."""
        self._check_is_fitted()
        roots = self.trees_.offsets[:-1]
        return float(self.base_margin_ + self.trees_.value[roots, 0].sum())


class GradientBoostingClassifier(ClassifierMixin, _BaseGradientBoosting):
    """Binary gradient-boosted trees on the log-loss, XGBoost-style (second order).

    Parameters
    ----------
    n_estimators : int, default 600
        Boosting rounds (upper bound when early stopping). The defaults (600 trees,
        ``learning_rate`` 0.02, ``min_child_weight`` 10, ``colsample_bytree`` 0.5) were
        chosen on the Telco protocol's training split (validation split of the
        training rows); see ``tests/unit/scratch_models/test_boosting.py``.
    learning_rate : float, default 0.02
        Shrinkage applied to every tree's leaf weights.
    max_depth : int, default 3
        Depth of every tree.
    min_child_weight : float, default 10.0
        Minimum hessian sum of a child (``p(1-p)`` summed over its rows).
    reg_lambda : float, default 1.0
        L2 penalty on leaf weights.
    gamma : float, default 0.0
        Minimum split gain (``gamma`` of eq. 7).
    subsample : float, default 0.8
        Fraction of rows drawn without replacement for each tree.
    colsample_bytree : float, default 0.5
        Fraction of features drawn for each tree.
    max_bins : int, default 255
        Quantile bins per feature.
    base_score : float or None, default None
        Initial probability of the positive class; None uses the training rate.
    n_iter_no_change : int or None, default None
        If set, hold out ``validation_fraction`` of the training rows (stratified)
        and stop after this many rounds without improvement of their log-loss,
        keeping the best number of trees.
    validation_fraction : float, default 0.1
    n_jobs : int or None, default None
        Threads sharing each tree's histogram work (None: 1, -1: all cores); the
        model does not depend on it.
    random_state : int or None, default None
        Seed of ``np.random.default_rng`` (row/column subsampling, validation split).

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
    trees_ : TreeArrays
        All trees; node values are learning-rate-scaled weights.
    base_margin_ : float
        Log-odds the boosting starts from.
    n_estimators_ : int
        Trees kept (fewer than ``n_estimators`` after early stopping).
    feature_importances_ : ndarray of shape (n_features,), float64
        Total split gain per feature, summing to 1.
    validation_loss_ : ndarray of shape (n_rounds,), float64
        Only with early stopping: hold-out log-loss after each round.

    References
    ----------
    Chen & Guestrin, "XGBoost: A Scalable Tree Boosting System", KDD 2016.
    Friedman, "Greedy Function Approximation: A Gradient Boosting Machine", Ann. Statist., 2001.
    """

    def __init__(
        self,
        n_estimators: int = 600,
        learning_rate: float = 0.02,
        max_depth: int = 3,
        min_child_weight: float = 10.0,
        reg_lambda: float = 1.0,
        gamma: float = 0.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.5,
        max_bins: int = 255,
        base_score: float | None = None,
        n_iter_no_change: int | None = None,
        validation_fraction: float = 0.1,
        n_jobs: int | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            max_depth=max_depth,
            min_child_weight=min_child_weight,
            reg_lambda=reg_lambda,
            gamma=gamma,
            subsample=subsample,
            colsample_bytree=colsample_bytree,
            max_bins=max_bins,
            base_score=base_score,
            n_iter_no_change=n_iter_no_change,
            validation_fraction=validation_fraction,
            n_jobs=n_jobs,
            random_state=random_state,
        )

    def _base_margin(self, y: np.ndarray) -> float:
        p = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        return float(np.log(p / (1 - p)))

    def _margin_of(self, base_score: float) -> float:
        if not 0.0 < base_score < 1.0:
            raise ValueError(f"base_score: expected a probability in (0, 1), got {base_score!r}")
        return float(np.log(base_score / (1 - base_score)))

    def _grad_hess(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(margin)
        return p - y, np.maximum(p * (1.0 - p), 1e-16)

    def _loss(self, y: np.ndarray, margin: np.ndarray) -> float:
        # log(1 + e^m) - y m, computed without overflow.
        return float(np.mean(np.logaddexp(0.0, margin) - y * margin))

    def _validation_split(self, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        tr, va = [], []
        for c in (0.0, 1.0):
            idx = rng.permutation(np.flatnonzero(y == c))
            k = max(1, int(round(self.validation_fraction * idx.shape[0])))
            va.append(idx[:k])
            tr.append(idx[k:])
        return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))

    def fit(self, X: Any, y: Any) -> GradientBoostingClassifier:
        """Boost trees on ``X`` of shape (n_samples, n_features) and binary ``y`` of shape (n_samples,).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad shapes, non-finite values, a single class, more than two classes,
            or invalid hyperparameters.
        """
        X, y = check_X_y(X, y)
        y_idx = self._encode_y(y)
        if self.classes_.shape[0] != 2:
            raise ValueError(f"GradientBoostingClassifier is binary; y has {self.classes_.shape[0]} classes")
        self._boost(X, y_idx.astype(np.float64))
        return self

    def predict_proba(self, X: Any, leaves: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        leaves : ndarray of shape (n_trees, n_samples), uint8, optional
            :meth:`leaves` of ``X``, when already known.

        Returns
        -------
        ndarray of shape (n_samples, 2), float64
            ``[P(classes_[0]), P(classes_[1])]``; rows sum to 1.
        """
        p1 = _sigmoid(self.decision_function(X, leaves))
        return np.column_stack([1.0 - p1, p1])


class GradientBoostingRegressor(RegressorMixin, _BaseGradientBoosting):
    """Gradient-boosted regression trees on the squared error, XGBoost-style.

    With the squared error ``g = margin - y`` and ``h = 1``, so ``min_child_weight``
    is a minimum row count per leaf.

    Parameters
    ----------
    n_estimators : int, default 300
    learning_rate : float, default 0.1
    max_depth : int, default 6
    min_child_weight : float, default 1.0
    reg_lambda : float, default 1.0
    gamma : float, default 0.0
    subsample : float, default 1.0
    colsample_bytree : float, default 1.0
    max_bins : int, default 255
    base_score : float or None, default None
        Initial prediction; None uses the training mean.
    n_iter_no_change : int or None, default None
        Early stopping on a random ``validation_fraction`` of the rows (squared error).
    validation_fraction : float, default 0.1
    n_jobs : int or None, default None
        Threads sharing each tree's histogram work (None: 1, -1: all cores).
    random_state : int or None, default None

    Attributes
    ----------
    n_features_in_ : int
    trees_ : TreeArrays
    base_margin_ : float
    n_estimators_ : int
    feature_importances_ : ndarray of shape (n_features,), float64
    validation_loss_ : ndarray of shape (n_rounds,), float64
        Only with early stopping: hold-out mean squared error / 2 after each round.

    References
    ----------
    Chen & Guestrin, "XGBoost: A Scalable Tree Boosting System", KDD 2016.
    """

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.1,
        max_depth: int = 6,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        gamma: float = 0.0,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        max_bins: int = 255,
        base_score: float | None = None,
        n_iter_no_change: int | None = None,
        validation_fraction: float = 0.1,
        n_jobs: int | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            max_depth=max_depth,
            min_child_weight=min_child_weight,
            reg_lambda=reg_lambda,
            gamma=gamma,
            subsample=subsample,
            colsample_bytree=colsample_bytree,
            max_bins=max_bins,
            base_score=base_score,
            n_iter_no_change=n_iter_no_change,
            validation_fraction=validation_fraction,
            n_jobs=n_jobs,
            random_state=random_state,
        )

    def _base_margin(self, y: np.ndarray) -> float:
        return float(y.mean())

    def _grad_hess(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return margin - y, np.ones_like(y)

    def _loss(self, y: np.ndarray, margin: np.ndarray) -> float:
        return float(0.5 * np.mean((margin - y) ** 2))

    def fit(self, X: Any, y: Any) -> GradientBoostingRegressor:
        """Boost trees on ``X`` of shape (n_samples, n_features) and real ``y`` of shape (n_samples,).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad shapes, non-finite values or invalid hyperparameters.
        """
        X, y = check_X_y(X, y)
        self._boost(X, y.astype(np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted target: ndarray of shape (n_samples,), float64."""
        return self.decision_function(X)
