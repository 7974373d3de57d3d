"""Validation of decoded columns against a data set's contract, without pydantic, for canonical values.

:func:`field_checks` derives from the generated pydantic model
(:func:`schemas.events.customer_event_model`) what each field accepts in strict mode: JSON
type, bounds, text length and pattern, nullability, default. The column checks apply them
to a whole micro-batch column at once (categories per distinct value), and
:func:`canonical_utc_column` checks a column of timestamps as one byte matrix. A value they
are not sure of is left to pydantic by the caller (:class:`stream_app.decode.Decoder`), so
they never accept what the contract refuses. ``validate`` in the stage timings of
:func:`stream_app.scoring.score_batch`. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import BeforeValidator
from pydantic.types import Strict

from schemas.events import NON_BLANK_PATTERN, CustomerEventBase, json_datetime, json_integer

__all__ = [
    "MISSING",
    "FieldCheck",
    "canonical_utc_column",
    "column_ok",
    "field_checks",
    "text_column_ok",
    "unique_text_column_ok",
    "utc_iso",
    "utc_iso_rewritten",
    "value_ok",
]

#: Stands for a field absent from a document (distinct from JSON null).
MISSING = object()
_NONE_T = type(None)
_MISSING_T = type(MISSING)
_ABSENT_TYPES = frozenset({_NONE_T, _MISSING_T})
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
        default = MISSING if info.is_required() else info.default
        checks.append(FieldCheck(name, kind, frozenset(types), lo, hi, default, pattern))
    return checks


def value_ok(check: FieldCheck, v: Any) -> bool:
    if type(v) not in check.types:
        return False
    if v is None or v is MISSING:
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


def _present(check: FieldCheck, values: Collection[Any]) -> Collection[Any] | None:
    """``values`` without nulls and absent values, or None if any value's type is not the field's.

    The filtered copy is made only when the column holds a null or an absent value.
    """
    types = set(map(type, values))
    if not types <= check.types:
        return None
    if types & _ABSENT_TYPES:
        return [v for v in values if v is not None and v is not MISSING]
    return values


def text_column_ok(check: FieldCheck, values: Sequence[Any]) -> set[Any] | None:
    """Whole-column check of a text field: its distinct values if every value is fine, else None.

    Categories repeat: types, lengths and patterns are checked per distinct value. Equal
    values of different types (1, 1.0, True) collapse in a set, but none of them is text,
    so a column holding any non-text value still shows a non-text type.
    """
    try:
        distinct = set(values)
    except TypeError:  # a JSON array or object: not text
        return None
    text = _present(check, distinct)
    if text is None:
        return None
    return distinct if not text or _texts_ok(check, text) else None


def unique_text_column_ok(check: FieldCheck, values: Sequence[Any]) -> bool:
    """Whole-column check of a text field whose values do not repeat (ids): :func:`text_column_ok`
    without the set of distinct values, which would hash every value for nothing."""
    text = _present(check, values)
    return text is not None and (not text or _texts_ok(check, text))


def _texts_ok(check: FieldCheck, texts: Collection[str]) -> bool:
    """Every text (at least one) within the field's length bounds and matching its pattern."""
    lengths = list(map(len, texts))
    return (
        (check.lo is None or min(lengths) >= check.lo)
        and (check.hi is None or max(lengths) <= check.hi)
        and (check.pattern is None or _pattern_ok(check.pattern, texts))
    )


def column_ok(check: FieldCheck, values: Sequence[Any]) -> bool:
    """Whole-column check (the common case: every record fine)."""
    if check.kind == "str":
        return text_column_ok(check, values) is not None
    present = _present(check, values)
    if present is None:
        return False
    if not present or check.kind not in ("int", "float"):
        return True
    lo, hi = min(present), max(present)
    return (
        math.isfinite(lo)
        and math.isfinite(hi)
        and (check.lo is None or lo >= check.lo)
        and (check.hi is None or hi <= check.hi)
    )


def utc_iso(value: str) -> str | None:
    """``value`` parsed and re-written as pydantic + ``_to_utc`` would, or None if not canonical.

    A value already in that form (``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``, a non-zero
    fraction of six digits, as ``datetime.isoformat`` writes a UTC time and our producers
    send it) is returned as it is once :meth:`datetime.fromisoformat` has checked its
    ranges: parsing and writing it again would give the same text. Its separators are
    checked here; ``fromisoformat`` takes only ASCII digits in the other positions.
    Anything else takes :func:`utc_iso_rewritten`.
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
    return utc_iso_rewritten(value)


def utc_iso_rewritten(value: str) -> str | None:
    """:func:`utc_iso` of any canonical UTC timestamp (``Z``, shorter fractions): parse and write it again."""
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


def canonical_utc_column(values: Sequence[Any]) -> bool:
    """Whether every value is text that :func:`utc_iso` returns unchanged, checked column-wise.

    The values must share one length, 25 (whole seconds) or 32 (six-digit fraction, not
    all zero), with the separators and ``+00:00`` in place, ASCII digits elsewhere and a
    date and time that exist: year 1..9999, month 1..12, day within the month (Gregorian
    leap years), hour < 24, minute < 60, second < 60; exactly what
    :meth:`datetime.fromisoformat` accepts in that form. False sends the column value by
    value through :func:`utc_iso`.

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
