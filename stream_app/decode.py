"""Decoding a micro-batch: Kafka bytes to valid event rows and failures, against a data set's contract.

The contract is a generated pydantic model (:func:`schemas.events.customer_event_model`).
Decoding takes a fast path for records in the canonical form our producers write (orjson
parse, then the column-wise type, range, text and blank-rule checks of :mod:`stream_app.validate`);
any record the fast path is not sure about goes through pydantic exactly as before, so
every accepted value and every error message is the contract's own. Measured with
``churn bench stream``. Pure functions over bytes, no I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from time import perf_counter
from typing import Any, NamedTuple, cast

import orjson
from pydantic import ValidationError

from schemas.events import (
    SCHEMA_VERSION,
    CustomerEvent,
    CustomerEventBase,
    format_validation_error,
)
from schemas.normalise import normalise_text
from stream_app.validate import (
    MISSING,
    canonical_utc_column,
    column_ok,
    field_checks,
    text_column_ok,
    unique_text_column_ok,
    utc_iso,
    value_ok,
)


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
    checks : list of stream_app.validate.FieldCheck or None
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
            if None not in column and MISSING not in column:  # the common case: no null at all
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
                    if canonical_utc_column(column):  # the form our producers write: kept as it is
                        if all_fast:
                            times = list(column)
                        else:
                            for j, v in zip(fast_idx, column):
                                times[j] = v
                        continue
                    for j, v in zip(fast_idx, column):
                        iso = utc_iso(v) if type(v) is str else None
                        if iso is None:
                            slow[j] = True
                        else:
                            times[j] = iso
                    continue
                if check.kind == "str" and check.name in self.unique_text:
                    ok = unique_text_column_ok(check, column)
                elif check.kind == "str":
                    text = text_column_ok(check, column)
                    ok = text is not None
                    if ok and None not in text and MISSING not in text:  # type: ignore[operator]
                        distinct[check.name] = text  # type: ignore[assignment]
                else:
                    ok = column_ok(check, column)
                if not ok:
                    for j, v in enumerate(column):
                        if not value_ok(check, v):
                            slow[fast_idx[j]] = True
                if check.default is not MISSING and MISSING in column:
                    for d, v in zip(fast_docs, column):
                        if v is MISSING:
                            d[check.name] = check.default
                    table[k] = [check.default if v is MISSING else v for v in column]
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
        """Every checked field's values (``MISSING`` where absent), one sequence per check.

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
            return [[d.get(c.name, MISSING) for d in docs] for c in self.checks]

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
