"""The dataset profile file format: a pydantic model that validates it and exports its JSON Schema.

A profile says how one customer table maps onto events and models: its source columns and
their types, the id, the churn label and how to read it, the optional customer-value target,
feature roles, derived features, text normalisation and missing-value rules. Profiles are YAML
(or JSON) files; ``schemas/shipped_profiles/`` holds the shipped ones and
:func:`schemas.profiles.get_profile` loads any of them. ``churn profile schema`` prints
:func:`profile_json_schema`.

Field types
-----------
``integer``
    Whole numbers (``>= 0`` unless ``non_negative: false``, ``<= maximum`` when given); int64.
``number``
    Finite decimals (``>= 0`` unless ``non_negative: false``, ``<= maximum`` when given); float64.
    A blank cell is NaN unless ``missing`` says otherwise. (``maximum`` is enforced by the event
    contract, :func:`schemas.events.customer_event_model`.)
``boolean``
    ``encoding: one_zero`` reads ``1``/``0`` (also ``1.0``/``0.0``); ``true_false`` reads
    ``true``/``false`` in any case. bool.
``yes_no``
    ``Yes``/``No`` in any case; bool.
``category``
    Non-empty text, normalised by the profile's ``text`` rules. ``levels`` may give ordinal
    values that derived-feature expressions read.
``date``
    An ISO ``YYYY-MM-DD`` date, kept as that text (JSON events, Parquet and the worker carry
    the same string).
``identifier``
    Non-empty text naming a record (trimmed and Unicode-normalised, never case-folded).

Ids
---
``id.column`` names the source column of the customer id. Without one, ingestion derives a
stable id for every row, ``id.field`` (default ``customer_id``): the first 16 hex digits of the
SHA-256 of the row's typed values (every source field except the label, in profile order,
each written as text: integers in decimal, numbers in Arrow's shortest round-trip form, NaN as
``nan``, booleans as ``true``/``false``, text after normalisation), joined by U+001F. Rows
whose values repeat get ``-2``, ``-3``, ... in file order, so ids stay unique and re-reading
the same file gives the same ids.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.expressions import ExpressionError, expression_names

FieldType = Literal["integer", "number", "boolean", "yes_no", "category", "date", "identifier"]

#: Unit -> the suffix an event field of that unit ends with.
UNIT_SUFFIXES = {
    "USD": "_usd",
    "EUR": "_eur",
    "GBP": "_gbp",
    "km": "_km",
    "kg": "_kg",
    "days": "_days",
    "months": "_months",
    "years": "_years",
    "minutes": "_minutes",
    "seconds": "_s",
    "rate": "_rate",
}

_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FieldName = Annotated[str, Field(pattern=_FIELD_NAME.pattern, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextRules(_Strict):
    """How text cells are normalised before they are parsed or compared."""

    unicode_form: Literal["NFKC", "NFC", "none"] = Field(
        default="NFKC", description="Unicode normalisation of every text cell ('none' keeps the bytes' code points)."
    )
    trim: bool = Field(default=True, description="Strip leading and trailing whitespace.")
    casefold: bool = Field(
        default=False,
        description="Case-fold category values (str.casefold). Identifiers are never case-folded; "
        "yes/no and true/false are always read case-insensitively.",
    )


class Condition(_Strict):
    """``field == equals`` on the typed row."""

    field: FieldName
    equals: float | int | bool | str


class MissingRule(_Strict):
    """What a blank cell means.

    ``reject`` (the default, except for numbers) fails ingestion; ``keep`` leaves NaN (numbers
    only; the featuriser imputes the training median); ``fill`` writes ``value``. With
    ``only_when``, a blank is filled only in rows meeting the condition and rejected elsewhere:
    Telco's "blank TotalCharges with tenure 0 is 0.0".
    """

    blank: Literal["reject", "keep", "fill"]
    value: float | int | bool | str | None = None
    only_when: Condition | None = None

    @model_validator(mode="after")
    def _value_iff_fill(self) -> MissingRule:
        if (self.blank == "fill") != (self.value is not None):
            raise ValueError("'value' is required with blank: fill and only allowed with it")
        if self.only_when is not None and self.blank != "fill":
            raise ValueError("'only_when' only applies to blank: fill")
        return self


class FieldSpec(_Strict):
    """One source column and the event field it becomes."""

    column: str = Field(description="Header of the column in the source file (matched after NFKC, trim, case-fold).")
    name: FieldName = Field(description="Event field name: snake_case, unit suffix where it matters.")
    type: FieldType
    unit: str | None = Field(
        default=None, description="Unit of the values; a unit in UNIT_SUFFIXES fixes the name's suffix."
    )
    encoding: Literal["one_zero", "true_false"] | None = Field(
        default=None, description="Text of a boolean (default one_zero)."
    )
    non_negative: bool = Field(default=True, description="integer/number: reject values below 0.")
    maximum: float | None = Field(
        default=None,
        description="integer/number: largest valid value (the event contract's 'maximum'); null: no upper bound.",
    )
    levels: dict[str, float] | None = Field(
        default=None, description="category: ordinal value of each level, read by derived-feature expressions."
    )
    missing: MissingRule | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.encoding is not None and self.type != "boolean":
            raise ValueError(f"{self.name}: 'encoding' applies to boolean fields only")
        if self.levels is not None and self.type != "category":
            raise ValueError(f"{self.name}: 'levels' applies to category fields only")
        if self.maximum is not None:
            if self.type not in ("integer", "number"):
                raise ValueError(f"{self.name}: 'maximum' applies to integer and number fields only")
            if self.non_negative and self.maximum < 0:
                raise ValueError(f"{self.name}: 'maximum' {self.maximum:g} is below 0 for a non-negative field")
        suffix = UNIT_SUFFIXES.get(self.unit or "")
        if suffix and not self.name.endswith(suffix):
            raise ValueError(f"{self.name}: a field in {self.unit} is named with the suffix {suffix!r}")
        if self.missing is not None:
            if self.missing.blank == "keep" and self.type != "number":
                raise ValueError(f"{self.name}: blank: keep (NaN) applies to number fields only")
            if self.missing.value is not None and self.type in ("integer", "number"):
                if isinstance(self.missing.value, (bool, str)):
                    raise ValueError(f"{self.name}: fill value must be a number, got {self.missing.value!r}")
            if self.type in ("category", "identifier", "date") and self.missing.value is not None:
                if not isinstance(self.missing.value, str) or not self.missing.value.strip():
                    raise ValueError(f"{self.name}: fill value must be non-empty text")
        return self

    @property
    def blank_rule(self) -> str:
        """The effective blank rule: the declared one, else ``keep`` for numbers and ``reject`` otherwise."""
        if self.missing is not None:
            return self.missing.blank
        return "keep" if self.type == "number" else "reject"


class IdSpec(_Strict):
    """The customer id: a source column, or derived from the row (see the module docstring)."""

    column: str | None = Field(default=None, description="Source column of the id; null derives one from the row.")
    field: FieldName = Field(default="customer_id", description="Event field of a derived id (ignored with a column).")


class LabelSpec(_Strict):
    """The churn label and how to read it.

    A ``yes_no`` field reads Yes/No; a ``boolean`` field reads 1/0, 1.0/0.0 or true/false (its
    ``encoding``); a ``category`` field is churned when its normalised value is one of
    ``positive_values``.
    """

    field: FieldName
    positive_values: list[str] | None = None


class Features(_Strict):
    """Feature roles. Every field except the id and the label is in exactly one of
    ``numeric``, ``categorical`` or ``excluded``; derived features in ``numeric``."""

    numeric: list[FieldName] = Field(description="Numeric model inputs, in model order (booleans count 0/1).")
    categorical: list[FieldName] = Field(description="One-hot encoded inputs, in model order.")
    excluded: list[FieldName] = Field(default_factory=list, description="Fields that are not model inputs.")
    value_leakage: list[FieldName] = Field(
        default_factory=list,
        description="Inputs the value regressor never sees: figures read off the same records as its target.",
    )


class DerivedSpec(_Strict):
    """A feature computed row-wise from typed fields (:mod:`schemas.expressions`)."""

    name: FieldName
    expression: str
    unit: str | None = None
    description: str | None = None


class ProfileSpec(_Strict):
    """A dataset profile file."""

    format_version: Literal[1] = 1
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)]
    description: str | None = None
    text: TextRules = TextRules()
    id: IdSpec = IdSpec()
    label: LabelSpec
    value_target: FieldName | None = Field(
        default=None, description="Customer-value field; null: no regressor is trained."
    )
    fields: list[FieldSpec] = Field(min_length=2)
    derived: list[DerivedSpec] = Field(default_factory=list)
    features: Features

    @model_validator(mode="after")
    def _cross_references(self) -> ProfileSpec:
        errors: list[str] = []
        by_name = {f.name: f for f in self.fields}
        for kind, values in (
            ("field name", [f.name for f in self.fields]),
            ("column", [f.column for f in self.fields]),
        ):
            seen: set[str] = set()
            for v in values:
                key = v.strip().casefold() if kind == "column" else v
                if key in seen:
                    errors.append(f"duplicate {kind} {v!r}")
                seen.add(key)
        derived = {d.name: d for d in self.derived}
        for name in derived:
            if name in by_name:
                errors.append(f"derived feature {name!r} shadows a field")
        id_field = self.id_field
        if self.id.column is not None:
            match = [f for f in self.fields if f.column == self.id.column]
            if not match:
                errors.append(f"id.column {self.id.column!r} is not a field's column")
            elif match[0].type not in ("identifier", "integer"):
                errors.append(f"id.column {self.id.column!r} must be an identifier or integer field")
        elif id_field in by_name:
            errors.append(f"derived id field {id_field!r} clashes with a field; set id.field")
        label = by_name.get(self.label.field)
        if label is None:
            errors.append(f"label.field {self.label.field!r} is not a field")
        elif label.type == "category":
            if not self.label.positive_values:
                errors.append(f"label {label.name!r} is a category: list its positive_values")
        elif label.type in ("yes_no", "boolean"):
            if self.label.positive_values:
                errors.append(f"label {label.name!r} is {label.type}: positive_values only apply to a category")
        else:
            errors.append(f"label {label.name!r} must be yes_no, boolean or category, not {label.type}")
        if self.value_target is not None:
            target = by_name.get(self.value_target)
            if target is None or target.type not in ("integer", "number"):
                errors.append(f"value_target {self.value_target!r} must be an integer or number field")
        for d in self.derived:
            try:
                names = expression_names(d.expression)
            except ExpressionError as exc:
                errors.append(f"derived {d.name}: {exc}")
                continue
            if not names:
                errors.append(f"derived {d.name}: the expression reads no field")
            for n in sorted(names):
                f = by_name.get(n)
                if f is None:
                    errors.append(f"derived {d.name}: unknown field {n!r}")
                elif f.type == "category" and not f.levels:
                    errors.append(f"derived {d.name}: category {n!r} has no levels")
                elif f.type in ("identifier", "date"):
                    errors.append(f"derived {d.name}: {f.type} {n!r} cannot be computed with")
        feats = self.features
        roles: dict[str, str] = {}
        for role in ("numeric", "categorical", "excluded"):
            for n in getattr(feats, role):
                if n in roles:
                    errors.append(f"{n!r} is both {roles[n]} and {role}")
                roles[n] = role
                if n not in by_name and n not in derived:
                    errors.append(f"features.{role}: unknown field {n!r}")
        for n in feats.categorical:
            f = by_name.get(n)
            if f is not None and f.type not in ("category", "integer", "boolean", "yes_no"):
                errors.append(f"features.categorical: {n!r} is {f.type}")
        for n in feats.numeric:
            f = by_name.get(n)
            if f is not None and f.type in ("category", "identifier", "date"):
                errors.append(f"features.numeric: {n!r} is {f.type}, not a number")
        for n in derived:
            if roles.get(n) == "categorical":
                errors.append(f"derived feature {n!r} is numeric")
        special = {self.label.field} | ({by_name_col(self, self.id.column)} if self.id.column else set())
        for n in by_name:
            if n in special:
                if roles.get(n) in ("numeric", "categorical"):
                    errors.append(f"{n!r} is the {'label' if n == self.label.field else 'id'}, not a feature")
            elif n not in roles:
                errors.append(f"field {n!r} has no role: list it under features numeric, categorical or excluded")
        for n in feats.value_leakage:
            if roles.get(n) not in ("numeric", "categorical"):
                errors.append(f"features.value_leakage: {n!r} is not a feature")
        if feats.value_leakage and self.value_target is None:
            errors.append("features.value_leakage given without a value_target")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def id_field(self) -> str:
        """Event field of the id: the id column's field, or the derived id's."""
        if self.id.column is not None:
            return by_name_col(self, self.id.column) or self.id.field
        return self.id.field


def by_name_col(spec: ProfileSpec, column: str | None) -> str:
    """Event field name of a source ``column`` ('' when no field reads it)."""
    return next((f.name for f in spec.fields if f.column == column), "")


def profile_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a profile file."""
    schema = ProfileSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "churn-stream dataset profile"
    return schema


def snake_case(header: str) -> str:
    """An event field name for a source header: ``customerID`` -> ``customer_id``,
    ``Total Day Minutes`` -> ``total_day_minutes``, ``HTTPStatus`` -> ``http_status``.

    Accents are dropped (NFKD), runs of other characters become one ``_``, a leading digit
    gets ``f_``; an empty result is ``''`` (the caller names it by position).
    """
    import unicodedata

    text = unicodedata.normalize("NFKD", header.replace("\ufeff", "")).encode("ascii", "ignore").decode()
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text.strip())
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    if text and text[0].isdigit():
        text = "f_" + text
    return text[:64]
