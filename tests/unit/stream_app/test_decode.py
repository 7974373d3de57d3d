"""The fast decoder's shortcuts give exactly what the contract (pydantic) gives."""

from __future__ import annotations

import orjson
import pytest

from schemas.events import CustomerEvent
from stream_app.decode import RawRecord, decode_batch, decoder_for


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
