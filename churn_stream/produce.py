"""``churn produce``: a source CSV's rows as customer events on Kafka."""

from __future__ import annotations

from pathlib import Path

import orjson

from batch.ingest import read_source_csv
from plumbing.clients import ensure_topics, produce_records
from plumbing.settings import Settings
from schemas.events import SCHEMA_VERSION, new_event_id, utc_now
from schemas.profiles import get_profile
from schemas.topics import Topics


def csv_to_customer_events(
    path: str | Path, dataset: str = "telco", limit: int | None = None
) -> list[tuple[bytes, bytes]]:
    """Customer events (key = customer id) from a source CSV, with fresh ids and UTC times.

    Raises
    ------
    batch.ingest.IngestError
        If the file does not match the dataset profile.
    """
    profile = get_profile(dataset)
    frame = read_source_csv(path, profile)
    if limit is not None:
        frame = frame.iloc[:limit]
    out = []
    for row in frame.to_dict(orient="records"):
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        row["event_id"] = new_event_id()
        row["event_time"] = utc_now().isoformat()
        row["schema_version"] = SCHEMA_VERSION
        out.append((str(row[profile.id_column]).encode(), orjson.dumps(row)))
    return out


def produce_csv(
    settings: Settings,
    path: str | Path,
    topic: str = Topics.CUSTOMERS,
    rate: float | None = None,
    limit: int | None = None,
    dataset: str = "telco",
    on_acked=None,
) -> int:
    """Produce a CSV's rows as customer events; return the count acknowledged (``on_acked``: per record)."""
    ensure_topics(settings)
    records = csv_to_customer_events(path, dataset, limit)
    # list(): produce_records takes keys that may be None (a list is invariant in its items).
    return produce_records(settings, topic, list(records), rate, on_acked)
