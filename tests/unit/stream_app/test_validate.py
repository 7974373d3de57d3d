"""The validation shortcuts give exactly what the contract (pydantic) gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, TypeAdapter

from stream_app.validate import canonical_utc_column, utc_iso, utc_iso_rewritten


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
        assert utc_iso(v) == utc_iso_rewritten(v), v
        # One-value columns: accepted exactly when parsing and writing again gives the same text.
        assert canonical_utc_column([v]) == (utc_iso_rewritten(v) == v), v
    canonical = [v for v in values if utc_iso_rewritten(v) == v]
    assert len(canonical) > 40
    adapter = TypeAdapter(AwareDatetime)
    for v in canonical:  # what pydantic and the contract's _to_utc make of them
        assert adapter.validate_python(v).astimezone(UTC).isoformat() == v
    by_length = {n: [v for v in canonical if len(v) == n] for n in (25, 32)}
    assert all(len(group) > 5 for group in by_length.values())
    for group in by_length.values():
        assert canonical_utc_column(group)
        assert not canonical_utc_column([*group, "2023-02-29T00:00:00+00:00"[: len(group[0])]])
    assert not canonical_utc_column(by_length[25] + by_length[32])  # mixed lengths: value by value
    assert not canonical_utc_column([*by_length[25], 1714564800])
