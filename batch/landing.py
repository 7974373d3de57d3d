"""The landing zone: CSVs under ``s3://raw-data/<CHURN_BATCH_INCOMING_PREFIX>``, judged one file at a time.

Each incoming file is read and validated on its own (:func:`batch.ingest.read_source_csv`):
a good file is accepted, a bad one is quarantined, so one bad file never blocks a good
one. A quarantined file moves to ``incoming-quarantine/<UTC time>/<name>`` beside a
report object ``<name>.report.json`` giving its name, the reason and the row number.
Empty and header-only files are quarantined as "empty input", undecodable ones with
the decode error and its row. Accepted files are trained on together (one cycle) and
then moved to ``incoming-done/<cycle_id>/``, or ``incoming-rejected/<cycle_id>/`` when
the data-quality gate rejects them.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from batch.ingest import IngestError, read_source_csv
from schemas.profiles import DatasetProfile

logger = logging.getLogger(__name__)

BUCKET = "raw-data"
QUARANTINE = "incoming-quarantine"
EMPTY_INPUT = "empty input"
_ROW = re.compile(r"\bdata row (\d+)\b")


@dataclass
class Quarantined:
    """One incoming file that was not accepted.

    Attributes
    ----------
    source : str
        Its key under the incoming prefix (``incoming/day1/part-2.csv``).
    reason : str
        ``"empty input"``, the decode error, or ingestion's message.
    row : int or None
        Data row of the problem (1 = the first row after the header, 0 = the header);
        None when it concerns the whole file.
    key : str
        Where it was moved in ``raw-data``; the report is ``key + ".report.json"``.
    """

    source: str
    reason: str
    row: int | None
    key: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (also the report object's body)."""
        return {"source": self.source, "reason": self.reason, "row": self.row, "key": self.key}


@dataclass
class Screened:
    """The incoming files of one look, judged one by one.

    Attributes
    ----------
    accepted : list of str
        Keys whose rows are in ``frame``, in key order.
    frame : DataFrame or None
        The accepted files' typed rows, concatenated; None when none was accepted.
    quarantined : list of Quarantined
    newest : datetime or None
        Last-modified time of the newest accepted file (the input's freshness).
    """

    accepted: list[str] = field(default_factory=list)
    frame: pd.DataFrame | None = None
    quarantined: list[Quarantined] = field(default_factory=list)
    newest: datetime | None = None


def incoming_csv_keys(names: list[str], prefix: str) -> list[str]:
    """Object names under ``prefix`` that are CSV files, sorted (folders and other files ignored)."""
    return sorted(n for n in names if n.startswith(prefix) and n.lower().endswith(".csv") and not n.endswith("/"))


def list_incoming(storage, prefix: str) -> list[Any]:
    """The CSV objects under ``prefix`` in ``raw-data`` (minio ``Object``s), sorted by key."""
    objects = {o.object_name: o for o in storage.list_objects(BUCKET, prefix=prefix, recursive=True)}
    return [objects[k] for k in incoming_csv_keys(list(objects), prefix)]


def screen_bytes(raw: bytes) -> tuple[str, int | None] | None:
    """``(reason, row)`` when a file's bytes cannot be a CSV with data, else None.

    Parameters
    ----------
    raw : bytes
        The whole file.

    Returns
    -------
    tuple of (str, int or None) or None
        ``("empty input", None)`` for a file with no bytes, only blanks or only a header line;
        ``("not UTF-8 text (<reason> at byte <n>)", row)`` for bytes that are not UTF-8, with
        the data row holding them (0: the header).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = raw[: exc.start].count(b"\n")
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})", row
    body = text.removeprefix("\ufeff").strip()
    if not body or "\n" not in body:
        return EMPTY_INPUT, None
    return None


def _row_of(message: str) -> int | None:
    match = _ROW.search(message)
    return int(match.group(1)) if match else None


def _read(storage, key: str) -> bytes:
    resp = storage.get_object(BUCKET, key)
    try:
        return resp.read()
    finally:
        resp.close()
        resp.release_conn()


def screen_incoming(storage, objects: list[Any], profile: DatasetProfile, prefix: str) -> Screened:
    """Read and validate each incoming file on its own; quarantine the bad ones in S3.

    A file is quarantined when :func:`screen_bytes` finds it empty or undecodable, when
    :func:`batch.ingest.read_source_csv` rejects it, or when it repeats an id of a file
    accepted before it in this look.

    Parameters
    ----------
    storage : minio.Minio
    objects : list of minio Object
        From :func:`list_incoming`.
    profile : DatasetProfile
    prefix : str
        The incoming prefix (kept out of quarantine keys).

    Returns
    -------
    Screened
    """
    out = Screened()
    frames: list[pd.DataFrame] = []
    owner_of: dict[Any, str] = {}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="churn-incoming-") as tmp:
        for i, obj in enumerate(objects):
            key = obj.object_name
            raw = _read(storage, key)
            problem = screen_bytes(raw)
            frame = None
            if problem is None:
                # Each file under its own name, so ingestion's messages can be mapped back to the key.
                path = Path(tmp) / str(i) / PurePosixPath(key).name
                path.parent.mkdir()
                path.write_bytes(raw)
                try:
                    frame = read_source_csv(path, profile)
                except IngestError as exc:
                    message = str(exc).replace(str(path), key)
                    problem = message, _row_of(message)
                finally:
                    path.unlink()
            del raw
            if frame is not None:
                ids = frame[profile.id_column].to_numpy()
                for row, value in enumerate(ids, start=1):
                    if value in owner_of:
                        problem = f"duplicate {profile.id_column} {value!r}: also in {owner_of[value]}", row
                        break
            if problem is not None:
                out.quarantined.append(quarantine(storage, key, problem[0], problem[1], prefix, stamp))
                continue
            assert frame is not None
            owner_of.update(dict.fromkeys(frame[profile.id_column].to_numpy(), key))
            frames.append(frame)
            out.accepted.append(key)
            if out.newest is None or obj.last_modified > out.newest:
                out.newest = obj.last_modified
    if frames:
        out.frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    logger.info("incoming accepted=%d quarantined=%d keys=%s", len(out.accepted), len(out.quarantined), out.accepted)
    return out


def quarantine(storage, key: str, reason: str, row: int | None, prefix: str, stamp: str | None = None) -> Quarantined:
    """Move ``key`` to ``incoming-quarantine/<stamp>/`` and write its report beside it.

    Parameters
    ----------
    storage : minio.Minio
    key : str
        The incoming file.
    reason : str
    row : int or None
    prefix : str
        The incoming prefix, dropped from the destination key.
    stamp : str, optional
        Folder under the quarantine prefix; default the current UTC time.

    Returns
    -------
    Quarantined
    """
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = f"{QUARANTINE}/{stamp}/{key[len(prefix) :]}"
    move(storage, key, dest)
    item = Quarantined(key, reason, row, dest)
    body = json.dumps(item.to_dict() | {"quarantined_at": datetime.now(UTC).isoformat()}, indent=2).encode()
    storage.put_object(BUCKET, dest + ".report.json", io.BytesIO(body), len(body), content_type="application/json")
    logger.warning("quarantined s3://%s/%s row=%s reason=%s", BUCKET, key, row, reason)
    return item


def move(storage, key: str, dest: str) -> None:
    """Copy ``raw-data/key`` to ``raw-data/dest``, then delete the original."""
    from minio.commonconfig import CopySource

    storage.copy_object(BUCKET, dest, CopySource(BUCKET, key))
    storage.remove_object(BUCKET, key)
    logger.info("moved s3://%s/%s to s3://%s/%s", BUCKET, key, BUCKET, dest)


def archive(storage, keys: list[str], folder: str, cycle_id: str, prefix: str) -> None:
    """Move consumed incoming files to ``<folder>/<cycle_id>/`` (``incoming-done`` or ``incoming-rejected``)."""
    for key in keys:
        move(storage, key, f"{folder}/{cycle_id}/{key[len(prefix) :]}")
