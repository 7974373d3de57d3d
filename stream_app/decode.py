"""Decoding a micro-batch: Kafka bytes to valid event rows and failures, against a data set's contract.

The contract is a generated pydantic model (:func:`schemas.events.customer_event_model`).
Decoding takes a fast path for records in the canonical form our producers write (orjson
parse, then column-wise type, range, text and blank-rule checks derived from the model);
any record the fast path is not sure about goes through pydantic exactly as before, so
every accepted value and every error message is the contract's own. Measured with
``churn bench stream``. Pure functions over bytes, no I/O.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from time import perf_counter
from typing import Any, NamedTuple, cast

import numpy as np
import orjson
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import BeforeValidator, ValidationError
from pydantic.types import Strict

from schemas.events import (
    NON_BLANK_PATTERN,
    SCHEMA_VERSION,
    CustomerEvent,
    CustomerEventBase,
    format_validation_error,
    json_datetime,
    json_integer,
)
from schemas.normalise import normalise_text


class RawRecord(NamedTuple):
    """One consumed Kafka record: original bytes and coordinates.

    A named tuple, not a frozen dataclass: the worker builds one per consumed record, and
    a tuple costs a quarter of a frozen dataclass's ``__init__`` (``churn bench stream``).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Failure:
    """A record that could not be processed, destined for the dead-letter topic."""

    record: RawRecord
    stage: str
    error_class: str
    error_message: str


def _stage_of(exc: ValidationError) -> str:
    types = {e.get("type") for e in exc.errors()}
    return "decode" if types & {"json_invalid", "json_type", "model_type"} else "validate"


def decode_batch(
    records: Sequence[RawRecord], model: type[CustomerEventBase] = CustomerEvent
) -> tuple[list[RawRecord], list[CustomerEventBase], list[Failure]]:
    """Split a micro-batch into valid events and failures (decode or validate stage), one pydantic object each.

    Parameters
    ----------
    records : sequence of RawRecord
    model : type, default Telco's CustomerEvent
        The contract (:func:`schemas.events.customer_event_model`).
    """
    ok_records: list[RawRecord] = []
    events: list[CustomerEventBase] = []
    failures: list[Failure] = []
    for rec in records:
        if not rec.value:
            failures.append(Failure(rec, "decode", "EmptyValue", "record value is null or empty"))
            continue
        try:
            events.append(model.model_validate_json(rec.value))
            ok_records.append(rec)
        except ValidationError as exc:
            err = format_validation_error(exc)
            failures.append(Failure(rec, _stage_of(exc), "EventValidationError", str(err)))
    return ok_records, events, failures


def dead_letter(failure: Failure, now: datetime | None = None) -> tuple[bytes | None, bytes]:
    """The dead-letter record of a failure: original bytes (base64), coordinates, stage, error."""
    rec = failure.record
    now = now or datetime.now(UTC)
    doc = {
        "event_id": f"dlq-{rec.topic}-{rec.partition}-{rec.offset}",
        "event_time": now.isoformat(),
        "schema_version": SCHEMA_VERSION,
        "original_value_b64": base64.b64encode(rec.value).decode() if rec.value is not None else None,
        "original_key_b64": base64.b64encode(rec.key).decode() if rec.key is not None else None,
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "stage": failure.stage,
        "error_class": failure.error_class,
        "error_message": failure.error_message[:2000],
        "failed_at": now.isoformat(),
    }
    return rec.key, orjson.dumps(doc)


# ---------------------------------------------------------------- fast decode
_MISSING = object()
_NONE_T = type(None)
_MISSING_T = type(_MISSING)
# Canonical UTC timestamps only; anything else (other offsets, a space separator,
# numbers) is left to pydantic, which knows every form the contract accepts.
_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|\+00:00)")
#: Model validators the fast path re-implements (any other sends every record through pydantic).
_KNOWN_MODEL_VALIDATORS = {"_blank_conditions"}


@dataclass(frozen=True)
class FieldCheck:
    """What the fast path checks of one field, derived from the model's field info."""

    name: str
    kind: str  # "bool" | "int" | "float" | "str" | "time"
    types: frozenset
    lo: float | None
    hi: float | None
    default: Any
    pattern: str | None = None


def _pattern_ok(pattern: str, values: Any) -> bool:
    """Every value matches ``pattern`` (Python's ASCII reading of it: never wider than pydantic's)."""
    if pattern == NON_BLANK_PATTERN:  # the common case, in C: isspace() is True only for blank text
        return not any(map(str.isspace, values))
    search = _compiled(pattern).search
    return all(search(v) is not None for v in values)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


def field_checks(model: type[CustomerEventBase]) -> list[FieldCheck] | None:
    """Checks equivalent to ``model`` for canonical JSON values, or None if the contract uses
    something this fast path does not understand (then pydantic does all)."""
    decorators = model.__pydantic_decorators__
    if (
        set(decorators.field_validators) != {"_to_utc"}
        or not set(decorators.model_validators) <= _KNOWN_MODEL_VALIDATORS
        or model.model_config.get("extra") != "ignore"
    ):
        return None
    checks = []
    base: dict[Any, tuple[str, set[type]]] = {
        bool: ("bool", {bool}),
        int: ("int", {int}),
        float: ("float", {int, float}),
        str: ("str", {str}),
    }
    for name, info in model.model_fields.items():
        ann = info.annotation
        nullable = False
        args = getattr(ann, "__args__", ())
        if args and len(args) == 2 and _NONE_T in args:
            nullable = True
            ann = next(a for a in args if a is not _NONE_T)
        types: set[type]
        if name == "event_time":
            kind, types = "time", {str}
        elif ann in base:
            kind, base_types = base[ann]
            types = set(base_types)
        else:
            return None
        lo: Any = None  # annotated_types bounds: int or float
        hi: Any = None
        pattern = None
        for m in info.metadata:
            if isinstance(m, (Ge, MinLen)):
                lo = m.ge if isinstance(m, Ge) else m.min_length
            elif isinstance(m, (Le, MaxLen)):
                hi = m.le if isinstance(m, Le) else m.max_length
            elif type(m).__name__ == "_PydanticGeneralMetadata" and set(vars(m)) == {"pattern"} and kind == "str":
                pattern = vars(m)["pattern"]
            elif not (
                isinstance(m, Strict) or (isinstance(m, BeforeValidator) and m.func in (json_integer, json_datetime))
            ):
                # The checks' exact types are pydantic's strict mode, and these validators only
                # narrow lax mode; a value of any other type goes to pydantic.
                return None
        if nullable:
            types.add(_NONE_T)
        if not info.is_required():
            if info.default_factory is not None:
                return None  # the HTTP body's generated envelope: never decoded here
            types.add(_MISSING_T)
        default = _MISSING if info.is_required() else info.default
        checks.append(FieldCheck(name, kind, frozenset(types), lo, hi, default, pattern))
    return checks


def _value_ok(check: FieldCheck, v: Any) -> bool:
    if type(v) not in check.types:
        return False
    if v is None or v is _MISSING:
        return True
    if check.kind == "str":
        return (
            (check.lo is None or len(v) >= check.lo)
            and (check.hi is None or len(v) <= check.hi)
            and (check.pattern is None or _pattern_ok(check.pattern, (v,)))
        )
    if check.kind in ("int", "float"):
        return math.isfinite(v) and (check.lo is None or v >= check.lo) and (check.hi is None or v <= check.hi)
    return True


def _text_column_ok(check: FieldCheck, values: Sequence[Any]) -> set[Any] | None:
    """Whole-column check of a text field: its distinct values if every value is fine, else None.

    Categories repeat: types, lengths and patterns are checked per distinct value. Equal
    values of different types (1, 1.0, True) collapse in a set, but none of them is text,
    so a column holding any non-text value still shows a non-text type.
    """
    try:
        distinct = set(values)
    except TypeError:  # a JSON array or object: not text
        return None
    types = set(map(type, distinct))
    if not types <= check.types:
        return None
    text = distinct
    if types & {_NONE_T, _MISSING_T}:
        text = {v for v in distinct if v is not None and v is not _MISSING}
        if not text:
            return distinct
    lengths = list(map(len, text))
    if (
        (check.lo is None or min(lengths) >= check.lo)
        and (check.hi is None or max(lengths) <= check.hi)
        and (check.pattern is None or _pattern_ok(check.pattern, text))
    ):
        return distinct
    return None


def _unique_text_column_ok(check: FieldCheck, values: Sequence[Any]) -> bool:
    """Whole-column check of a text field whose values do not repeat (ids): :func:`_text_column_ok`
    without the set of distinct values, which would hash every value for nothing."""
    types = set(map(type, values))
    if not types <= check.types:
        return False
    if types & {_NONE_T, _MISSING_T}:
        values = [v for v in values if v is not None and v is not _MISSING]
        if not values:
            return True
    lengths = list(map(len, values))
    return (
        (check.lo is None or min(lengths) >= check.lo)
        and (check.hi is None or max(lengths) <= check.hi)
        and (check.pattern is None or _pattern_ok(check.pattern, values))
    )


def _column_ok(check: FieldCheck, values: Sequence[Any]) -> bool:
    """Whole-column check (the common case: every record fine)."""
    if check.kind == "str":
        return _text_column_ok(check, values) is not None
    types = set(map(type, values))
    if not types <= check.types:
        return False
    if types & {_NONE_T, _MISSING_T}:
        values = [v for v in values if v is not None and v is not _MISSING]
        if not values:
            return True
    if check.kind in ("int", "float"):
        lo, hi = min(values), max(values)
        return (
            math.isfinite(lo)
            and math.isfinite(hi)
            and (check.lo is None or lo >= check.lo)
            and (check.hi is None or hi <= check.hi)
        )
    return True


def _utc_iso(value: str) -> str | None:
    """``value`` parsed and re-written as pydantic + ``_to_utc`` would, or None if not canonical.

    A value already in that form (``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``, a non-zero
    fraction of six digits, as ``datetime.isoformat`` writes a UTC time and our producers
    send it) is returned as it is once :meth:`datetime.fromisoformat` has checked its
    ranges: parsing and writing it again would give the same text. Its separators are
    checked here; ``fromisoformat`` takes only ASCII digits in the other positions.
    Anything else takes :func:`_utc_iso_rewritten`.
    """
    n = len(value)
    if (
        (n == 25 or (n == 32 and value[19] == "." and value[20:26] != "000000"))
        and value[4:17:3] == "--T::"
        and value.endswith("+00:00")
    ):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return None
        return value
    return _utc_iso_rewritten(value)


def _utc_iso_rewritten(value: str) -> str | None:
    """:func:`_utc_iso` of any canonical UTC timestamp (``Z``, shorter fractions): parse and write it again."""
    if not _UTC_TIME.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    except ValueError:
        return None


def _iso_layout(width: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Shape, digit positions and field weights of ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``.

    Returns
    -------
    shape : bytes of length width
        The text with every digit written ``d`` (the offset's zeros too: checked apart).
    digits : ndarray of shape (n_digits,), intp
        Positions of the date and time digits.
    weights : ndarray of shape (n_digits, 7), float64
        ``digit values @ weights`` gives year, month, day, hour, minute, second and the
        sum of the fraction's digits.
    """
    text = "0000-00-00T00:00:00" + (".000000" if width == 32 else "") + "+00:00"
    weights = np.zeros((width, 7))
    for field, (start, size) in enumerate(((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2))):
        weights[start : start + size, field] = 10.0 ** np.arange(size - 1, -1, -1)
    if width == 32:
        weights[20:26, 6] = 1.0
    digits = np.flatnonzero([c == "0" for c in text[:-6]])
    return text.replace("0", "d").encode(), digits, np.ascontiguousarray(weights[digits])


_ISO_LAYOUTS = {width: _iso_layout(width) for width in (25, 32)}
#: ``bytes.translate`` table writing every ASCII digit as ``d``.
_DIGITS_AS_D = bytes.maketrans(b"0123456789", b"dddddddddd")
_FIELD_LO = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
_FIELD_HI = np.array([9999.0, 12.0, 31.0, 23.0, 59.0, 59.0])
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _canonical_utc_column(values: Sequence[Any]) -> bool:
    """Whether every value is text that :func:`_utc_iso` returns unchanged, checked column-wise.

    The values must share one length, 25 (whole seconds) or 32 (six-digit fraction, not
    all zero), with the separators and ``+00:00`` in place, ASCII digits elsewhere and a
    date and time that exist: year 1..9999, month 1..12, day within the month (Gregorian
    leap years), hour < 24, minute < 60, second < 60; exactly what
    :meth:`datetime.fromisoformat` accepts in that form. False sends the column value by
    value through :func:`_utc_iso`.

    The column is read as one ASCII text: the values joined (one length, so value ``i``
    is the ``i``-th slice of it) and encoded once; its shape is checked with one
    ``bytes.translate`` and one comparison, the digits as one byte matrix. Text with any
    other character is not canonical.
    """
    if not values or set(map(type, values)) != {str}:
        return False
    lengths = set(map(len, values))
    if lengths != {25} and lengths != {32}:
        return False
    width = lengths.pop()
    n = len(values)
    text = "".join(values)
    if not text.isascii():
        return False
    data = text.encode("ascii")
    shape, digits, weights = _ISO_LAYOUTS[width]
    # Every value has the shape; "+" is then only at each offset, so n "+00:00" are all of them.
    if data.translate(_DIGITS_AS_D) != shape * n or data.count(b"+00:00") != n:
        return False
    chars = np.frombuffer(data, dtype=np.uint8).reshape(n, width)
    fields = (chars[:, digits] - 48.0) @ weights  # (n, 7), exact: small integers
    if not ((fields[:, :6] >= _FIELD_LO) & (fields[:, :6] <= _FIELD_HI)).all():
        return False
    late = fields[:, 2] > 28
    if late.any():
        year, month, day = fields[late, :3].T.astype(np.int64)
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        if not (day <= _DAYS_IN_MONTH[month] + (leap & (month == 2))).all():
            return False
    # A zero fraction is written without it: "...:00.000000+00:00" is not isoformat's text.
    return width == 25 or bool((fields[:, 6] > 0).all())


@dataclass
class Decoded:
    """Valid rows of a micro-batch, in input order, as plain field dicts (every contract field present)."""

    records: list[RawRecord]
    rows: list[dict[str, Any]]
    event_times: list[str]  # UTC ISO 8601, as ``event.event_time.isoformat()``
    failures: list[Failure]
    #: Every contract field's values, in the order of ``rows``, when all of them took the fast
    #: path (the common case): the columns the checks read, so featurising need not read the
    #: rows again. None when a record went through pydantic.
    fields: dict[str, Sequence[Any]] | None = None
    #: With ``fields``: the distinct values of each text field that has no null (the checks
    #: compute them; not of the decoder's ``unique_text`` ids), so featurising can see at once
    #: whether the text needs normalising.
    distinct: dict[str, set[str]] | None = None


class Decoder:
    """The decoder of one contract: the fast path's checks, derived once from the model.

    Parameters
    ----------
    model : type
        A generated customer event model (:func:`schemas.events.customer_event_model`).
    unique_text : iterable of str, default ("event_id",)
        Text fields whose values do not repeat from event to event (ids): checked value by
        value, without the set of distinct values kept for the other text fields.

    Attributes
    ----------
    checks : list of FieldCheck or None
        None when the fast path does not understand the model (every record goes through pydantic).
    """

    def __init__(self, model: type[CustomerEventBase], unique_text: Iterable[str] = ("event_id",)) -> None:
        self.model = model
        self.unique_text = frozenset(unique_text)
        self.checks = field_checks(model)
        self._all_fields = itemgetter(*(c.name for c in self.checks)) if self.checks else None
        contract = getattr(model, "__contract__", None)
        self.blank_conditions = contract.blank_conditions if contract is not None else ()
        self._text_rules = contract.text if contract is not None else None

    def _decode_slow(self, rec: RawRecord) -> tuple[dict[str, Any] | None, str | None, Failure | None]:
        """One record through pydantic: the contract's own coercions and error messages."""
        if not rec.value:
            return None, None, Failure(rec, "decode", "EmptyValue", "record value is null or empty")
        try:
            ev = self.model.model_validate_json(rec.value)
        except ValidationError as exc:
            err = format_validation_error(exc)
            return None, None, Failure(rec, _stage_of(exc), "EventValidationError", str(err))
        return dict(ev.__dict__), ev.event_time.isoformat(), None

    def _blank_conditions_ok(
        self, docs: list[dict[str, Any]], columns: dict[str, Sequence[Any]], slow: list[bool], idx: list[int]
    ) -> None:
        """Send to pydantic each row whose null is not allowed by its condition."""
        rules = self._text_rules
        for c in self.blank_conditions:
            column = columns[c.field]
            if None not in column and _MISSING not in column:  # the common case: no null at all
                continue
            for j, d in enumerate(docs):
                if d.get(c.field) is None:
                    value = d.get(c.condition_field)
                    if isinstance(value, str) and rules is not None:
                        value = normalise_text(value, rules)
                    if value is None or isinstance(value, bool) != isinstance(c.equals, bool) or value != c.equals:
                        slow[idx[j]] = True

    def decode(self, records: Sequence[RawRecord], timings: dict[str, float] | None = None) -> Decoded:
        """Like :func:`decode_batch`, without building a pydantic object per record.

        Parameters
        ----------
        records : sequence of RawRecord
        timings : dict of str to float, optional
            When given, the seconds spent are added to ``timings["decode"]`` (bytes to
            dicts: ``orjson.loads``) and ``timings["validate"]`` (the contract's checks and
            the pydantic path).

        Returns
        -------
        Decoded
        """
        tick = perf_counter() if timings is not None else 0.0
        n = len(records)
        checks, all_fields = self.checks, self._all_fields
        values = [rec.value for rec in records]
        docs: list[Any] | None = None
        if checks is not None and all(values):
            try:  # the common case: every record is JSON
                docs = list(map(orjson.loads, cast("list[bytes]", values)))
            except orjson.JSONDecodeError:
                docs = None
        if checks is None:  # the fast path does not understand the contract: pydantic does all
            docs, slow = [None] * n, [True] * n
        elif docs is None:
            docs, slow = self._loads_each(values)
        elif set(map(type, docs)) == {dict}:
            slow = [False] * n
        else:
            slow = [type(d) is not dict for d in docs]
        if timings is not None:
            now = perf_counter()
            timings["decode"] = timings.get("decode", 0.0) + now - tick
            tick = now
        all_fast = not any(slow)
        fast_idx = list(range(n)) if all_fast else [i for i in range(n) if not slow[i]]
        times: list[str | None] = [None] * n
        table: list[Sequence[Any]] = []
        distinct: dict[str, set[str]] = {}
        if fast_idx and checks is not None and all_fields is not None:  # no record is fast without checks
            fast_docs = docs if all_fast else [docs[i] for i in fast_idx]
            table = self._table(fast_docs)
            for k, (check, column) in enumerate(zip(checks, table)):
                if check.kind == "time":
                    if _canonical_utc_column(column):  # the form our producers write: kept as it is
                        if all_fast:
                            times = list(column)
                        else:
                            for j, v in zip(fast_idx, column):
                                times[j] = v
                        continue
                    for j, v in zip(fast_idx, column):
                        iso = _utc_iso(v) if type(v) is str else None
                        if iso is None:
                            slow[j] = True
                        else:
                            times[j] = iso
                    continue
                if check.kind == "str" and check.name in self.unique_text:
                    ok = _unique_text_column_ok(check, column)
                elif check.kind == "str":
                    text = _text_column_ok(check, column)
                    ok = text is not None
                    if ok and None not in text and _MISSING not in text:  # type: ignore[operator]
                        distinct[check.name] = text  # type: ignore[assignment]
                else:
                    ok = _column_ok(check, column)
                if not ok:
                    for j, v in enumerate(column):
                        if not _value_ok(check, v):
                            slow[fast_idx[j]] = True
                if check.default is not _MISSING and _MISSING in column:
                    for d, v in zip(fast_docs, column):
                        if v is _MISSING:
                            d[check.name] = check.default
                    table[k] = [check.default if v is _MISSING else v for v in column]
            if self.blank_conditions:
                by_name = dict(zip((c.name for c in checks), table))
                self._blank_conditions_ok(fast_docs, by_name, slow, fast_idx)
        if checks is not None and not any(slow):
            out = Decoded(list(records), docs, times, [])  # type: ignore[arg-type]  # all fast: every time set
            if n:
                out.fields = dict(zip((c.name for c in checks), table))
                out.distinct = distinct
        else:
            out = Decoded([], [], [], [])
            for i, rec in enumerate(records):
                if slow[i]:
                    row, iso, failure = self._decode_slow(rec)
                    if failure is not None:
                        out.failures.append(failure)
                        continue
                else:
                    row, iso = docs[i], times[i]
                out.records.append(rec)
                out.rows.append(row)  # type: ignore[arg-type]
                out.event_times.append(iso)  # type: ignore[arg-type]
        if timings is not None:
            timings["validate"] = timings.get("validate", 0.0) + perf_counter() - tick
        return out

    def _table(self, docs: list[dict[str, Any]]) -> list[Sequence[Any]]:
        """Every checked field's values (``_MISSING`` where absent), one sequence per check.

        Documents from one producer have the same keys in the same order (and orjson gives
        them the same key objects): then one pass over each document's values in order
        serves every field, else one look-up per field and document.
        """
        assert self.checks is not None and self._all_fields is not None
        keys = list(docs[0])
        if all(list(d) == keys for d in docs):
            position = {k: i for i, k in enumerate(keys)}
            try:
                where = [position[c.name] for c in self.checks]
            except KeyError:  # a field missing from every document
                pass
            else:
                columns = list(zip(*map(dict.values, docs)))
                return [columns[i] for i in where]
        try:  # one pass over the records for every field, when none is missing
            return list(zip(*map(self._all_fields, docs)))
        except KeyError:
            return [[d.get(c.name, _MISSING) for d in docs] for c in self.checks]

    @staticmethod
    def _loads_each(values: list[bytes | None]) -> tuple[list[Any], list[bool]]:
        """Parse record by record: a record that is empty or not a JSON object goes to pydantic (``slow``)."""
        docs: list[Any] = [None] * len(values)
        slow = [True] * len(values)
        for i, value in enumerate(values):
            if not value:
                continue
            try:
                doc = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if type(doc) is dict:
                docs[i] = doc
                slow[i] = False
        return docs, slow


_DECODERS: dict[tuple[type, frozenset[str]], Decoder] = {}


def decoder_for(model: type[CustomerEventBase], unique_text: Iterable[str] = ("event_id",)) -> Decoder:
    """The (cached) :class:`Decoder` of a contract model (``unique_text``: see :class:`Decoder`)."""
    key = (model, frozenset(unique_text))
    decoder = _DECODERS.get(key)
    if decoder is None:
        decoder = _DECODERS[key] = Decoder(model, key[1])
    return decoder
