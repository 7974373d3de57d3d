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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any

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


@dataclass(frozen=True)
class RawRecord:
    """One consumed Kafka record: original bytes and coordinates."""

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


def _column_ok(check: FieldCheck, values: Sequence[Any]) -> bool:
    """Whole-column check (the common case: every record fine)."""
    types = set(map(type, values))
    if not types <= check.types:
        return False
    if types & {_NONE_T, _MISSING_T}:
        values = [v for v in values if v is not None and v is not _MISSING]
        if not values:
            return True
    if check.kind == "str":
        distinct = set(values)  # categories repeat: lengths and patterns per distinct value
        lengths = list(map(len, distinct))
        return (
            (check.lo is None or min(lengths) >= check.lo)
            and (check.hi is None or max(lengths) <= check.hi)
            and (check.pattern is None or _pattern_ok(check.pattern, distinct))
        )
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
    """``value`` parsed and re-written as pydantic + ``_to_utc`` would, or None if not canonical."""
    if not _UTC_TIME.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    except ValueError:
        return None


@dataclass
class Decoded:
    """Valid rows of a micro-batch, in input order, as plain field dicts (every contract field present)."""

    records: list[RawRecord]
    rows: list[dict[str, Any]]
    event_times: list[str]  # UTC ISO 8601, as ``event.event_time.isoformat()``
    failures: list[Failure]


class Decoder:
    """The decoder of one contract: the fast path's checks, derived once from the model.

    Parameters
    ----------
    model : type
        A generated customer event model (:func:`schemas.events.customer_event_model`).

    Attributes
    ----------
    checks : list of FieldCheck or None
        None when the fast path does not understand the model (every record goes through pydantic).
    """

    def __init__(self, model: type[CustomerEventBase]) -> None:
        self.model = model
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

    def decode(self, records: Sequence[RawRecord]) -> Decoded:
        """Like :func:`decode_batch`, without building a pydantic object per record."""
        n = len(records)
        docs: list[Any] = [None] * n
        slow = [False] * n
        loads = orjson.loads
        checks, all_fields = self.checks, self._all_fields
        for i, rec in enumerate(records):
            value = rec.value
            if not value or checks is None:
                slow[i] = True
                continue
            try:
                doc = loads(value)
            except orjson.JSONDecodeError:
                slow[i] = True
                continue
            if type(doc) is dict:
                docs[i] = doc
            else:
                slow[i] = True
        fast_idx = [i for i in range(n) if not slow[i]]
        times: list[str | None] = [None] * n
        if fast_idx and checks is not None and all_fields is not None:  # no record is fast without checks
            fast_docs = [docs[i] for i in fast_idx]
            table: list[Sequence[Any]]
            try:  # one pass over the records for every field, when none is missing
                table = list(zip(*map(all_fields, fast_docs)))
            except KeyError:
                table = [[d.get(c.name, _MISSING) for d in fast_docs] for c in checks]
            for check, values in zip(checks, table):
                if check.kind == "time":
                    for j, v in enumerate(values):
                        iso = _utc_iso(v) if type(v) is str else None
                        if iso is None:
                            slow[fast_idx[j]] = True
                        else:
                            times[fast_idx[j]] = iso
                    continue
                if not _column_ok(check, values):
                    for j, v in enumerate(values):
                        if not _value_ok(check, v):
                            slow[fast_idx[j]] = True
                if check.default is not _MISSING and _MISSING_T in set(map(type, values)):
                    for d, v in zip(fast_docs, values):
                        if v is _MISSING:
                            d[check.name] = check.default
            if self.blank_conditions:
                by_name = dict(zip((c.name for c in checks), table))
                self._blank_conditions_ok(fast_docs, by_name, slow, fast_idx)
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
        return out


_DECODERS: dict[type, Decoder] = {}


def decoder_for(model: type[CustomerEventBase]) -> Decoder:
    """The (cached) :class:`Decoder` of a contract model."""
    decoder = _DECODERS.get(model)
    if decoder is None:
        decoder = _DECODERS[model] = Decoder(model)
    return decoder
