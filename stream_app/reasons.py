"""Reason codes: the features pushing each row's churn score up, for alerts and API predictions.

A model that can explain its scores exposes ``feature_contributions(X)`` (per row, per
feature, the push on its score): the tree ensembles' Saabas path contributions (Saabas,
"Interpreting random forests", 2014) and the linear models' coefficient times value.
The top ``k`` positive ones are the reasons; a model without contributions gives none.
:func:`reason_texts` writes them straight to JSON for the hot path, byte for byte what
``orjson.dumps`` gives for :func:`reason_codes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stream_app.encode import float_texts

if TYPE_CHECKING:  # type only: scoring imports this module
    from stream_app.scoring import LoadedModel

__all__ = ["reason_codes", "reason_texts", "top_contributions"]


def top_contributions(
    model: LoadedModel, X: np.ndarray, k: int, leaves: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's ``k`` largest path contributions, largest first; None for a model without them.

    Returns
    -------
    top : ndarray of shape (n_samples, min(k, n_features_out)), intp
        Column of ``feature_names_out``.
    values : ndarray of the same shape, float64
    """
    contrib_fn = getattr(model.pipeline.model, "feature_contributions", None)
    if contrib_fn is None:
        return None
    contrib = contrib_fn(X) if leaves is None else contrib_fn(X, leaves=leaves)
    n, d = contrib.shape
    if k >= min(d, 8):
        top = np.argsort(-contrib, axis=1)[:, :k]
        return top, np.take_along_axis(contrib, top, axis=1)
    # A few reasons of many features: one argmax pass per reason beats sorting every row.
    work = contrib.copy()
    rows = np.arange(n)
    top = np.empty((n, k), dtype=np.intp)
    for i in range(k):
        top[:, i] = column = work.argmax(axis=1)
        work[rows, column] = -np.inf
    return top, np.take_along_axis(contrib, top, axis=1)


def reason_codes(model: LoadedModel, X: np.ndarray, k: int = 3) -> list[list[dict[str, Any]]]:
    """The features pushing each row's churn score up: the ``reasons`` of alerts and API predictions.

    Parameters
    ----------
    model : LoadedModel
        Its model's ``feature_contributions(X)`` (per-row, per-feature push on the score)
        gives the codes; a model without it gives none.
    X : ndarray of shape (n_samples, n_features_out), float64
        Rows as transformed by ``model.pipeline`` (its ``feature_names_out`` order).
    k : int, default 3
        Most reasons per row.

    Returns
    -------
    list of list of dict
        Per row, up to ``k`` ``{"feature": str, "contribution": float}`` with a positive
        contribution, largest first (the :class:`~schemas.events.Reason` contract).
    """
    found = top_contributions(model, X, k) if len(X) else None
    if found is None:
        return [[] for _ in range(len(X))]
    top, values = found
    names = model.pipeline.feature_names_out
    return [
        [{"feature": names[j], "contribution": c} for j, c in zip(cols, vals) if c > 0]
        for cols, vals in zip(top.tolist(), values.tolist())
    ]


def reason_texts(model: LoadedModel, X: np.ndarray, k: int = 3, leaves: np.ndarray | None = None) -> list[bytes]:
    """:func:`reason_codes` of each row as its JSON text: ``orjson.dumps`` of the list, byte for byte.

    The alerts' hot path: no dict per reason, one ``orjson.dumps`` for every contribution
    of the batch, and the ``{"feature":...,"contribution":`` prefix of each feature written once
    per model.

    Parameters
    ----------
    model : LoadedModel
    X : ndarray of shape (n_samples, n_features_out), float64
    k : int, default 3
    leaves : ndarray of shape (n_trees, n_samples), optional
        :func:`leaves_of` these rows, when known.

    Returns
    -------
    list of bytes
        One JSON array per row.
    """
    found = top_contributions(model, X, k, leaves) if len(X) else None
    if found is None:
        return [b"[]"] * len(X)
    top, values = found
    m, width = top.shape
    positive = values > 0  # each row's positive ones come first: values are sorted
    prefixes = model.reason_prefixes
    # Every row's parts side by side: per reason slot "[" or ",", prefix, contribution, "}"
    # (all empty past the row's positive ones), then "]" and a newline to split at.
    parts = np.full((m, 4 * width + 1), b"", dtype=object)
    openers = np.array([b"["] + [b","] * (width - 1), dtype=object)
    parts[:, 0:-1:4] = np.where(positive, openers, b"")
    parts[:, 1:-1:4] = prefixes[np.where(positive, top, len(prefixes) - 1)]
    contributions = parts[:, 2:-1:4]
    contributions[positive] = float_texts(values[positive])
    parts[:, 3:-1:4] = np.where(positive, b"}", b"")
    parts[:, -1] = np.where(positive[:, 0], b"]\n", b"[]\n")
    texts = b"".join(parts.ravel().tolist()).split(b"\n")
    texts.pop()  # after the last newline
    return texts
