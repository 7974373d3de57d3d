"""One customer's design-matrix row by dictionary look-ups: the API's single-customer path.

:meth:`~scratch_models.preprocessing.TabularPreprocessor.transform` works column by column
with numpy (conversion, ``searchsorted``, fancy indexing per categorical column): right for
a micro-batch, but for one row its cost is a dozen numpy calls per column, about 0.1 ms per
model, most of a single-customer request. :class:`OneRowEncoder` gives the same row from
a value -> column table built once per preprocessor. Unit tests pin it equal to ``transform``
(imputation, scaling, unseen categories, infinite values refused).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from scratch_models.preprocessing import TabularPreprocessor


class OneRowEncoder:
    """:meth:`TabularPreprocessor.transform` of a single row, and the fields with an unseen category.

    Parameters
    ----------
    pre : TabularPreprocessor
        A fitted preprocessor (its medians, means, scales and categories are read once).

    Attributes
    ----------
    n_features_out : int
        ``len(pre.feature_names_out_)``.
    """

    def __init__(self, pre: TabularPreprocessor) -> None:
        self.n_features_out = len(pre.feature_names_out_)
        self._numeric = [
            (name, float(median), float(mean), float(scale))
            for name, median, mean, scale in zip(
                pre.numeric_features, pre.median_.tolist(), pre.mean_.tolist(), pre.scale_.tolist()
            )
        ]
        self._categorical: list[tuple[str, dict[str, int]]] = []
        k = len(pre.numeric_features)
        for name, cats in zip(pre.categorical_features, pre.categories_):
            self._categorical.append((name, {c: k + i for i, c in enumerate(cats.tolist())}))
            k += len(cats)

    def transform(self, columns: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
        """The design matrix of a one-row ``columns`` and its categorical fields with an unseen value.

        Parameters
        ----------
        columns : mapping of str to ndarray of shape (1,)
            As :meth:`~stream_app.contract.EventContract.columns` gives them: text fields
            str, the rest float64.

        Returns
        -------
        X : ndarray of shape (1, n_features_out), float64
            Equal to ``pre.transform(columns)``.
        unknown : list of str
            Categorical fields whose value ``pre`` never saw in training (encoded as all
            zeros), in ``pre``'s order.

        Raises
        ------
        ValueError
            If a column is missing or a numeric value is infinite (as ``transform``).
        """
        row = [0.0] * self.n_features_out
        for j, (name, median, mean, scale) in enumerate(self._numeric):
            if name not in columns:
                raise ValueError(f"missing numeric column {name!r}")
            x = float(columns[name][0])
            if math.isinf(x):
                raise ValueError("numeric columns: expected finite values or NaN, got infinity")
            row[j] = ((median if math.isnan(x) else x) - mean) / scale
        unknown: list[str] = []
        for name, index in self._categorical:
            if name not in columns:
                raise ValueError(f"missing categorical column {name!r}")
            col = columns[name]
            value = col[0] if col.dtype.kind == "U" else np.asarray(col, dtype=str)[0]
            column = index.get(str(value))
            if column is None:
                unknown.append(name)
            else:
                row[column] = 1.0
        return np.array([row]), unknown


_ENCODERS: weakref.WeakKeyDictionary[TabularPreprocessor, OneRowEncoder] = weakref.WeakKeyDictionary()


def one_row_encoder(pre: TabularPreprocessor) -> OneRowEncoder:
    """The :class:`OneRowEncoder` of ``pre``, built on first use and kept while ``pre`` lives.

    A preprocessor is fitted once and never refitted in a process that serves it (models
    are swapped, not changed), so the table stays valid for its lifetime.
    """
    encoder = _ENCODERS.get(pre)
    if encoder is None:
        encoder = _ENCODERS[pre] = OneRowEncoder(pre)
    return encoder
