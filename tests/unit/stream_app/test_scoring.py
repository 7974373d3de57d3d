"""The scoring hot path, on a LogisticRegression trained on Telco (the model store: test_model_store.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from batch.features import frame_columns, regression_data
from schemas.events import ChurnAlert, DeadLetter, ScoreEvent
from schemas.profiles import TELCO
from schemas.topics import Topics
from scratch_models import ScoringPipeline
from scratch_models.regression import PolynomialRegression
from stream_app.model_store import CLASSIFIER_NAME
from stream_app.reasons import reason_codes
from stream_app.scoring import (
    STAGES,
    LoadedModel,
    RawRecord,
    decode_batch,
    event_columns,
    score_batch,
    unknown_categories,
)

N = 200
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def records_of(events, partition: int = 2, start: int = 1000) -> list[RawRecord]:
    return [RawRecord(Topics.CUSTOMERS, partition, start + i, k, v) for i, (k, v) in enumerate(events)]


def valid_doc(events, i: int = 0) -> dict:
    return orjson.loads(events[i][1])


# ------------------------------------------------------------------ scoring
def test_one_score_per_record_equal_to_batch_predictions(loaded, pipeline, events, frame):
    result = score_batch(loaded, records_of(events), now=NOW)
    assert len(result.scores) == N
    assert result.dead_letters == [] and result.failures == []
    expected = pipeline.predict_proba(frame_columns(frame.iloc[:N], TELCO.features))
    assert result.probabilities.shape == (N,)
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-12)
    for (key, value), (in_key, in_value), p in zip(result.scores, events, expected):
        doc = orjson.loads(value)
        ScoreEvent.model_validate(doc)
        source = orjson.loads(in_value)
        assert key == in_key == source["customer_id"].encode()
        assert doc["event_id"] == source["event_id"]
        assert doc["customer_id"] == source["customer_id"]
        assert doc["churn_probability"] == pytest.approx(p, abs=1e-12)
        assert doc["churn_label"] is (doc["churn_probability"] >= 0.5)
        assert doc["threshold"] == 0.5
        assert doc["model_name"] == CLASSIFIER_NAME and doc["model_version"] == "3"
        assert doc["scored_at"] == NOW.isoformat()


def test_batch_probabilities_do_not_depend_on_batch_composition(loaded, events):
    whole = score_batch(loaded, records_of(events), now=NOW).probabilities
    one_by_one = np.concatenate([score_batch(loaded, records_of([e]), now=NOW).probabilities for e in events[:20]])
    np.testing.assert_allclose(one_by_one, whole[:20], rtol=0, atol=1e-12)


@pytest.mark.parametrize("threshold", [0.5, 0.3, "a_score"])
def test_alerts_exactly_at_or_above_threshold_with_top_reasons(loaded, pipeline, events, threshold):
    if threshold == "a_score":
        # A threshold equal to one customer's probability: that customer must be alerted (>=).
        probs = np.sort(score_batch(loaded, records_of(events), now=NOW).probabilities)
        threshold = float(probs[150])
        assert probs[149] < threshold
    model = LoadedModel(
        ScoringPipeline(pipeline.preprocessor, pipeline.model, threshold=threshold), CLASSIFIER_NAME, "4"
    )
    result = score_batch(model, records_of(events), now=NOW)
    p = result.probabilities
    expected_rows = np.flatnonzero(p >= threshold)
    assert 0 < len(expected_rows) < N
    assert len(result.alerts) == len(expected_rows)
    score_ids = [orjson.loads(v)["event_id"] for _, v in result.scores]
    X = pipeline.transform(event_columns(decode_batch(records_of(events))[1], pipeline.feature_names_in))
    contrib = pipeline.model.feature_contributions(X)
    names = pipeline.feature_names_out
    for (key, value), row in zip(result.alerts, expected_rows):
        alert = orjson.loads(value)
        ChurnAlert.model_validate(alert)
        assert alert["event_id"] == score_ids[row]
        assert key == result.scores[row][0]
        assert alert["churn_probability"] >= threshold and alert["churn_label"] is True
        assert alert["threshold"] == threshold
        reasons = alert["reasons"]
        assert 1 <= len(reasons) <= 3
        values = [r["contribution"] for r in reasons]
        assert all(v > 0 for v in values)
        assert values == sorted(values, reverse=True)
        # They are the row's largest positive contributions, by name and value.
        top = np.argsort(-contrib[row])[: len(reasons)]
        assert [r["feature"] for r in reasons] == [names[j] for j in top]
        np.testing.assert_allclose(values, contrib[row, top], rtol=1e-12)
    assert len(result.alerts) == int(np.sum(p >= threshold))
    # Nobody below the threshold is alerted.
    alerted = {orjson.loads(v)["event_id"] for _, v in result.alerts}
    below = {score_ids[i] for i in np.flatnonzero(p < threshold)}
    assert not alerted & below


@pytest.fixture(scope="module")
def valued(frame) -> LoadedModel:
    data = regression_data(frame, TELCO)
    model = PolynomialRegression(degree=2, alpha=1.0).fit(data.X_train, data.y_train)
    return LoadedModel(ScoringPipeline(data.preprocessor, model), "sales-regressor", "2")


def test_alerts_with_a_value_model_are_the_dumped_documents(boosted, valued, events):
    result = score_batch(boosted, records_of(events), now=NOW, value_model=valued)
    assert len(result.alerts) == len(result.alert_rows) > 0
    columns = result.columns
    values = np.maximum(valued.pipeline.predict({n: columns[n] for n in valued.pipeline.feature_names_in}), 0.0)
    X = boosted.pipeline.transform(columns)
    reasons = reason_codes(boosted, X[result.alert_rows])
    for (key, value), row, r in zip(result.alerts, result.alert_rows.tolist(), reasons):
        assert key == result.scores[row][0]
        doc = orjson.loads(result.scores[row][1])
        p = result.probabilities[row]
        doc |= {"reasons": r, "predicted_value_usd": float(values[row]), "value_at_risk_usd": float(p * values[row])}
        assert value == orjson.dumps(doc)
        ChurnAlert.model_validate_json(value)


def test_score_and_alert_bytes_are_what_orjson_writes(boosted, valued, events):
    # Documents are spliced from parts; each must be orjson's own text of its dict, escapes included.
    docs = [valid_doc(events, i) for i in range(60)]
    docs[1]["contract"] = "Ten year"  # unknown category listed
    docs[2]["customer_id"] = "Çé-0042 "  # non-ASCII (normalised: trimmed)
    docs[3]["event_id"] = 'quote"and\\backslash'  # must be escaped: the whole batch is dumped per dict
    docs[4]["event_id"] = "del\x7f and \U0001d518"  # written as they are: spliced
    control = [dict(d) for d in docs[4:]]
    control[1]["event_id"] = "nul\x00"  # control characters are escaped: dumped per dict
    control[2]["customer_id"] = "line\nbreak"
    for batch in (docs[:2] + docs[4:], docs, control[:2], control[:1] + control[2:]):
        records = [RawRecord(Topics.CUSTOMERS, 0, i, b"k", orjson.dumps(d)) for i, d in enumerate(batch)]
        result = score_batch(boosted, records, now=NOW, value_model=valued)
        assert len(result.scores) == len(batch) and result.alerts
        for _, value in result.scores + result.alerts:
            assert value == orjson.dumps(orjson.loads(value))
        got = [orjson.loads(v) for _, v in result.scores]
        assert [d["unknown_categories"] for d in got] == [["contract"] if d is docs[1] else [] for d in batch]
        assert [d["event_id"] for d in got] == [d["event_id"] for d in batch]
        assert [k for k, _ in result.scores] == [d["customer_id"].strip().encode() for d in batch]
        if batch is docs:
            assert got[2]["customer_id"] == "Çé-0042" and result.scores[2][0] == "Çé-0042".encode()


def test_category_codes_from_distinct_values_featurise_as_the_text_does(boosted, events):
    # The coded path (columns_and_codes + transform(codes=...)) against the rows read one by one.
    docs = [valid_doc(events, i) for i in range(40)]
    docs[1]["internet_service"] = "Satellite"  # unseen: code -1, no indicator
    docs[2]["gender"] = "  Male"  # not normalised: that field takes the normaliser, no codes
    docs[3]["contract"] = "Ten year"
    records = [RawRecord(Topics.CUSTOMERS, 0, i, b"k", orjson.dumps(d)) for i, d in enumerate(docs)]
    contract, pipeline = boosted.contract, boosted.pipeline
    decoded = contract.decoder.decode(records)
    assert decoded.fields is not None and not decoded.failures
    names = pipeline.feature_names_in
    columns, codes = contract.columns_and_codes(
        decoded.rows, names, decoded.fields, decoded.distinct, boosted.categories
    )
    slow = contract.columns(decoded.rows, names)
    assert list(columns) == list(slow)
    for name in names:
        assert columns[name].dtype == slow[name].dtype and np.array_equal(columns[name], slow[name]), name
    assert "gender" not in codes and {"internet_service", "contract", "payment_method"} <= set(codes)
    assert codes["internet_service"][1] == -1 and codes["contract"][3] == -1
    X = pipeline.transform(columns, codes)
    unknown = pipeline.preprocessor.last_unknown_counts_
    np.testing.assert_array_equal(X, pipeline.transform(slow))
    assert unknown == pipeline.preprocessor.last_unknown_counts_
    assert unknown["internet_service"] == unknown["contract"] == 1
    # Unknown categories read off the codes when every categorical field has them, else off X.
    pre = pipeline.preprocessor
    every = {
        c: np.array([cats.tolist().index(v) if v in cats else -1 for v in slow[c]])
        for c, cats in zip(pre.categorical_features, pre.categories_)
    }
    assert (
        unknown_categories(boosted, X, every) == unknown_categories(boosted, X) == unknown_categories(boosted, X, codes)
    )
    assert unknown_categories(boosted, X)[0][1] == ["internet_service"]
    scored = score_batch(boosted, records, now=NOW)
    assert [orjson.loads(v)["unknown_categories"] for _, v in scored.scores[:4]] == [
        [],
        ["internet_service"],
        [],
        ["contract"],
    ]


def test_stage_timings_add_up(boosted, valued, events):
    timings: dict[str, float] = {}
    score_batch(boosted, records_of(events), now=NOW, value_model=valued, timings=timings)
    assert set(timings) == set(STAGES) and all(t >= 0 for t in timings.values())
    again = dict(timings)
    score_batch(boosted, records_of(events[:3]), now=NOW, timings=again)  # adds to what is there
    assert all(again[s] >= timings[s] for s in STAGES)


def test_empty_batch(loaded):
    result = score_batch(loaded, [], now=NOW)
    assert result.scores == [] and result.alerts == [] and result.dead_letters == []
    assert result.probabilities.shape == (0,)


def _bad_records(events) -> dict[str, tuple[bytes | None, str]]:
    """name -> (value bytes, expected stage)."""

    def mutated(**changes) -> bytes:
        doc = valid_doc(events, 5)
        for k, v in changes.items():
            if v is _DELETE:
                del doc[k]
            else:
                doc[k] = v
        return orjson.dumps(doc)

    return {
        "not_json": (b"{this is not json", "decode"),
        "not_utf8": (b'{"customer_id": "\xff\xfe\xfa"}', "decode"),
        "binary": (b"\x00\x9f\x92\x96\xff", "decode"),
        "empty": (b"", "decode"),
        "none": (None, "decode"),
        "json_array": (b"[1, 2, 3]", "decode"),
        "wrong_type": (mutated(tenure_months="twelve"), "validate"),
        "missing_field": (mutated(contract=_DELETE), "validate"),
        "negative_charges": (mutated(monthly_charges_usd=-12.5), "validate"),
        "null_categorical": (mutated(contract=None), "validate"),
        "naive_time": (mutated(event_time="2024-01-01T00:00:00"), "validate"),
        # Types are strict, as in the exported JSON Schema: pydantic's lax mode took all of these.
        "bool_as_string": (mutated(senior_citizen="Yes"), "validate"),
        "bool_as_number": (mutated(partner=1), "validate"),
        "number_as_string": (mutated(monthly_charges_usd="70.5"), "validate"),
        "number_as_bool": (mutated(total_charges_usd=True), "validate"),
        "integer_as_string": (mutated(tenure_months="12"), "validate"),
        "integer_as_bool": (mutated(tenure_months=True), "validate"),
        "integer_with_fraction": (mutated(tenure_months=12.5), "validate"),
        "version_as_string": (mutated(schema_version="1"), "validate"),
        "time_as_number": (mutated(event_time=1795987020), "validate"),
    }


_DELETE = object()


def test_bad_records_become_dead_letters_and_good_ones_are_still_scored(loaded, events):
    bad = _bad_records(events)
    good = events[:10]
    records: list[RawRecord] = []
    expected_bad: dict[int, tuple[str, bytes | None, str]] = {}
    offset = 500
    # Interleave: good, bad, good, bad, ...
    bad_items = list(bad.items())
    for i in range(max(len(good), len(bad_items))):
        if i < len(good):
            records.append(RawRecord(Topics.CUSTOMERS, 3, offset, good[i][0], good[i][1]))
            offset += 1
        if i < len(bad_items):
            name, (value, stage) = bad_items[i]
            records.append(RawRecord(Topics.CUSTOMERS, 3, offset, f"key-{name}".encode(), value))
            expected_bad[offset] = (name, value, stage)
            offset += 1

    result = score_batch(loaded, records, now=NOW)
    assert len(result.scores) == len(good)
    assert [orjson.loads(v)["event_id"] for _, v in result.scores] == [
        valid_doc(good, i)["event_id"] for i in range(10)
    ]
    alone = score_batch(loaded, records_of(good), now=NOW)
    np.testing.assert_array_equal(result.probabilities, alone.probabilities)

    assert len(result.dead_letters) == len(bad)
    seen = set()
    for key, value in result.dead_letters:
        doc = orjson.loads(value)
        DeadLetter.model_validate(doc)
        name, original, stage = expected_bad[doc["offset"]]
        seen.add(name)
        assert key == f"key-{name}".encode()
        assert doc["topic"] == Topics.CUSTOMERS
        assert doc["partition"] == 3
        assert doc["event_id"] == f"dlq-{Topics.CUSTOMERS}-3-{doc['offset']}"
        assert doc["stage"] == stage, name
        assert doc["original_key_b64"] == base64.b64encode(key).decode()
        if original is None:
            assert doc["original_value_b64"] is None
        else:
            assert base64.b64decode(doc["original_value_b64"]) == original
        assert doc["error_message"]
        assert doc["failed_at"] == NOW.isoformat()
    assert seen == set(bad)


def test_dead_letter_messages_name_the_field(loaded, events):
    bad = _bad_records(events)
    names = ["wrong_type", "missing_field", "negative_charges", "null_categorical", "empty", "none"]
    records = [RawRecord(Topics.CUSTOMERS, 0, i, None, bad[n][0]) for i, n in enumerate(names)]
    result = score_batch(loaded, records, now=NOW)
    assert result.scores == []
    by_offset = {f.record.offset: f for f in result.failures}
    assert by_offset[0].error_message.startswith("tenure_months: input should be a valid integer")
    assert by_offset[0].error_message.endswith("got 'twelve'")
    assert by_offset[0].error_class == "EventValidationError"
    assert by_offset[1].error_message == "contract: required field missing"
    assert by_offset[2].error_message.startswith("monthly_charges_usd: input should be greater than or equal to 0")
    assert by_offset[3].error_message.startswith("contract: input should be a valid string")
    assert by_offset[4].error_class == "EmptyValue"
    assert by_offset[5].error_class == "EmptyValue"
    lax = [
        "bool_as_string",
        "bool_as_number",
        "number_as_string",
        "number_as_bool",
        "integer_as_string",
        "integer_as_bool",
        "integer_with_fraction",
        "version_as_string",
        "time_as_number",
    ]
    lax_result = score_batch(
        loaded, [RawRecord(Topics.CUSTOMERS, 0, i, None, bad[n][0]) for i, n in enumerate(lax)], now=NOW
    )
    assert [f.error_message for f in lax_result.failures] == [
        "senior_citizen: input should be a valid boolean, got 'Yes'",
        "partner: input should be a valid boolean, got 1",
        "monthly_charges_usd: input should be a valid number, got '70.5'",
        "total_charges_usd: input should be a valid number, got True",
        "tenure_months: input should be a valid integer, got '12'",
        "tenure_months: input should be a valid integer, got True",
        "tenure_months: input should be a valid integer, got a number with a fractional part, got 12.5",
        "schema_version: input should be a valid integer, got '1'",
        "event_time: input should be an iso 8601 date-time string, got 1795987020",
    ]
    # Dead-letter key is null when the input key was.
    assert all(orjson.loads(v)["original_key_b64"] is None for _, v in result.dead_letters)


def test_unknown_category_is_scored_not_dead_lettered(loaded, pipeline, events):
    doc = valid_doc(events, 0)
    doc["contract"] = "Ten year"
    records = [RawRecord(Topics.CUSTOMERS, 0, 0, b"k", orjson.dumps(doc))]
    result = score_batch(loaded, records, now=NOW)
    assert result.dead_letters == [] and len(result.scores) == 1
    # All contract indicators are zero: same as the known row with those columns zeroed.
    known = score_batch(loaded, records_of(events[:1]), now=NOW)
    X = pipeline.transform(event_columns(decode_batch(records_of(events[:1]))[1], pipeline.feature_names_in))
    contract_cols = [j for j, n in enumerate(pipeline.feature_names_out) if n.startswith("contract=")]
    assert X[0, contract_cols].sum() == 1.0
    X[0, contract_cols] = 0.0
    expected = pipeline.model.predict_proba(X)[0, 1]
    assert result.probabilities[0] == pytest.approx(expected, abs=1e-12)
    assert result.probabilities[0] != known.probabilities[0]


def test_null_total_charges_follows_the_profile_rule_like_a_blank_cell(loaded, pipeline, events):
    # telco.yaml: blank TotalCharges is 0.0 at tenure 0 and invalid elsewhere; the stream reads a
    # null the same way (it used to impute the training median: issue 18).
    docs = [valid_doc(events, i) for i in range(3)]
    docs[1]["total_charges_usd"] = None
    docs[1]["tenure_months"] = 0
    docs[2]["total_charges_usd"] = None
    docs[2]["tenure_months"] = 7
    records = [RawRecord(Topics.CUSTOMERS, 0, i, b"k", orjson.dumps(d)) for i, d in enumerate(docs)]
    result = score_batch(loaded, records, now=NOW)
    assert len(result.scores) == 2 and [f.record.offset for f in result.failures] == [2]
    assert result.failures[0].stage == "validate"
    assert "total_charges_usd: expected a number (null is only valid when tenure_months is 0)" in (
        result.failures[0].error_message
    )
    filled = dict(docs[1], total_charges_usd=0.0)
    cols = event_columns(
        decode_batch([RawRecord(Topics.CUSTOMERS, 0, 9, b"k", orjson.dumps(filled))])[1], pipeline.feature_names_in
    )
    assert result.probabilities[1] == pytest.approx(pipeline.predict_proba(cols)[0], abs=1e-12)


def test_extra_fields_in_events_are_ignored_when_scoring(loaded, events):
    doc = valid_doc(events, 0)
    doc["unexpected"] = {"nested": True}
    result = score_batch(loaded, [RawRecord(Topics.CUSTOMERS, 0, 0, b"k", orjson.dumps(doc))], now=NOW)
    base = score_batch(loaded, records_of(events[:1]), now=NOW)
    assert result.dead_letters == []
    assert result.probabilities[0] == base.probabilities[0]


def test_integral_float_tenure_is_an_integer_as_in_json_schema(loaded, events):
    # JSON Schema's "integer" includes 12.0 (a pandas float column writes it so); 12.5 is refused above.
    doc = orjson.loads(events[5][1])
    as_int = score_batch(loaded, [RawRecord(Topics.CUSTOMERS, 0, 0, None, orjson.dumps(doc))], now=NOW)
    doc["tenure_months"] = float(doc["tenure_months"])
    as_float = score_batch(loaded, [RawRecord(Topics.CUSTOMERS, 0, 1, None, orjson.dumps(doc))], now=NOW)
    assert as_float.failures == [] and len(as_float.scores) == 1
    np.testing.assert_array_equal(as_float.probabilities, as_int.probabilities)


def test_fast_decoder_understands_the_contract():
    # None would silently send every record through pydantic (correct, but several times slower).
    from schemas.events import CustomerEvent
    from stream_app.decode import decoder_for

    checks = decoder_for(CustomerEvent).checks
    assert checks is not None
    assert {c.name: c.types for c in checks}["senior_citizen"] == frozenset({bool})
