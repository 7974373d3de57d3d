"""Reading source CSVs into typed frames named by the event contract.

Every value is parsed explicitly from text, so types never depend on what pandas
guesses from one file. Failures raise :class:`IngestError` naming the column,
the first offending row and the value.
"""

from __future__ import annotations

import codecs
import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

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
        [
            pa.field(name, _ARROW_TYPES[profile.source_types[name]], nullable=False)
            for name in profile.source_columns.values()
        ]
    )


def _bad(column: str, raw, mask: np.ndarray, expected: str) -> IngestError:
    idx = int(np.flatnonzero(mask)[0])
    value = raw[idx].as_py() if isinstance(raw, (pa.Array, pa.ChunkedArray)) else raw.iloc[idx]
    return IngestError(
        f"{column}: expected {expected}, got {value!r} at data row {idx + 1} ({int(mask.sum())} bad value(s) in all)"
    )


def _mask(values) -> np.ndarray:
    """A boolean Arrow array as a numpy mask (null counts as True: bad)."""
    return pc.fill_null(values, True).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _to_number(text: pa.ChunkedArray) -> np.ndarray:
    """Trimmed text as float64, NaN where it is blank or not a number.

    Arrow's cast parses the common case in C; a column it refuses (one bad cell fails
    the whole cast) is parsed by pandas, whose coercion marks each bad cell NaN.
    """
    blank_as_null = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(blank_as_null, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(
            pd.Series(text.to_numpy(zero_copy_only=False)).replace("", np.nan), errors="coerce"
        ).to_numpy(dtype=np.float64)


def _parse_column(raw: pa.ChunkedArray, kind: str, column: str):
    text = pc.utf8_trim_whitespace(raw)
    if kind in ("str", "date"):
        if kind == "str":
            bad, expected = pc.equal(text, ""), "a non-empty string"
        else:
            bad = pc.is_null(pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True))
            expected = "an ISO date YYYY-MM-DD"
        if pc.any(bad).as_py():
            raise _bad(column, raw, _mask(bad), expected)
        # Arrow-backed strings: a fraction of the memory of Python str objects at 1M rows.
        return pd.Series(text.to_pandas(), dtype="str").array
    if kind in ("yes_no", "yes_no_label"):
        low = pc.utf8_lower(text)
        ok = pc.is_in(low, value_set=pa.array(["yes", "no"]))
        if not pc.all(ok).as_py():
            raise _bad(column, raw, ~_mask(ok), "'Yes' or 'No'")
        return pc.equal(low, "yes").to_numpy(zero_copy_only=False)
    if kind == "bool":
        ok = pc.is_in(text, value_set=pa.array(["0", "1"]))
        if not pc.all(ok).as_py():
            raise _bad(column, raw, ~_mask(ok), "0 or 1")
        return pc.equal(text, "1").to_numpy(zero_copy_only=False)
    num = _to_number(text)
    if kind == "int":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(num) | (num != np.round(num)) | (num < 0)
        if bad.any():
            raise _bad(column, raw, bad, "an integer >= 0")
        return num.astype(np.int64)
    if kind == "float":
        blank = _mask(pc.equal(text, ""))
        with np.errstate(invalid="ignore"):
            bad = (~np.isfinite(num) & ~blank) | (num < 0)
        if bad.any():
            raise _bad(column, raw, bad, "a finite number >= 0")
        return num
    raise ValueError(f"unknown column kind {kind!r}")


def _header(path: Path) -> list[str]:
    """Raw header names of a CSV (byte-order mark removed), parsed like any CSV line."""
    with path.open("rb") as fh:
        first = fh.readline()
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return next(csv.reader([line]), [])


def _first_non_utf8(path: Path) -> str:
    """``"<reason> at byte <offset>"`` of the first byte sequence that is not UTF-8 (error path only)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return f"{exc.reason} at byte {offset + exc.start}"
            offset += len(chunk)
    return "invalid UTF-8"


def read_source_csv(path: str | Path, profile: DatasetProfile) -> pd.DataFrame:
    """Read one source CSV into a typed frame with event field names.

    Header names are matched after stripping spaces and a byte-order mark. For the
    Telco profile a blank ``TotalCharges`` is read as 0.0 when tenure is 0 (nothing
    billed yet) and rejected otherwise. The file is read by Arrow's multithreaded
    CSV reader with every profile column as text (nothing is guessed), and parsed
    column by column with Arrow compute: a million retail rows take seconds and
    text columns stay Arrow-backed (pandas ``str`` dtype).

    Parameters
    ----------
    path : str or Path
    profile : DatasetProfile

    Returns
    -------
    DataFrame
        One row per source row; columns and dtypes as in :func:`arrow_schema`
        (strings and ISO dates as pandas ``str``, integers int64, numbers float64,
        flags bool).

    Raises
    ------
    IngestError
        On an empty or header-only file, missing columns, unparsable values,
        duplicate ids, or bytes that are not UTF-8.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: file is empty")
    raw_names = _header(path)
    by_field = {name.strip(): name for name in raw_names}
    missing = [c for c in profile.source_columns if c not in by_field]
    if missing:
        raise IngestError(f"{path}: missing columns {missing}")
    wanted = [by_field[c] for c in profile.source_columns]
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(skip_rows=1, column_names=raw_names),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in raw_names},
                include_columns=wanted,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            raise IngestError(f"{path}: not UTF-8 text ({_first_non_utf8(path)})") from None
        raise IngestError(f"{path}: not a readable CSV ({exc})") from None
    if table.num_rows == 0:
        raise IngestError(f"{path}: header only, no data rows")
    out = {}
    for src, field in profile.source_columns.items():
        out[field] = _parse_column(table.column(by_field[src]), profile.source_types[field], src)
    frame = pd.DataFrame(out, copy=False)
    if profile.name == "telco":
        blank = np.isnan(frame["total_charges_usd"].to_numpy())
        if blank.any():
            with_tenure = blank & (frame["tenure_months"].to_numpy() > 0)
            if with_tenure.any():
                raise _bad(
                    "TotalCharges",
                    table.column(by_field["TotalCharges"]),
                    with_tenure,
                    "a number (blank is only valid for tenure 0)",
                )
            frame.loc[blank, "total_charges_usd"] = 0.0
            logger.info("blank TotalCharges read as 0.0 for tenure-0 customers count=%d", int(blank.sum()))
    del table
    dup = frame[profile.id_column].duplicated(keep=False).to_numpy()
    if dup.any():
        first = frame[profile.id_column].to_numpy()[dup][0]
        raise IngestError(f"{path}: duplicate {profile.id_column} {first!r} ({int(dup.sum())} rows share ids)")
    return frame


def to_arrow(frame: pd.DataFrame, profile: DatasetProfile) -> pa.Table:
    """The frame as an Arrow table with the profile's explicit schema."""
    return pa.Table.from_pandas(frame, schema=arrow_schema(profile), preserve_index=False)
