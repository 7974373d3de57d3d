"""Reading source CSVs into typed frames named by the event contract, as the dataset profile says.

Every value is parsed explicitly from text, so types never depend on what pandas or Arrow
guesses from one file. The profile decides everything dataset-specific: which headers to
expect, how text is normalised, how the label reads, what a blank means and how an id is
derived when the table has none. Failures raise :class:`IngestError` naming the column, the
first offending row and the value; :func:`check_source_csv` collects every failure instead.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import logging
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from schemas.profile_model import FieldSpec
from schemas.profiles import DatasetProfile

logger = logging.getLogger(__name__)

_ARROW_TYPES = {
    "identifier": pa.string(),
    "category": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "yes_no": pa.bool_(),
    # Dates stay ISO text end to end: JSON events, Parquet and the worker all carry the same string.
    "date": pa.string(),
}
_ONE_ZERO = pa.array(["0", "1", "0.0", "1.0"])
#: Separator of the values hashed into a derived id (ASCII unit separator: never in a trimmed cell).
_ID_SEPARATOR = "\x1f"


class IngestError(ValueError):
    """A source file does not match its profile."""


def arrow_schema(profile: DatasetProfile) -> pa.Schema:
    """The explicit Arrow schema of a profile's typed frame (event field names, a derived id first)."""
    label = profile.classification_target
    return pa.schema(
        [
            pa.field(name, pa.bool_() if name == label else _ARROW_TYPES[kind], nullable=False)
            for name, kind in profile.field_types.items()
        ]
    )


def normalise_header(name: str) -> str:
    """The key a header is matched by: NFKC, byte-order marks removed, trimmed, case-folded.

    ``"\\ufeffCustomer ID "``, ``"customer id"`` and ``"ＣＵＳＴＯＭＥＲ ＩＤ"`` all match ``"Customer ID"``.
    """
    return unicodedata.normalize("NFKC", name).replace("\ufeff", "").strip().casefold()


def match_header(raw_names: list[str], profile: DatasetProfile) -> tuple[dict[str, int], list[str], list[str]]:
    """Match a file's header to the profile's source columns.

    Parameters
    ----------
    raw_names : list of str
        The header cells as read.
    profile : DatasetProfile

    Returns
    -------
    positions : dict of str to int
        Profile column -> its position in the file.
    missing : list of str
        Profile columns the file lacks.
    unexpected : list of str
        File headers (as read) that no profile column matches.

    Raises
    ------
    IngestError
        If two headers of the file normalise to the same key.
    """
    by_key: dict[str, int] = {}
    for i, name in enumerate(raw_names):
        key = normalise_header(name)
        if key in by_key:
            raise IngestError(
                f"columns {raw_names[by_key[key]]!r} and {name!r} are the same header after normalisation "
                "(NFKC, trim, case-fold)"
            )
        by_key[key] = i
    positions, missing = {}, []
    for column in profile.source_columns:
        key = normalise_header(column)
        if key in by_key:
            positions[column] = by_key.pop(key)
        else:
            missing.append(column)
    unexpected = [raw_names[i] for i in sorted(by_key.values())]
    return positions, missing, unexpected


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
    """Text as float64, NaN where it is blank or not a number.

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


def _casefold(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """``str.casefold`` of every cell, computed once per distinct value (categories repeat)."""
    return _map_distinct(text, str.casefold)


def _map_distinct(text: pa.ChunkedArray, fn: Callable[[str], str]) -> pa.ChunkedArray:
    """``fn`` of every cell, computed once per distinct value."""
    encoded = pc.dictionary_encode(text.combine_chunks())
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pa.chunked_array([pc.take(mapped, encoded.indices)])


def normalise_text(raw: pa.ChunkedArray, profile: DatasetProfile, field: FieldSpec) -> pa.ChunkedArray:
    """A text column after the profile's rules: Unicode form, trim, and (categories only) case-fold.

    An all-ASCII column skips the Unicode step (NFKC and NFC leave ASCII unchanged).
    """
    rules = profile.spec.text
    text = raw
    if rules.unicode_form != "none" and not pc.all(pc.string_is_ascii(text)).as_py():
        # Python's unicodedata per distinct value, as the stream and the API (schemas.normalise):
        # Arrow 25's utf8_normalize decomposes under every form (NFKC turned "é" into "e\u0301").
        form = rules.unicode_form
        text = _map_distinct(text, lambda v: unicodedata.normalize(form, v))
    if rules.trim:
        text = pc.utf8_trim_whitespace(text)
    if rules.casefold and field.type == "category":
        text = _casefold(text)
    return text


def normalise_value(value: str, profile: DatasetProfile, field: FieldSpec) -> str:
    """:func:`normalise_text` of one Python string (label values, conditions)."""
    rules = profile.spec.text
    if rules.unicode_form != "none":
        value = unicodedata.normalize(rules.unicode_form, value)
    if rules.trim:
        value = value.strip()
    if rules.casefold and field.type == "category":
        value = value.casefold()
    return value


def _parse_column(raw: pa.ChunkedArray, field: FieldSpec, profile: DatasetProfile) -> tuple[Any, np.ndarray | None]:
    """Parse one column. Returns the values and, when blanks await a fill rule, their mask."""
    column, kind = field.column, field.type
    text = normalise_text(raw, profile, field)
    fill = field.blank_rule == "fill"
    blank = _mask(pc.equal(text, "")) if fill else None
    is_label = field.name == profile.classification_target
    if is_label and kind == "category":
        if pc.any(pc.equal(text, "")).as_py():
            raise _bad(column, raw, _mask(pc.equal(text, "")), "a non-empty label")
        positive = pa.array([normalise_value(v, profile, field) for v in profile.positive_values], pa.string())
        return pc.is_in(text, value_set=positive).to_numpy(zero_copy_only=False), None
    if kind in ("category", "identifier", "date"):
        if kind == "date":
            bad = pc.is_null(pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True))
            expected = "an ISO date YYYY-MM-DD"
        else:
            bad, expected = pc.equal(text, ""), "a non-empty string"
        if blank is not None:
            bad = pc.and_(bad, pc.invert(pa.array(blank)))
        if pc.any(bad).as_py():
            raise _bad(column, raw, _mask(bad), expected)
        # Arrow-backed strings: a fraction of the memory of Python str objects at 1M rows.
        return pd.Series(text.to_pandas(), dtype="str").array, blank
    if kind == "yes_no":
        low = pc.utf8_lower(text)
        ok = pc.is_in(low, value_set=pa.array(["yes", "no"]))
        if blank is not None:
            ok = pc.or_(ok, pa.array(blank))
        if not pc.all(ok).as_py():
            raise _bad(column, raw, ~_mask(ok), "'Yes' or 'No'")
        return pc.equal(low, "yes").to_numpy(zero_copy_only=False), blank
    if kind == "boolean":
        if field.encoding == "true_false":
            text = pc.utf8_lower(text)
            ok, true, expected = pc.is_in(text, value_set=pa.array(["true", "false"])), ["true"], "true or false"
        else:
            ok, true, expected = pc.is_in(text, value_set=_ONE_ZERO), ["1", "1.0"], "0 or 1"
        if blank is not None:
            ok = pc.or_(ok, pa.array(blank))
        if not pc.all(ok).as_py():
            raise _bad(column, raw, ~_mask(ok), expected)
        return pc.is_in(text, value_set=pa.array(true)).to_numpy(zero_copy_only=False), blank
    num = _to_number(text)
    floor = " >= 0" if field.non_negative else ""
    none = np.zeros(len(num), dtype=bool)
    blank_now = _mask(pc.equal(text, ""))
    with np.errstate(invalid="ignore"):
        negative = (num < 0) if field.non_negative else none
        if kind == "integer":
            bad = ((~np.isfinite(num) | (num != np.round(num))) & ~(blank_now if fill else none)) | negative
            if bad.any():
                raise _bad(column, raw, bad, f"an integer{floor}")
            return (num if fill else num.astype(np.int64)), blank
        if kind == "number":
            allowed_blank = blank_now if field.blank_rule in ("keep", "fill") else none
            bad = (~np.isfinite(num) & ~allowed_blank) | negative
            if bad.any():
                raise _bad(column, raw, bad, f"a finite number{floor}")
            return num, blank
    raise ValueError(f"unknown field type {kind!r}")


def _fill_blanks(
    frame: pd.DataFrame, profile: DatasetProfile, field: FieldSpec, blank: np.ndarray, raw: pa.ChunkedArray
) -> None:
    """Apply a field's ``blank: fill`` rule in place (after every column is parsed: conditions read other fields)."""
    rule = field.missing
    assert rule is not None and rule.value is not None
    fill = blank
    if blank.any() and rule.only_when is not None:
        cond = rule.only_when
        holds = np.asarray(frame[cond.field].to_numpy() == cond.equals, dtype=bool)
        elsewhere = blank & ~holds
        if elsewhere.any():
            noun = {"number": "a number", "integer": "an integer"}.get(field.type, "a value")
            where = profile.fields_by_name[cond.field].column
            raise _bad(field.column, raw, elsewhere, f"{noun} (blank is only valid for {where} {cond.equals})")
        fill = blank & holds
    if fill.any():
        values = frame[field.name].to_numpy(copy=True) if field.type in ("integer", "number") else None
        if values is not None:
            values[fill] = rule.value
            frame[field.name] = values
        else:
            frame.loc[fill, field.name] = rule.value
        logger.info("blank %s read as %r count=%d", field.column, rule.value, int(fill.sum()))
    if field.type == "integer":
        frame[field.name] = frame[field.name].to_numpy().astype(np.int64)


def derive_ids(frame: pd.DataFrame, profile: DatasetProfile) -> np.ndarray:
    """Stable row ids for a table without an id column (the rule is in :mod:`schemas.profile_model`).

    Parameters
    ----------
    frame : DataFrame
        The typed frame (every source field).
    profile : DatasetProfile

    Returns
    -------
    ndarray of shape (n_samples,), object (str)
        16 hex digits, with ``-2``, ``-3``, ... on repeated rows in file order.
    """
    parts = []
    for name in profile.source_columns.values():
        if name == profile.classification_target:
            continue
        values = frame[name]
        if values.dtype == bool:
            parts.append(pc.if_else(pa.array(values.to_numpy()), "true", "false"))
        else:
            parts.append(pc.cast(pa.array(values.to_numpy() if values.dtype != object else values), pa.string()))
    joined = pc.binary_join_element_wise(*parts, _ID_SEPARATOR).to_pylist()
    digests = pd.Series([hashlib.sha256(s.encode()).hexdigest()[:16] for s in joined])
    repeat = digests.groupby(digests).cumcount().to_numpy()
    ids = digests.to_numpy(dtype=object)
    again = repeat > 0
    ids[again] = [f"{h}-{k + 1}" for h, k in zip(ids[again], repeat[again])]
    return ids


def read_header(path: str | Path) -> list[str]:
    """Raw header names of a CSV (a leading byte-order mark removed), parsed like any CSV line.

    Raises
    ------
    IngestError
        If the first line is not UTF-8.
    """
    return _header(Path(path))


def _header(path: Path) -> list[str]:
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


def _read(path: Path, profile: DatasetProfile, report: Callable[[IngestError], None] | None) -> pd.DataFrame | None:
    """The reader behind :func:`read_source_csv` (``report`` None: raise the first problem) and
    :func:`check_source_csv` (``report`` collects every problem; returns None if any)."""

    def fail(error: IngestError) -> None:
        if report is None:
            raise error
        report(error)

    if path.stat().st_size == 0:
        raise IngestError(f"{path}: file is empty")
    raw_names = _header(path)
    positions, missing, unexpected = match_header(raw_names, profile)
    if missing:
        fail(IngestError(f"{path}: missing columns {missing!r}; unexpected columns {unexpected!r}"))
    elif unexpected:
        if report is not None:
            report(IngestError(f"{path}: unexpected columns {unexpected!r} (ingestion ignores them)"))
        logger.info("ignored columns not in profile=%s: %r", profile.name, unexpected)
    # Positional names: headers may repeat or be blank; the profile's columns are found by position.
    names = [f"c{i}" for i in range(len(raw_names))]
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(skip_rows=1, column_names=names),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                include_columns=[names[i] for i in positions.values()],
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
    out, pending, raws, ok = {}, {}, {}, not missing
    for field in profile.spec.fields:
        if field.column not in positions:
            continue
        raws[field.name] = table.column(f"c{positions[field.column]}")
        try:
            out[field.name], blank = _parse_column(raws[field.name], field, profile)
        except IngestError as exc:
            fail(exc)
            ok = False
            continue
        if blank is not None:
            pending[field.name] = blank
    if not ok:
        return None
    frame = pd.DataFrame(out, copy=False)
    for name, blank in pending.items():
        field = profile.fields_by_name[name]
        try:
            _fill_blanks(frame, profile, field, blank, raws[name])
        except IngestError as exc:
            fail(exc)
            ok = False
    del table, raws
    if not ok:
        return None
    id_field = profile.id_column
    if profile.derives_id:
        frame.insert(0, id_field, pd.array(derive_ids(frame, profile), dtype="str"))
    dup = frame[id_field].duplicated(keep=False).to_numpy()
    if dup.any():
        first = frame[id_field].to_numpy()[dup][0]
        first = first.item() if isinstance(first, np.generic) else first
        fail(IngestError(f"{path}: duplicate {id_field} {first!r} ({int(dup.sum())} rows share ids)"))
        return None
    return frame


def read_source_csv(path: str | Path, profile: DatasetProfile) -> pd.DataFrame:
    """Read one source CSV into a typed frame with event field names.

    Headers are matched after Unicode normalisation (NFKC), byte-order-mark removal, trimming
    and case-folding (:func:`normalise_header`); columns the profile does not name are ignored.
    Cells are normalised by the profile's ``text`` rules, the label is read as the profile says,
    blanks follow each field's ``missing`` rule (Telco: a blank ``TotalCharges`` is 0.0 when
    tenure is 0 and rejected otherwise), and a table without an id column gets derived ids
    (:func:`derive_ids`). The file is read by Arrow's multithreaded CSV reader with every column
    as text (nothing is guessed) and parsed column by column with Arrow compute: a million
    retail rows take seconds and text columns stay Arrow-backed (pandas ``str`` dtype).

    Parameters
    ----------
    path : str or Path
    profile : DatasetProfile

    Returns
    -------
    DataFrame
        One row per source row; columns and dtypes as in :func:`arrow_schema`
        (strings and ISO dates as pandas ``str``, integers int64, numbers float64,
        flags and the label bool).

    Raises
    ------
    IngestError
        On an empty or header-only file, missing columns (listing the missing and the
        unexpected ones), unparsable values, duplicate ids, or bytes that are not UTF-8.
    """
    frame = _read(Path(path), profile, None)
    assert frame is not None
    return frame


def check_source_csv(path: str | Path, profile: DatasetProfile) -> list[str]:
    """Every mismatch between a CSV and a profile, one message each (empty: the file ingests).

    Unlike :func:`read_source_csv`, which stops at the first problem, this parses every column
    and also reports columns the profile does not name.
    """
    problems: list[str] = []
    try:
        _read(Path(path), profile, lambda exc: problems.append(str(exc)))
    except IngestError as exc:
        problems.append(str(exc))
    return problems


def to_arrow(frame: pd.DataFrame, profile: DatasetProfile) -> pa.Table:
    """The frame as an Arrow table with the profile's explicit schema.

    A NaN in a number field (a blank the profile keeps) stays NaN: Arrow's pandas conversion
    would turn it into a null, which the non-nullable schema refuses.

    Raises
    ------
    pyarrow.ArrowInvalid, pyarrow.ArrowTypeError
        If a column does not hold its field's type.
    """
    schema = arrow_schema(profile)
    arrays = []
    for f in schema:
        values = frame[f.name]
        if pa.types.is_floating(f.type) and values.dtype == np.float64:
            arrays.append(pa.array(values.to_numpy(), type=f.type))
        else:
            arrays.append(pa.Array.from_pandas(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)
