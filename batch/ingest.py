"""Reading source CSVs into typed frames named by the event contract.

Every value is parsed explicitly from text, so types never depend on what pandas
guesses from one file. Failures raise :class:`IngestError` naming the column,
the first offending row and the value.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from schemas.profiles import DatasetProfile

logger = logging.getLogger(__name__)

_ARROW_TYPES = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "yes_no": pa.bool_(),
    "yes_no_label": pa.bool_(),
    # Dates stay ISO text end to end: JSON events, Parquet and the worker all carry the same string.
    "date": pa.string(),
}


class IngestError(ValueError):
    """A source file does not match its profile."""


def arrow_schema(profile: DatasetProfile) -> pa.Schema:
    """The explicit Arrow schema of a profile's typed frame (event field names)."""
    return pa.schema(
        [pa.field(name, _ARROW_TYPES[profile.source_types[name]], nullable=False)
         for name in profile.source_columns.values()]
    )


def _bad(column: str, raw: pd.Series, mask: np.ndarray, expected: str) -> IngestError:
    idx = int(np.flatnonzero(mask)[0])
    return IngestError(
        f"{column}: expected {expected}, got {raw.iloc[idx]!r} at data row {idx + 1} "
        f"({int(mask.sum())} bad value(s) in all)"
    )


def _parse_column(raw: pd.Series, kind: str, column: str) -> np.ndarray:
    text = raw.str.strip()
    if kind == "str":
        if (text == "").any():
            raise _bad(column, raw, (text == "").to_numpy(), "a non-empty string")
        return text.to_numpy(dtype=object)
    if kind in ("yes_no", "yes_no_label"):
        low = text.str.lower()
        ok = low.isin(["yes", "no"]).to_numpy()
        if not ok.all():
            raise _bad(column, raw, ~ok, "'Yes' or 'No'")
        return (low == "yes").to_numpy()
    if kind == "bool":
        ok = text.isin(["0", "1"]).to_numpy()
        if not ok.all():
            raise _bad(column, raw, ~ok, "0 or 1")
        return (text == "1").to_numpy()
    if kind == "int":
        num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num) | (num != np.round(num)) | (num < 0)
        if bad.any():
            raise _bad(column, raw, bad, "an integer >= 0")
        return num.astype(np.int64)
    if kind == "float":
        num = pd.to_numeric(text.replace("", np.nan), errors="coerce").to_numpy(dtype=np.float64)
        bad = (~np.isfinite(num) & (text != "").to_numpy()) | (num < 0)
        if bad.any():
            raise _bad(column, raw, bad, "a finite number >= 0")
        return num
    if kind == "date":
        bad = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").isna().to_numpy()
        if bad.any():
            raise _bad(column, raw, bad, "an ISO date YYYY-MM-DD")
        return text.to_numpy(dtype=object)
    raise ValueError(f"unknown column kind {kind!r}")


def read_source_csv(path: str | Path, profile: DatasetProfile) -> pd.DataFrame:
    """Read one source CSV into a typed frame with event field names.

    Header names are matched after stripping spaces and a byte-order mark. For the
    Telco profile a blank ``TotalCharges`` is read as 0.0 when tenure is 0 (nothing
    billed yet) and rejected otherwise.

    Parameters
    ----------
    path : str or Path
    profile : DatasetProfile

    Returns
    -------
    DataFrame
        One row per source row; columns and dtypes as in :func:`arrow_schema`.

    Raises
    ------
    IngestError
        On an empty or header-only file, missing columns, unparsable values,
        duplicate ids, or bytes that are not UTF-8.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise IngestError(f"{path}: file is empty") from None
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in profile.source_columns if c not in raw.columns]
    if missing:
        raise IngestError(f"{path}: missing columns {missing}")
    if raw.empty:
        raise IngestError(f"{path}: header only, no data rows")
    out = {}
    for src, field in profile.source_columns.items():
        out[field] = _parse_column(raw[src], profile.source_types[field], src)
    frame = pd.DataFrame(out)
    if profile.name == "telco":
        blank = np.isnan(frame["total_charges_usd"].to_numpy())
        if blank.any():
            with_tenure = blank & (frame["tenure_months"].to_numpy() > 0)
            if with_tenure.any():
                raise _bad("TotalCharges", raw["TotalCharges"], with_tenure,
                           "a number (blank is only valid for tenure 0)")
            frame.loc[blank, "total_charges_usd"] = 0.0
            logger.info("blank TotalCharges read as 0.0 for tenure-0 customers count=%d", int(blank.sum()))
    dup = frame[profile.id_column].duplicated(keep=False).to_numpy()
    if dup.any():
        first = frame[profile.id_column].to_numpy()[dup][0]
        raise IngestError(f"{path}: duplicate {profile.id_column} {first!r} ({int(dup.sum())} rows share ids)")
    return frame


def to_arrow(frame: pd.DataFrame, profile: DatasetProfile) -> pa.Table:
    """The frame as an Arrow table with the profile's explicit schema."""
    return pa.Table.from_pandas(frame, schema=arrow_schema(profile), preserve_index=False)
