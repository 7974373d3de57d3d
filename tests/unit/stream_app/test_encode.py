"""The batch JSON writers: every text is orjson's own bytes for its document, spliced or dumped."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from schemas.events import SCHEMA_VERSION
from stream_app.encode import alert_documents, float_texts, score_documents

HEAD = {
    "threshold": 0.3,
    "model_name": "churn-classifier",
    "model_version": "7",
    "scored_at": "2024-05-01T12:00:00+00:00",
}


def expected_score(e, t, cid, p, label, unknown) -> bytes:
    doc = {
        "event_id": e,
        "event_time": t,
        "schema_version": SCHEMA_VERSION,
        "customer_id": cid,
        "churn_probability": p,
        "churn_label": label,
        **HEAD,
        "unknown_categories": unknown,
    }
    return orjson.dumps(doc)


def test_float_texts_are_orjson_numbers():
    values = np.array([0.0, 1.0, 0.1 + 0.2, 1e-7, 123456.789, 5e-324, 0.5])
    assert float_texts(values) == [orjson.dumps(v) for v in values.tolist()]
    assert float_texts(np.empty(0)) == []


@pytest.mark.parametrize(
    "customer_id",
    ["7590-VHVEG", "Çé-0042 \U0001d518", 'quote"d', "back\\slash", "tab\there", "nul\x00"],
    ids=["ascii", "utf8", "quote", "backslash", "control", "nul"],
)
def test_score_documents_are_the_dumped_documents(customer_id):
    ids = ["0001-A", customer_id, "0003-C"]
    event_ids = ["e1", "e2", "e3"]
    times = ["2024-05-01T11:59:00+00:00"] * 3
    proba = np.array([0.05, 0.31, 0.999])
    labels = (proba >= 0.3).tolist()
    unknown = [[], ["contract"], []]
    texts, keys = score_documents(event_ids, times, ids, proba, labels, unknown, HEAD)
    assert texts == [
        expected_score(e, t, c, p, label, u)
        for e, t, c, p, label, u in zip(event_ids, times, ids, proba.tolist(), labels, unknown)
    ]
    assert keys == [c.encode() for c in ids]


def test_alert_documents_splice_members_before_the_brace():
    scores = [(b"k0", b'{"a":1}'), (b"k1", b'{"a":2}'), (b"k2", b'{"a":3}')]
    reasons = [b'[{"feature":"tenure","contribution":0.5}]', b"[]"]
    got = alert_documents(
        scores, [0, 2], [reasons, float_texts(np.array([10.0, 20.5])), float_texts(np.array([1.0, 2.0]))]
    )
    assert got == [
        (
            b"k0",
            orjson.dumps(
                {
                    "a": 1,
                    "reasons": [{"feature": "tenure", "contribution": 0.5}],
                    "predicted_value_usd": 10.0,
                    "value_at_risk_usd": 1.0,
                }
            ),
        ),
        (b"k2", orjson.dumps({"a": 3, "reasons": [], "predicted_value_usd": 20.5, "value_at_risk_usd": 2.0})),
    ]
    assert alert_documents(scores, [1], [[b"[]"]]) == [(b"k1", b'{"a":2,"reasons":[]}')]
