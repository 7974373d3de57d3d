"""A cycle's input stage: which source, how many rows per class, its content hash, its S3 objects.

A cycle's S3 data objects are keyed by the SHA-256 of its typed input
(:func:`input_sha256`), not by its cycle id: a re-run on the same input overwrites
them. The last accepted input of a dataset is recorded in
``processed-data/<dataset>/last_accepted.json`` (:func:`read_last_accepted`,
:func:`write_last_accepted`), so a cycle that skips unchanged input can tell.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Shipped source files per dataset (the IBM Telco customer churn file); other datasets need a source.
DEFAULT_SOURCES = {"telco": Path(__file__).resolve().parents[1] / "data" / "telco_customer_churn.csv"}
#: The last accepted (trained) input of a data set, in the ``processed-data`` bucket.
LAST_ACCEPTED_KEY = "{dataset}/last_accepted.json"
#: The status and message of a cycle that skipped an input it had already trained on.
UNCHANGED_INPUT = "unchanged input"


class MissingSourceError(ValueError):
    """A dataset without a shipped source file was run without one."""


def default_source(dataset: str, source: str | Path | None) -> Path:
    """The CSV a cycle of ``dataset`` reads: ``source``, else the dataset's shipped file.

    Parameters
    ----------
    dataset : str
        The profile's name.
    source : str or Path, optional

    Returns
    -------
    Path

    Raises
    ------
    MissingSourceError
        If ``source`` is None and ``dataset`` ships no file.
    """
    if source is not None:
        return Path(source)
    if dataset not in DEFAULT_SOURCES:
        raise MissingSourceError(
            f"dataset {dataset!r} has no shipped file: pass its CSV with --source "
            f"(shipped: {', '.join(sorted(DEFAULT_SOURCES))})"
        )
    return DEFAULT_SOURCES[dataset]


class InsufficientRowsError(ValueError):
    """The input has fewer rows of a class than ``CHURN_BATCH_MIN_ROWS_PER_CLASS``; nothing was trained.

    Attributes
    ----------
    counts : dict of str to int
        Rows per class (``churned``, ``retained``).
    minimum : int
    """

    def __init__(self, counts: dict[str, int], minimum: int) -> None:
        self.counts, self.minimum = counts, minimum
        listed = ", ".join(f"{k}={v}" for k, v in counts.items())
        super().__init__(f"too few rows per class to train: {listed}; CHURN_BATCH_MIN_ROWS_PER_CLASS={minimum}")


def class_counts(frame: pd.DataFrame, target: str) -> dict[str, int]:
    """Rows per churn class: ``{"churned": n, "retained": n}``.

    Parameters
    ----------
    frame : DataFrame
        Typed frame from :func:`batch.ingest.read_source_csv`.
    target : str
        The profile's ``classification_target`` (bool column).

    Returns
    -------
    dict of str to int
    """
    churned = int(frame[target].to_numpy(dtype=bool).sum())
    return {"churned": churned, "retained": len(frame) - churned}


def check_min_rows_per_class(frame: pd.DataFrame, target: str, minimum: int) -> dict[str, int]:
    """Class counts of ``frame``, or :class:`InsufficientRowsError` when one is below ``minimum``.

    Parameters
    ----------
    frame : DataFrame
    target : str
        Label column (bool).
    minimum : int
        Least rows per class; 0 or less disables the check.

    Returns
    -------
    dict of str to int

    Raises
    ------
    InsufficientRowsError
    """
    counts = class_counts(frame, target)
    if minimum > 0 and min(counts.values()) < minimum:
        raise InsufficientRowsError(counts, minimum)
    return counts


def input_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of a typed input frame: column names, dtypes and every value, in row order.

    The same customers give the same digest whether they came in one file or several,
    with or without a byte-order mark or CRLF line ends (the typed frame is hashed, not
    the bytes). pandas' row hash uses a fixed key, so the digest is stable across
    processes and runs.

    Parameters
    ----------
    frame : DataFrame

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def read_json(storage, bucket: str, key: str) -> dict[str, Any] | None:
    """A JSON object from S3, or None when the object (or bucket) is missing or not JSON."""
    from minio.error import S3Error

    try:
        resp = storage.get_object(bucket, key)
    except S3Error as err:
        if err.code in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise
    try:
        return json.loads(resp.read())
    except ValueError:
        return None
    finally:
        resp.close()
        resp.release_conn()


def put_json(storage, bucket: str, key: str, doc: dict[str, Any]) -> None:
    """Write ``doc`` as a JSON object to ``s3://bucket/key``."""
    body = json.dumps(doc, sort_keys=True).encode()
    storage.put_object(bucket, key, io.BytesIO(body), len(body), content_type="application/json")


def put_parquet(storage, bucket: str, key: str, table: pa.Table) -> str:
    """Write ``table`` as Parquet to ``s3://bucket/key``; return that URI."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    size = buf.tell()
    buf.seek(0)
    storage.put_object(bucket, key, buf, size, content_type="application/vnd.apache.parquet")
    return f"s3://{bucket}/{key}"


def read_last_accepted(storage, dataset: str) -> dict[str, Any] | None:
    """The last accepted input of ``dataset`` (``input_sha256``, ``models``, ``cycle_id``, ``at``), if any."""
    return read_json(storage, "processed-data", LAST_ACCEPTED_KEY.format(dataset=dataset))


def write_last_accepted(storage, dataset: str, digest: str, models: list[str], cycle_id: str) -> None:
    """Record an accepted (trained) input: the next cycle that skips unchanged input compares with it."""
    put_json(
        storage,
        "processed-data",
        LAST_ACCEPTED_KEY.format(dataset=dataset),
        {"input_sha256": digest, "models": models, "cycle_id": cycle_id, "at": datetime.now(UTC).isoformat()},
    )
