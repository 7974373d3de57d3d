"""The JSON of a micro-batch's scores and alerts: ``orjson.dumps`` of each document, byte for byte, written at once.

The members common to the batch are written once, floats come from one ``orjson.dumps``
per column, and every document is one ``b"".join`` of its parts split at the newline after
each (JSON text from orjson holds no raw newline). A batch whose texts would need a JSON
escape is dumped document by document instead. ``encode`` in the stage timings of
:func:`stream_app.scoring.score_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import orjson

from schemas.events import (
    PREDICTED_VALUE_FIELD,
    REASONS_FIELD,
    SCHEMA_VERSION,
    UNKNOWN_CATEGORIES_FIELD,
    VALUE_AT_RISK_FIELD,
)

__all__ = ["alert_documents", "float_texts", "score_documents"]


def float_texts(values: np.ndarray) -> list[bytes]:
    """``orjson.dumps`` of each float, from one call (a JSON number never holds a comma)."""
    return orjson.dumps(values.tolist())[1:-1].split(b",") if values.size else []


# An alert is its score's JSON with these members spliced in before the closing brace.
_ALERT_KEYS = [f',"{name}":'.encode() for name in (REASONS_FIELD, PREDICTED_VALUE_FIELD, VALUE_AT_RISK_FIELD)]


def alert_documents(
    scores: Sequence[tuple[bytes | None, bytes]], rows: Sequence[int], members: Sequence[Sequence[bytes]]
) -> list[tuple[bytes | None, bytes]]:
    """Alerts as (key, value): each row's score document with ``members`` spliced in before its brace.

    ``members`` are the JSON texts, one per alert, of ``reasons`` and, when given,
    ``predicted_value_usd`` and ``value_at_risk_usd``, in that order: the same bytes as dumping
    the score document with them appended. One ``b"".join`` writes every alert, split at the
    newline after each (the texts hold no raw newline).
    """
    m, width = len(rows), 2 * len(members) + 2
    parts: list[bytes] = [b""] * (width * m)
    parts[0::width] = [scores[i][1][:-1] for i in rows]
    for j, texts in enumerate(members):
        parts[2 * j + 1 :: width] = [_ALERT_KEYS[j]] * m
        parts[2 * j + 2 :: width] = texts
    parts[width - 1 :: width] = [b"}\n"] * m
    values = b"".join(parts).split(b"\n")
    values.pop()  # after the last newline
    return list(zip([scores[i][0] for i in rows], values))


#: Bytes whose character JSON text must escape (orjson writes every other character as it is, in
#: UTF-8, whose multi-byte sequences hold none of them), but NUL: it separates the texts of a column.
_ESCAPED_BUT_NUL = bytes(range(1, 32)) + b'"\\'


#: The churn label member, indexed by the label.
_LABEL_TEXTS = (b',"churn_label":false', b',"churn_label":true')


def _utf8_unescaped(texts: Sequence[str]) -> list[bytes] | None:
    """UTF-8 of each text, from one encode; None when any needs a JSON escape (NUL included)."""
    data = "\x00".join(texts).encode()
    if len(data.translate(None, _ESCAPED_BUT_NUL)) != len(data) or data.count(b"\x00") != len(texts) - 1:
        return None
    return data.split(b"\x00")


def _score_texts(
    event_ids: Sequence[str],
    times: Sequence[str],
    ids: Sequence[str],
    proba: np.ndarray,
    labels: Sequence[bool],
    unknown: Sequence[list[str]],
    head: dict[str, Any],
) -> tuple[list[bytes], list[bytes]] | None:
    """Each score document's JSON, the bytes ``orjson.dumps`` gives for its dict, and its key; or None.

    The members common to the batch are written once; ids and times are spliced in as
    UTF-8 when none needs a JSON escape (None otherwise: the caller dumps each dict),
    probabilities come from one ``orjson.dumps``. Every document of the batch is one
    ``b"".join`` of its parts, split at a newline after each (JSON text from orjson holds no
    raw newline, and the spliced texts hold no control character).

    Returns
    -------
    texts : list of bytes
    keys : list of bytes
        The UTF-8 of each customer id.
    """
    n = len(ids)
    columns = [_utf8_unescaped(column) for column in (event_ids, times, ids)]
    if n == 0 or any(column is None for column in columns):
        return None
    e, t, cid = cast("list[list[bytes]]", columns)
    common = orjson.dumps(head)[1:-1]
    clean = b"," + common + b',"' + UNKNOWN_CATEGORIES_FIELD.encode() + b'":[]}\n'
    unseen = b"," + common + b',"' + UNKNOWN_CATEGORIES_FIELD.encode() + b'":'
    ends = [clean] * n
    if any(unknown):
        for i, u in enumerate(unknown):
            if u:
                ends[i] = unseen + orjson.dumps(u) + b"}\n"
    parts: list[bytes] = [b""] * (10 * n)
    parts[0::10] = [b'{"event_id":"'] * n
    parts[1::10] = e
    parts[2::10] = [b'","event_time":"'] * n
    parts[3::10] = t
    parts[4::10] = [b'","schema_version":' + orjson.dumps(SCHEMA_VERSION) + b',"customer_id":"'] * n
    parts[5::10] = cid
    parts[6::10] = [b'","churn_probability":'] * n
    parts[7::10] = float_texts(proba)
    parts[8::10] = list(map(_LABEL_TEXTS.__getitem__, labels))
    parts[9::10] = ends
    texts = b"".join(parts).split(b"\n")
    texts.pop()  # after the last newline
    return texts, cid


def score_documents(
    event_ids: Sequence[str],
    times: Sequence[str],
    ids: Sequence[str],
    proba: np.ndarray,
    labels: Sequence[bool],
    unknown: Sequence[list[str]],
    head: dict[str, Any],
) -> tuple[list[bytes], list[bytes]]:
    """The score documents of a micro-batch as JSON, and their keys.

    Each text is the bytes ``orjson.dumps`` gives for the document (a
    :class:`schemas.events.ScoreEvent`): spliced from parts when no id or time needs a JSON
    escape, else dumped document by document.

    Parameters
    ----------
    event_ids, times, ids : sequence of str, length n
        ``event_id``, UTC ISO 8601 ``event_time`` and normalised ``customer_id`` of each event.
    proba : ndarray of shape (n,), float64
        Churn probabilities.
    labels : sequence of bool, length n
        ``churn_label`` (probability at or above the threshold).
    unknown : sequence of list of str, length n
        ``unknown_categories`` of each event.
    head : dict of str to object
        The members common to the batch (``threshold``, ``model_name``, ``model_version``,
        ``scored_at``), written after ``churn_label``.

    Returns
    -------
    texts : list of bytes
    keys : list of bytes
        The UTF-8 of each customer id (the record key).
    """
    spliced = _score_texts(event_ids, times, ids, proba, labels, unknown, head)
    if spliced is not None:
        return spliced
    texts = [
        orjson.dumps(
            {
                "event_id": e,
                "event_time": t,
                "schema_version": SCHEMA_VERSION,
                "customer_id": cid,
                "churn_probability": p,
                "churn_label": label,
                **head,
                UNKNOWN_CATEGORIES_FIELD: u,
            }
        )
        for e, t, cid, p, label, u in zip(event_ids, times, ids, proba.tolist(), labels, unknown)
    ]
    return texts, [cid.encode() for cid in ids]
