"""``churn produce``: a source CSV's rows as customer events on Kafka.

``event_time`` is the time of the event: by default the moment each record is handed to
the producer (:func:`plumbing.clients.produce_events` stamps it then, so at a steady
``--rate`` end-to-end latency stays flat instead of growing with the send time), or the
value of a column of the file (``--event-time-column``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv

from batch.ingest import IngestError, read_header, read_source_csv
from plumbing.clients import ensure_topics, produce_events, produce_records, served_dataset
from plumbing.settings import Settings
from schemas.events import SCHEMA_VERSION, new_event_id, utc_now
from schemas.profiles import DatasetProfile, get_profile


def csv_to_customer_docs(
    path: str | Path, profile: DatasetProfile, limit: int | None = None, event_time_column: str | None = None
) -> list[tuple[bytes, dict[str, Any]]]:
    """Customer event documents (key = customer id) from a source CSV, with fresh ids.

    Parameters
    ----------
    path : str or Path
    profile : DatasetProfile
    limit : int, optional
        At most this many rows.
    event_time_column : str, optional
        A column of ISO 8601 times (a time without offset is UTC) that becomes each
        event's ``event_time``; without one the documents carry none (stamped at send).

    Returns
    -------
    list of (bytes, dict)

    Raises
    ------
    batch.ingest.IngestError
        If the file does not match the profile, or the time column is missing or unreadable.
    """
    frame = read_source_csv(path, profile)
    if limit is not None:
        frame = frame.iloc[:limit]
    times = _event_times(Path(path), event_time_column, len(frame)) if event_time_column else None
    out = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        # A NaN number (a blank the profile keeps) is a JSON null: JSON has no NaN.
        row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        row["event_id"] = new_event_id()
        if times is not None:
            row["event_time"] = times[i]
        row["schema_version"] = SCHEMA_VERSION
        out.append((str(row[profile.id_column]).encode(), row))
    return out


def _event_times(path: Path, column: str, n: int) -> list[str]:
    """``column`` of ``path`` as UTC ISO 8601 strings (the first ``n`` rows)."""
    header = read_header(path)
    if column not in header:
        raise IngestError(f"{path}: no column {column!r} for event_time; columns: {header!r}")
    table = pa_csv.read_csv(
        path,
        convert_options=pa_csv.ConvertOptions(include_columns=[column], column_types={column: pa.string()}),
    )
    out = []
    for i, text in enumerate(table.column(column).to_pylist()[:n]):
        try:
            t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise IngestError(f"{column}: expected an ISO 8601 time, got {text!r} at data row {i + 1}") from None
        out.append((t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).isoformat())
    return out


def csv_to_customer_events(
    path: str | Path, dataset: str = "telco", limit: int | None = None
) -> list[tuple[bytes, bytes]]:
    """Customer events (key = customer id) from a source CSV, with fresh ids, all stamped now.

    For tests and benchmarks that need the bytes up front; ``churn produce`` stamps each
    record when it is sent instead (:func:`produce_csv`).

    Raises
    ------
    batch.ingest.IngestError
        If the file does not match the dataset profile.
    """
    now = utc_now().isoformat()
    return [
        (key, orjson.dumps({**doc, "event_time": now}))
        for key, doc in csv_to_customer_docs(path, get_profile(dataset), limit)
    ]


def produce_csv(
    settings: Settings,
    path: str | Path,
    topic: str | None = None,
    rate: float | None = None,
    limit: int | None = None,
    dataset: str | None = None,
    event_time_column: str | None = None,
    on_acked: Callable[[int], None] | None = None,
) -> int:
    """Produce a CSV's rows as customer events of ``dataset``; return the count acknowledged.

    Parameters
    ----------
    settings : Settings
    path : str or Path
    topic : str, optional
        Default: the data set's ``customers`` topic (:class:`schemas.namespace.Namespace`).
    rate : float, optional
        Events per second.
    limit : int, optional
    dataset : str, optional
        A shipped profile's name or a profile file; default ``settings.dataset``.
    event_time_column : str, optional
        Take each ``event_time`` from this column; by default it is the moment the record is sent.
    on_acked : callable, optional
        Called with 1 as each record is acknowledged (a progress bar's ``update``).

    Raises
    ------
    plumbing.clients.DatasetError
        For an unknown data set or an invalid profile.
    batch.ingest.IngestError
        If the file does not match the profile.
    """
    profile, namespace = served_dataset(settings, dataset)
    docs = csv_to_customer_docs(path, profile, limit, event_time_column)
    ensure_topics(settings, namespace)
    topic = topic or namespace.customers + settings.topic_suffix
    if event_time_column:
        return produce_records(settings, topic, [(k, orjson.dumps(d)) for k, d in docs], rate, on_acked)
    return produce_events(settings, topic, docs, rate, on_acked)
