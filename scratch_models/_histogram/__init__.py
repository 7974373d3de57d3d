"""Shared machinery of the tree family, split like scikit-learn's ``_hist_gradient_boosting``.

- :mod:`.binning`: per-feature quantile bins and ``uint8`` codes (:class:`BinMapper`);
- :mod:`.histogram`: per-node histograms of row statistics;
- :mod:`.splitting`: split criteria (:class:`Criterion`) and the best split of every node;
- :mod:`.grower`: level-wise growth of one tree (:func:`grow_tree`, :class:`GrownTree`);
- :mod:`.predictor`: flat storage and vectorised traversal of fitted trees (:class:`TreeArrays`).

Histogram split finding follows LightGBM (Ke et al., "LightGBM: A Highly Efficient
Gradient Boosting Decision Tree", NeurIPS 2017) and XGBoost's ``hist`` method
(Chen & Guestrin, "XGBoost: A Scalable Tree Boosting System", KDD 2016, sec. 3.3):
each feature is cut once into at most 255 quantile bins stored as ``uint8``; a
node's split search then scans per-bin sums of row statistics instead of sorted
values.

Internal package: the estimators in ``tree``, ``forest`` and ``boosting`` are the
public interface; they use the names re-exported here.
"""

from scratch_models._histogram.binning import MAX_BINS, BinMapper
from scratch_models._histogram.grower import GrownTree, apply_binned, grow_tree, resolve_max_features
from scratch_models._histogram.predictor import TreeArrays
from scratch_models._histogram.splitting import (
    Criterion,
    entropy_criterion,
    gini_criterion,
    newton_criterion,
    squared_error_criterion,
)

__all__ = [
    "MAX_BINS",
    "BinMapper",
    "Criterion",
    "GrownTree",
    "TreeArrays",
    "apply_binned",
    "entropy_criterion",
    "gini_criterion",
    "grow_tree",
    "newton_criterion",
    "resolve_max_features",
    "squared_error_criterion",
]
