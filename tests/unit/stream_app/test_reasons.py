"""Reason codes: the JSON texts equal the dumped codes; the argmax shortcut equals the sort."""

from __future__ import annotations

import numpy as np
import orjson

from schemas.topics import Topics
from scratch_models import ScoringPipeline
from stream_app.model_store import CLASSIFIER_NAME
from stream_app.reasons import reason_codes, reason_texts, top_contributions
from stream_app.scoring import LoadedModel, RawRecord, decode_batch, event_columns


def records_of(events) -> list[RawRecord]:
    return [RawRecord(Topics.CUSTOMERS, 0, i, k, v) for i, (k, v) in enumerate(events)]


def test_reason_texts_are_the_dumped_reason_codes(loaded, boosted, pipeline, events):
    X = pipeline.transform(event_columns(decode_batch(records_of(events))[1], pipeline.feature_names_in))
    for model in (loaded, boosted):
        for k in (1, 3, 100):
            assert reason_texts(model, X, k) == [orjson.dumps(r) for r in reason_codes(model, X, k)]
    # Rows without any positive contribution have no reasons; a model without contributions gives none.

    class PullsDown:
        def feature_contributions(self, X):
            return -np.abs(X)

    for model in (PullsDown(), object()):
        stand_in = LoadedModel(ScoringPipeline(pipeline.preprocessor, model), CLASSIFIER_NAME, "0")  # type: ignore[arg-type]
        assert reason_texts(stand_in, X[:5]) == [b"[]"] * 5 == [orjson.dumps(r) for r in reason_codes(stand_in, X[:5])]
    assert reason_texts(loaded, X[:0]) == []


def test_top_reasons_by_argmax_passes_equal_the_sort(pipeline):
    contrib = np.random.default_rng(3).normal(size=(50, 41))

    class Given:
        def feature_contributions(self, X):
            return contrib

    model = LoadedModel(ScoringPipeline(pipeline.preprocessor, Given()), CLASSIFIER_NAME, "0")  # type: ignore[arg-type]
    for k in (1, 2, 3, 7, 8, 41, 100):
        top, values = top_contributions(model, contrib, k)
        expected = np.argsort(-contrib, axis=1)[:, :k]
        np.testing.assert_array_equal(top, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(contrib, expected, axis=1))
