"""The fast decoder's shortcuts give exactly what the contract (pydantic) gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import AwareDatetime, TypeAdapter

from schemas.events import CustomerEvent
from stream_app.decode import (
    RawRecord,
    _canonical_utc_column,
    _utc_iso,
    _utc_iso_rewritten,
    decode_batch,
    decoder_for,
)


def _timestamps() -> list[str]:
    """Canonical UTC times (whole seconds, fractions, month ends, leap days) and near misses of each."""
    rng = random.Random(16)
    base = [
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2023, 2, 28, 0, 0, 0, tzinfo=UTC),
        datetime(2000, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 4, 30, 8, 0, 0, 500000, tzinfo=UTC),
    ]
    base += [datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 3e8)) for _ in range(40)]
    texts = [t.isoformat() for t in base]
    out = list(texts)
    swaps = "0159-:T t.,+Z a\u0663\uff13\x00"
    for text in texts[:12]:
        for pos in range(len(text)):
            out += [text[:pos] + c + text[pos + 1 :] for c in swaps]
        out += [text[:-6] + "Z", text[:-6] + "+01:00", text[:-6], text + "0", text[:-1], " " + text]
        if len(text) == 32:
            out += [text[:20] + "5" + text[26:], text[:20] + "000000" + text[26:], text[:19] + text[26:]]
    out += ["2023-02-29T00:00:00+00:00", "2024-13-01T00:00:00+00:00", "2024-00-10T00:00:00+00:00"]
    out += ["0000-01-01T00:00:00+00:00", "2024-01-01T24:00:00+00:00", "2024-01-01T23:60:00+00:00"]
    out += ["2024-01-01T23:59:60+00:00", "2024-04-31T00:00:00+00:00", "2024-W01-1T00:00:00+00:00"]
    out += ["1900-02-29T00:00:00+00:00", "2100-02-29T00:00:00.000001+00:00", "2024-01-01T00:00:00.000000+00:00"]
    return out


def test_time_shortcuts_equal_parsing_and_writing_again():
    values = _timestamps()
    for v in values:
        assert _utc_iso(v) == _utc_iso_rewritten(v), v
        # One-value columns: accepted exactly when parsing and writing again gives the same text.
        assert _canonical_utc_column([v]) == (_utc_iso_rewritten(v) == v), v
    canonical = [v for v in values if _utc_iso_rewritten(v) == v]
    assert len(canonical) > 40
    adapter = TypeAdapter(AwareDatetime)
    for v in canonical:  # what pydantic and the contract's _to_utc make of them
        assert adapter.validate_python(v).astimezone(UTC).isoformat() == v
    by_length = {n: [v for v in canonical if len(v) == n] for n in (25, 32)}
    assert all(len(group) > 5 for group in by_length.values())
    for group in by_length.values():
        assert _canonical_utc_column(group)
        assert not _canonical_utc_column([*group, "2023-02-29T00:00:00+00:00"[: len(group[0])]])
    assert not _canonical_utc_column(by_length[25] + by_length[32])  # mixed lengths: value by value
    assert not _canonical_utc_column([*by_length[25], 1714564800])


@pytest.fixture(scope="module")
def docs(telco_csv) -> list[dict]:
    from churn_stream.produce import csv_to_customer_events

    return [orjson.loads(v) for _, v in csv_to_customer_events(telco_csv, limit=40)]


def test_fast_decoder_rows_and_times_equal_pydantics(docs):
    # Whole batches on the column-wise path: the same rows, times and failures as pydantic per record.
    variants = [dict(d) for d in docs[:30]]
    variants[3]["event_time"] = "2024-05-01T12:00:00Z"
    variants[4]["event_time"] = "2024-05-01T12:00:00.5+00:00"
    variants[5]["event_time"] = "2024-05-01T14:00:00+02:00"
    variants[6]["event_time"] = "2024-02-30T12:00:00+00:00"
    variants[7]["tenure_months"] = 12.0
    variants[8]["contract"] = " One year"
    variants[9]["gender"] = ["Female"]
    variants[10]["internet_service"] = "   "
    variants[11] = {k: v for k, v in variants[11].items() if k != "churned"}
    # Ids are checked value by value (no set of distinct values) when declared unique: same verdicts.
    variants[13]["customer_id"] = ""
    variants[14]["customer_id"] = "x" * 65
    variants[15]["customer_id"] = " \t\u3000"
    variants[16]["customer_id"] = 7590
    variants[17]["customer_id"] = None
    variants[18]["event_id"] = ""
    variants[19]["event_id"] = ["e-1"]
    variants[20]["customer_id"] = "x" * 64
    records = [RawRecord("customers", 0, i, None, orjson.dumps(d)) for i, d in enumerate(variants)]
    batches = (records, records[12:], records[3:4], records[20:])
    decoders = (decoder_for(CustomerEvent), decoder_for(CustomerEvent, {"event_id", "customer_id"}))
    for decoder, batch in ((d, b) for d in decoders for b in batches):
        fast = decoder.decode(batch)
        ok, events, failures = decode_batch(batch)
        assert [r.offset for r in fast.records] == [r.offset for r in ok]
        assert fast.event_times == [e.event_time.isoformat() for e in events]
        for row, event in zip(fast.rows, events):
            assert {k: v for k, v in row.items() if k != "event_time"} == {
                k: v for k, v in event.__dict__.items() if k != "event_time"
            }
        assert [(f.record.offset, f.stage, f.error_message) for f in fast.failures] == [
            (f.record.offset, f.stage, f.error_message) for f in failures
        ]
        if fast.fields is not None:
            for name, values in fast.fields.items():
                assert list(values) == [row[name] for row in fast.rows], name


def test_columns_from_decoded_fields_equal_columns_from_rows(docs):
    from stream_app.contract import TELCO_CONTRACT

    names = sorted(TELCO_CONTRACT.provides())
    padded = [dict(d) for d in docs]
    padded[2]["contract"] = " One year\u00a0"  # normalised when featurised: not the text as sent
    for batch in (docs, padded):
        records = [RawRecord("customers", 0, i, None, orjson.dumps(d)) for i, d in enumerate(batch)]
        decoded = decoder_for(CustomerEvent).decode(records)
        assert decoded.fields is not None and decoded.distinct is not None
        fast = TELCO_CONTRACT.columns(decoded.rows, names, decoded.fields, decoded.distinct)
        slow = TELCO_CONTRACT.columns(decoded.rows, names)
        assert fast.keys() == slow.keys()
        for name in names:
            assert fast[name].dtype == slow[name].dtype and fast[name].tolist() == slow[name].tolist(), name
    assert slow["contract"][2] == "One year"
