"""Column-wise featurisation: median imputation, standard scaling, one-hot encoding.

Fitted in the batch job, saved inside the scoring artifact, and applied unchanged
by the stream worker and the API, so every path featurises exactly as training did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scratch_models.validation import NotFittedError


class TabularPreprocessor:
    """Turn named raw columns into one float64 design matrix.

    Numeric columns: NaN -> training median, then ``(x - mean) / std`` (population
    std; a constant column is only centred). Categorical columns: one indicator per
    training category, in sorted order; an unseen category encodes as all zeros
    (the "ignore" policy of scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``)
    and is counted in :attr:`last_unknown_counts_`.

    Parameters
    ----------
    numeric_features : sequence of str
    categorical_features : sequence of str
    scale : bool, default True
        Standardise numeric columns; tree models do not need it but it does no harm.

    Attributes
    ----------
    median_, mean_, scale_ : ndarray of shape (n_numeric,), float64
    categories_ : list of ndarray of str
    feature_names_out_ : list of str
        Column order of :meth:`transform`'s output: numerics, then ``"col=value"``.
    """

    #: The last preprocessor :meth:`_shared_blocks` compared with, and its answer.
    _shared_cache: tuple[TabularPreprocessor, dict[str, int]] | None = None

    def __init__(
        self,
        numeric_features: Sequence[str] = (),
        categorical_features: Sequence[str] = (),
        scale: bool = True,
    ) -> None:
        self.numeric_features = list(numeric_features)
        self.categorical_features = list(categorical_features)
        self.scale = scale

    @property
    def feature_names_in_(self) -> list[str]:
        """Input column names, numerics first."""
        return self.numeric_features + self.categorical_features

    def _numeric_block(self, columns: Mapping[str, Any], n_rows: int | None = None) -> np.ndarray:
        if not self.numeric_features:
            n = n_rows if n_rows is not None else len(next(iter(columns.values()))) if columns else 0
            return np.empty((n, 0))
        try:
            return np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in self.numeric_features])
        except KeyError as exc:
            raise ValueError(f"missing numeric column {exc.args[0]!r}") from None

    def fit(self, columns: Mapping[str, Any]) -> TabularPreprocessor:
        """Learn medians, means, scales and category lists.

        Parameters
        ----------
        columns : mapping of str to array-like of shape (n_samples,)
            Numeric columns may hold NaN; categorical columns hold strings.

        Raises
        ------
        ValueError
            If a column is missing or a numeric column is entirely NaN or infinite.
        """
        num = self._numeric_block(columns)
        if np.isinf(num).any():
            raise ValueError("numeric columns: expected finite values or NaN, got infinity")
        with np.errstate(all="ignore"):
            median = np.nanmedian(num, axis=0) if num.shape[1] else np.empty(0)
        if np.isnan(median).any():
            bad = [c for c, m in zip(self.numeric_features, median) if np.isnan(m)]
            raise ValueError(f"numeric columns {bad} have no values to learn from")
        filled = np.where(np.isnan(num), median, num)
        self.median_ = median
        if self.scale:
            self.mean_ = filled.mean(axis=0)
            std = filled.std(axis=0)
            self.scale_ = np.where(std > 0, std, 1.0)
        else:
            self.mean_ = np.zeros(num.shape[1])
            self.scale_ = np.ones(num.shape[1])
        self._shared_cache = None
        self.categories_ = []
        for c in self.categorical_features:
            if c not in columns:
                raise ValueError(f"missing categorical column {c!r}")
            self.categories_.append(np.unique(np.asarray(columns[c], dtype=str)))
        self.feature_names_out_ = list(self.numeric_features) + [
            f"{c}={v}" for c, cats in zip(self.categorical_features, self.categories_) for v in cats
        ]
        return self

    def transform(
        self,
        columns: Mapping[str, Any],
        shared: tuple[TabularPreprocessor, np.ndarray] | None = None,
        codes: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Design matrix of shape (n_samples, len(feature_names_out_)), float64.

        Parameters
        ----------
        columns : mapping of str to array-like of shape (n_samples,)
        shared : (TabularPreprocessor, ndarray of shape (n_samples, n_other_out)), optional
            Another fitted preprocessor and its output for the same rows (a second model
            scoring the same events). The one-hot block of each categorical column it
            encodes with the very same categories is copied from there instead of
            encoded again, so ``columns`` need not hold that column; the result is the same.
        codes : mapping of str to ndarray of shape (n_samples,), int, optional
            For some categorical columns, each value's index in ``categories_`` (-1 for a
            value not among them), when the caller already knows it
            (:meth:`stream_app.contract.EventContract.columns_and_codes`): their one-hot
            blocks are set from it in one scatter, without searching the text; the result
            is the same.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            If a column is missing, a numeric value is infinite, or a code is outside
            ``-1 .. n_categories - 1``.
        """
        if not hasattr(self, "median_"):
            raise NotFittedError("TabularPreprocessor is not fitted yet; call fit first.")
        num = self._numeric_block(columns, None if shared is None else shared[1].shape[0])
        if np.isinf(num).any():
            raise ValueError("numeric columns: expected finite values or NaN, got infinity")
        num = np.where(np.isnan(num), self.median_, num)
        n = num.shape[0]
        n_out = len(self.feature_names_out_)
        out = np.zeros((n, n_out))
        k = num.shape[1]
        out[:, :k] = (num - self.mean_) / self.scale_
        unknown = {}
        rows = np.arange(n)
        blocks = self._shared_blocks(shared[0]) if shared is not None else {}
        coded: list[np.ndarray] = []  # codes shifted to their block's columns
        starts: list[int] = []
        for c, cats in zip(self.categorical_features, self.categories_):
            if codes is not None and c in codes and c not in blocks:
                code = np.asarray(codes[c])
                if code.shape != (n,) or (n and (code.min() < -1 or code.max() >= len(cats))):
                    raise ValueError(f"codes of {c!r}: expected {n} indices in -1 .. {len(cats) - 1}")
                unknown[c] = int(np.count_nonzero(code < 0))
                coded.append(code + k)  # -1 (unseen) stays below the block: masked out below
                starts.append(k)
                k += len(cats)
                continue
            if c in blocks:
                a = blocks[c]
                block = out[:, k : k + len(cats)]
                block[...] = shared[1][:, a : a + len(cats)]  # type: ignore[index]
                unknown[c] = int(n - np.count_nonzero(block))  # one indicator per known row
                k += len(cats)
                continue
            if c not in columns:
                raise ValueError(f"missing categorical column {c!r}")
            values = np.asarray(columns[c], dtype=str)
            idx = np.searchsorted(cats, values)
            idx_c = np.minimum(idx, len(cats) - 1)
            known = cats[idx_c] == values
            out[rows[known], k + idx_c[known]] = 1.0
            unknown[c] = int((~known).sum())
            k += len(cats)
        if coded:
            # One scatter for every coded column's ones (unseen values have none).
            cols = np.stack(coded)
            known = cols >= np.asarray(starts)[:, None]
            out.ravel()[(cols + rows * n_out)[known]] = 1.0
        self.last_unknown_counts_ = unknown
        return out

    def _shared_blocks(self, other: TabularPreprocessor) -> dict[str, int]:
        """Categorical columns ``other`` one-hot encodes with the same categories: name -> first column there.

        Kept for the last ``other`` asked about (a worker pairs the same two models batch after batch).
        """
        cached = self._shared_cache
        if cached is not None and cached[0] is other:
            return cached[1]
        start = len(other.numeric_features)
        theirs = {}
        for c, cats in zip(other.categorical_features, other.categories_):
            theirs[c] = (start, cats)
            start += len(cats)
        blocks = {
            c: theirs[c][0]
            for c, cats in zip(self.categorical_features, self.categories_)
            if c in theirs and np.array_equal(theirs[c][1], cats)
        }
        self._shared_cache = (other, blocks)
        return blocks

    def fit_transform(self, columns: Mapping[str, Any]) -> np.ndarray:
        """``fit(columns).transform(columns)``."""
        return self.fit(columns).transform(columns)

    # ----------------------------------------------------------- persistence
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON header part and arrays, for :class:`~scratch_models.pipeline.ScoringPipeline`."""
        if not hasattr(self, "median_"):
            raise NotFittedError("TabularPreprocessor is not fitted yet; call fit first.")
        meta = {
            "numeric_features": self.numeric_features,
            "categorical_features": self.categorical_features,
            "scale": self.scale,
            "categories": [c.tolist() for c in self.categories_],
        }
        arrays = {"median_": self.median_, "mean_": self.mean_, "scale_": self.scale_}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TabularPreprocessor:
        """Inverse of :meth:`get_state`."""
        pre = cls(meta["numeric_features"], meta["categorical_features"], meta["scale"])
        pre.median_ = arrays["median_"]
        pre.mean_ = arrays["mean_"]
        pre.scale_ = arrays["scale_"]
        pre.categories_ = [np.asarray(c, dtype=str) for c in meta["categories"]]
        pre.feature_names_out_ = list(pre.numeric_features) + [
            f"{c}={v}" for c, cats in zip(pre.categorical_features, pre.categories_) for v in cats
        ]
        return pre
