"""Event contracts (pydantic v2 models): the single schema source for Kafka, HTTP and Parquet.

Every event carries ``event_id``, ``event_time`` (UTC) and ``schema_version``.
Money is in US dollars (``_usd``), durations carry their unit (``_months``).

The customer event of a data set is generated from its profile
(:func:`customer_event_model`; :data:`CustomerEvent` is Telco's) and the prediction API's
customer body from the same fields and rules (:func:`customer_input_model`): one contract
module for Kafka and HTTP. A model artifact records the contract it was trained on
(:func:`contract_metadata`: the profile's name and digest) and serves only events of that
contract (:func:`contract_refusal`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.expressions import expression_names
from schemas.normalise import normalise_text
from schemas.profile_model import FieldSpec, TextRules
from schemas.profiles import TELCO, DatasetProfile

#: Version of the event contracts in this module.
SCHEMA_VERSION = 1


def json_integer(value: Any) -> Any:
    """Refuse text and booleans for an integer field, as JSON Schema's ``integer`` does.

    Pydantic's lax mode would take ``"12"`` and ``true``; strict mode would also refuse
    ``12.0``, which JSON Schema counts as an integer (and which lax mode still accepts).

    Raises
    ------
    pydantic_core.PydanticCustomError
        ``int_type``, for a ``str`` or ``bool``.
    """
    if isinstance(value, (str, bool)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def json_datetime(value: Any) -> Any:
    """Refuse numbers and booleans for a date-time field, as JSON Schema's ``date-time`` does.

    Pydantic's lax mode reads a JSON number as Unix seconds; the contract says an ISO 8601
    string (``datetime`` objects from Python callers still pass).

    Raises
    ------
    pydantic_core.PydanticCustomError
        ``datetime_type``, for an ``int``, ``float`` or ``bool``.
    """
    if isinstance(value, (int, float)):  # bool is an int
        raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 date-time string")
    return value


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """A fresh random event id (UUID4, 36 characters)."""
    return str(uuid.uuid4())


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="ignore")

    event_id: Annotated[str, Field(min_length=1, max_length=64, description="Unique id of this event.")]
    event_time: Annotated[
        AwareDatetime,
        Field(description="When the event happened, timezone-aware (UTC)."),
        BeforeValidator(json_datetime),
    ]
    schema_version: Annotated[
        int, Field(ge=1, le=SCHEMA_VERSION, description="Contract version."), BeforeValidator(json_integer)
    ] = SCHEMA_VERSION

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class CustomerEventBase(_Event):
    """A customer record entering the system on a dataset's ``customers`` topic.

    The fields come from the dataset profile: :func:`customer_event_model` generates one
    model per profile (:data:`CustomerEvent` is Telco's). Types are strict, as in the
    exported JSON Schema: booleans (``boolean`` and ``yes_no`` fields) are JSON
    ``true``/``false`` (not ``1`` or ``"Yes"``), numbers are JSON numbers (not strings),
    integers are integers (``12`` or ``12.0``, not ``12.5`` or ``"12"``), text is a string
    with at least one non-blank character (at most 64 characters), dates are ISO
    ``YYYY-MM-DD`` text. Unknown extra fields are ignored.

    Nulls follow the profile's blank rule of each field, as a blank cell in a source file
    does (:mod:`schemas.profile_model`): ``keep`` (numbers without a declared rule) is a
    missing value the featuriser imputes with the training median; ``fill`` reads the
    fill value, with ``only_when`` only where its condition holds (Telco: a null
    ``total_charges_usd`` is 0.0 at ``tenure_months`` 0 and invalid otherwise); ``reject``
    makes the field required and non-null. The label and the fields that are not model
    inputs (``features.excluded``) may be omitted.
    """

    #: What a generated model was made from (None on this base class).
    __contract__: ClassVar[ContractInfo | None] = None

    if TYPE_CHECKING:
        # The fields are generated from a profile: the type checker cannot know their names.
        def __getattr__(self, name: str) -> Any: ...


class CustomerInputBase(CustomerEventBase):
    """A customer to score over HTTP: the ``customers`` contract; ``event_id``/``event_time`` may be omitted."""

    event_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            default_factory=new_event_id,
            description="Unique id of this event (generated when omitted).",
        ),
    ]
    event_time: Annotated[
        AwareDatetime,
        Field(default_factory=utc_now, description="When the event happened, UTC (now when omitted)."),
        BeforeValidator(json_datetime),
    ]


#: Longest text value of an event field (identifiers, categories, dates).
TEXT_MAX_LENGTH = 64
#: Text values need one character that is not white space (a blank cell is a null, not text): one
#: outside :data:`schemas.normalise.WHITE_SPACE`, spelled out because ``\\S`` differs between the
#: JSON Schema (ECMA-262) and pydantic (Rust) regex dialects (U+0085 is white space in one only).
NON_BLANK_PATTERN = r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
#: An ISO ``YYYY-MM-DD`` date, surrounding spaces allowed (the normaliser trims them); ASCII digits
#: in every regex dialect.
ISO_DATE_PATTERN = r"^[ \t]*[0-9]{4}-[0-9]{2}-[0-9]{2}[ \t]*$"
#: Error type of a null where the profile's ``only_when`` condition does not hold.
BLANK_RULE_ERROR = "blank_rule"


def _type_annotation(spec: FieldSpec, label: bool) -> tuple[Any, str]:
    """The annotation of one profile field (without null) and the noun of its expected value."""
    unit = f" ({spec.unit})" if spec.unit else ""
    description = spec.description or (
        "Known outcome, when the producer has it." if label else f"{spec.type.replace('_', '/')}{unit}"
    )
    if spec.type in ("boolean", "yes_no"):
        return Annotated[bool, Field(strict=True, description=description)], "true or false"
    if spec.type == "integer":
        lo = 0 if spec.non_negative else None
        hi = int(spec.maximum) if spec.maximum is not None else None
        return (
            Annotated[int, Field(ge=lo, le=hi, description=description), BeforeValidator(json_integer)],
            "an integer",
        )
    if spec.type == "number":
        lo = 0 if spec.non_negative else None
        return Annotated[float, Field(ge=lo, le=spec.maximum, strict=True, description=description)], "a number"
    pattern = ISO_DATE_PATTERN if spec.type == "date" else NON_BLANK_PATTERN
    return (
        Annotated[str, Field(min_length=1, max_length=TEXT_MAX_LENGTH, pattern=pattern, description=description)],
        "a date" if spec.type == "date" else "a string",
    )


@dataclass(frozen=True)
class BlankCondition:
    """A null in ``field`` is valid only when ``condition_field == equals`` (a ``fill ... only_when`` rule)."""

    field: str
    noun: str
    condition_field: str
    equals: Any


def contract_fields(profile: DatasetProfile) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The event fields of ``profile``: (required, optional), each in profile order.

    Required: the id, every model input and every field a derived feature or a blank
    condition reads. Optional: the label and the fields that are not model inputs.
    """
    spec = profile.spec
    needed = set(profile.features) | {profile.id_column}
    needed |= {n for d in spec.derived for n in expression_names(d.expression)}
    needed |= {f.missing.only_when.field for f in spec.fields if f.missing and f.missing.only_when}
    needed.discard(profile.classification_target)
    needed -= set(profile.derived_features)
    names = tuple(profile.field_types)
    return tuple(n for n in names if n in needed), tuple(n for n in names if n not in needed)


def _fields_of(profile: DatasetProfile) -> tuple[dict[str, Any], tuple[BlankCondition, ...]]:
    required, _ = contract_fields(profile)
    fields: dict[str, Any] = {}
    conditions = []
    for name in profile.field_types:
        spec = profile.fields_by_name.get(name)
        if spec is None:  # a derived id
            spec = FieldSpec(column=name, name=name, type="identifier", description="Customer id (derived).")
        label = name == profile.classification_target
        annotation, noun = _type_annotation(spec, label)
        nullable = label or name not in required or spec.blank_rule != "reject"
        if nullable:
            fields[name] = (Annotated[(annotation.__origin__ | None, *annotation.__metadata__)], None)
        else:
            fields[name] = (annotation, ...)
        rule = spec.missing
        if rule is not None and rule.only_when is not None:
            conditions.append(BlankCondition(name, noun, rule.only_when.field, rule.only_when.equals))
    return fields, tuple(conditions)


def _check_blank_conditions(conditions: tuple[BlankCondition, ...], text: Any) -> Callable[[Any], Any]:
    """The model validator of ``conditions`` (the fast decoder knows it by its name)."""

    def _blank_conditions(self: Any) -> Any:
        for c in conditions:
            if getattr(self, c.field) is None:
                value = getattr(self, c.condition_field)
                if isinstance(value, str):
                    value = normalise_text(value, text)
                # A flag equals only a flag: True == 1 in Python, not in the profile.
                if value is None or isinstance(value, bool) != isinstance(c.equals, bool) or value != c.equals:
                    raise PydanticCustomError(
                        BLANK_RULE_ERROR,
                        "{field}: expected {noun} (null is only valid when {condition_field} is {equals})",
                        {"field": c.field, "noun": c.noun, "condition_field": c.condition_field, "equals": c.equals},
                    )
        return self

    return _blank_conditions


def _generate(profile: DatasetProfile, base: type[CustomerEventBase], name: str) -> type[CustomerEventBase]:
    fields, conditions = _fields_of(profile)
    validators: dict[str, Any] = {}
    if conditions:
        validators["_blank_conditions"] = model_validator(mode="after")(
            _check_blank_conditions(conditions, profile.spec.text)
        )
        # The same rule in the exported JSON Schema: if the field is null or absent, the condition holds.
        rules: list[Any] = [
            {
                "if": {
                    "anyOf": [
                        {"not": {"required": [c.field]}},
                        {"required": [c.field], "properties": {c.field: {"type": "null"}}},
                    ]
                },
                "then": {"required": [c.condition_field], "properties": {c.condition_field: {"const": c.equals}}},
            }
            for c in conditions
        ]
        base = type(
            f"_{name}WithBlankRules",
            (base,),
            {"__module__": __name__, "model_config": ConfigDict(json_schema_extra={"allOf": rules})},
        )
    model = create_model(
        name,
        __base__=base,
        __doc__=f"{base.__doc__.splitlines()[0] if base.__doc__ else ''} Dataset profile {profile.name!r}.",
        __module__=__name__,
        __validators__=validators or None,
        **fields,
    )
    model.__contract__ = ContractInfo(profile.name, profile.digest, conditions, profile.spec.text)
    return model


@dataclass(frozen=True)
class ContractInfo:
    """What a generated event model was made from (``Model.__contract__``).

    Attributes
    ----------
    profile : str
        The profile's name.
    digest : str
        The contract hash: :attr:`schemas.profiles.DatasetProfile.digest`.
    blank_conditions : tuple of BlankCondition
        The nulls that are valid only under a condition (checked by the model's validator).
    text : TextRules
        The profile's text normalisation (conditions on text fields compare normalised values).
    """

    profile: str
    digest: str
    blank_conditions: tuple[BlankCondition, ...] = ()
    text: TextRules = TextRules()


_MODELS: dict[tuple[str, str], type[CustomerEventBase]] = {}


def customer_event_model(profile: DatasetProfile) -> type[CustomerEventBase]:
    """The ``customers`` topic contract of ``profile``: a pydantic model, cached per profile digest.

    Parameters
    ----------
    profile : DatasetProfile

    Returns
    -------
    type of CustomerEventBase
        Fields in profile order (a derived id first), typed and null-able as
        :class:`CustomerEventBase` says. ``Model.__contract__`` is its :class:`ContractInfo`.
    """
    key = ("event", profile.digest)
    if key not in _MODELS:
        _MODELS[key] = _generate(profile, CustomerEventBase, "CustomerEvent")
    return _MODELS[key]


def customer_input_model(profile: DatasetProfile) -> type[CustomerInputBase]:
    """The prediction API's customer body of ``profile``: :func:`customer_event_model`'s fields and
    rules, with ``event_id`` and ``event_time`` optional (generated when omitted)."""
    key = ("input", profile.digest)
    if key not in _MODELS:
        _MODELS[key] = _generate(profile, CustomerInputBase, "CustomerInput")
    return _MODELS[key]  # type: ignore[return-value]


#: Artifact metadata key (and registered version tag) of the data set a model was trained on.
PROFILE_METADATA_KEY = "dataset"
#: Artifact metadata key of the contract hash (the profile digest) a model was trained on.
CONTRACT_METADATA_KEY = "contract_sha256"


def contract_metadata(profile: DatasetProfile) -> dict[str, str]:
    """The artifact metadata that records the contract a model was trained on.

    ``{"dataset": profile name, "contract_sha256": profile digest}``. Batch writes it into every
    :class:`~scratch_models.pipeline.ScoringPipeline`'s ``metadata``; the worker and the API compare
    it with the profile they serve (:func:`contract_refusal`).
    """
    return {PROFILE_METADATA_KEY: profile.name, CONTRACT_METADATA_KEY: profile.digest}


def contract_refusal(metadata: Mapping[str, Any], profile: DatasetProfile) -> str | None:
    """Why a model trained with ``metadata`` may not serve ``profile``'s events, or None if it may.

    A model records its contract (:func:`contract_metadata`); it serves a profile only
    when the hashes are equal. An artifact from before contracts travelled with models
    records none: it is accepted when the data set it names (``metadata["dataset"]``) is
    the profile's, or when it names none (hand-built pipelines); the features it needs are
    checked by the model store either way.

    Returns
    -------
    str or None
        One line naming both sides, e.g. ``"contract telco@1a2b3c4d5e6f of the model is not
        retail@9f8e7d6c5b4a served here"``.
    """
    digest = metadata.get(CONTRACT_METADATA_KEY)
    trained_on = metadata.get(PROFILE_METADATA_KEY)
    if digest is None:
        if trained_on is None or trained_on == profile.name:
            return None
        return f"model trained on data set {trained_on!r} (no contract hash recorded), not {profile.name!r} served here"
    if digest != profile.digest:
        return (
            f"contract {trained_on}@{str(digest)[:12]} of the model is not {profile.name}@{profile.digest[:12]} "
            "served here"
        )
    return None


#: The IBM Telco contract (the ``customers`` topic of the default data set).
CustomerEvent = customer_event_model(TELCO)


class Reason(BaseModel):
    """One feature's push on a score (reason code)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    feature: str
    contribution: float


#: Fields of one customer whose category was not seen in training (encoded as all-zero indicators).
UnknownCategories = Annotated[
    list[str],
    Field(
        description="Categorical fields whose value (after the profile's text normalisation) the model never saw "
        "in training; each is scored as no category at all."
    ),
]


class ScoreEvent(_Event):
    """The champion's score of one customer event, on ``churn-scores``.

    ``event_id`` is the scored customer event's id, so duplicates are recognisable.
    """

    customer_id: str
    churn_probability: Annotated[float, Field(ge=0, le=1)]
    churn_label: bool
    threshold: Annotated[float, Field(ge=0, le=1)]
    model_name: str
    model_version: str
    scored_at: AwareDatetime
    unknown_categories: UnknownCategories = Field(default_factory=list)


#: Reason codes of a score: up to 3 features pushing it up, largest first (alerts and API predictions).
Reasons = Annotated[list[Reason], Field(description="Up to 3 features pushing the churn score up, largest first.")]
#: The predicted customer value, one type for alerts and API predictions.
PredictedValueUsd = Annotated[
    float | None,
    Field(
        ge=0,
        description="Customer value (total charges, USD) predicted by the sales-regressor champion, clipped at 0; "
        "null when none is in service.",
    ),
]


class ChurnAlert(ScoreEvent):
    """A customer at or above the threshold, on ``churn-alerts``."""

    reasons: Reasons = Field(default_factory=list)
    predicted_value_usd: PredictedValueUsd = None
    value_at_risk_usd: Annotated[
        float | None,
        Field(
            ge=0,
            description="churn_probability x predicted_value_usd (USD), when a sales-regressor is in service.",
        ),
    ] = None


# Field names that code writes or reads by name (the worker and the API build their documents
# by hand on the hot path; the dashboard reads them): spelled once, here, and checked against
# the models above by tests/unit/schemas/test_events.py.
#: Fields of a ``churn-scores`` record, in the order the worker writes them.
SCORE_FIELDS: tuple[str, ...] = tuple(ScoreEvent.model_fields)
#: The reason codes on alerts and API predictions.
REASONS_FIELD = "reasons"
#: The predicted customer value (USD) on alerts and API predictions.
PREDICTED_VALUE_FIELD = "predicted_value_usd"
#: The value at risk (USD) on alerts: ``churn_probability`` x the predicted value.
VALUE_AT_RISK_FIELD = "value_at_risk_usd"
#: The categorical fields of a score, alert or prediction whose value was not seen in training.
UNKNOWN_CATEGORIES_FIELD = "unknown_categories"


class ModelUpdatedEvent(_Event):
    """A registered model version is ready: workers download, verify and swap it in."""

    model_name: str
    model_version: str
    alias: str
    artifact_uri: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    feature_names: list[str] = Field(default_factory=list, description="Raw input columns the model needs.")
    run_id: str | None = None


class DeadLetter(_Event):
    """A customer event that could not be processed, with its original bytes and coordinates."""

    original_value_b64: str | None
    original_key_b64: str | None
    topic: str
    partition: int
    offset: int
    stage: Literal["decode", "validate", "featurise", "score"]
    error_class: str
    error_message: str
    failed_at: AwareDatetime


class DriftRecord(_Event):
    """Per-feature PSI of the worker's recent input window against the champion's training data.

    Published periodically on ``churn-drift``; ``alert`` is true when any feature's PSI
    exceeds ``psi_threshold``.
    """

    model_name: str
    model_version: str
    window_size: Annotated[int, Field(ge=0, description="Events in the window the PSI was computed over.")]
    window_capacity: Annotated[int, Field(ge=1, description="Most recent events the window holds.")]
    psi: dict[str, float] = Field(description="Population stability index per raw input feature.")
    psi_threshold: float
    alert: bool
    drifted_features: list[str] = Field(default_factory=list, description="Features with PSI above the threshold.")


class EventValidationError(ValueError):
    """An event failed its contract; ``errors`` lists ``"field: expected ..., got ..."`` lines."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def error_fields(exc: ValidationError, prefix: str | None = None) -> list[str]:
    """The failing fields of a validation error, in order, each once (a blank-rule error names its field).

    Parameters
    ----------
    exc : pydantic.ValidationError
    prefix : str, optional
        Prepended to every location (``customers`` for a body's envelope).
    """
    out: list[str] = []
    for err in exc.errors():
        parts = ([prefix] if prefix else []) + [str(p) for p in err.get("loc", ())]
        if err.get("type") == BLANK_RULE_ERROR:
            parts.append(str((err.get("ctx") or {}).get("field", "")))
        loc = ".".join(p for p in parts if p)
        if loc and loc not in out:
            out.append(loc)
    return out


def format_validation_error(exc: ValidationError, limit: int | None = None) -> EventValidationError:
    """Turn a pydantic error into ``"field: expected ..., got ..."`` lines.

    Every error is named by default (a dead letter for ``{}`` lists every missing field);
    ``limit`` keeps only the first ones. Input values are shortened to 40 characters so
    huge payloads stay out of logs.
    """
    lines = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<event>"
        got: Any = err.get("input")
        shown = repr(got)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        msg = err.get("msg", "invalid").lower()
        kind = err.get("type")
        ctx = err.get("ctx") or {}
        if kind == "missing":
            lines.append(f"{loc}: required field missing")
        elif kind == BLANK_RULE_ERROR:
            # Raised by the model for the whole event; the message starts with the field it is about.
            lines.append(f"{err.get('msg')}, got None")
        elif kind == "string_pattern_mismatch" and ctx.get("pattern") == NON_BLANK_PATTERN:
            lines.append(f"{loc}: expected text that is not blank, got {shown}")
        elif kind == "string_pattern_mismatch" and ctx.get("pattern") == ISO_DATE_PATTERN:
            lines.append(f"{loc}: expected an ISO date YYYY-MM-DD, got {shown}")
        else:
            lines.append(f"{loc}: {msg}, got {shown}")
    return EventValidationError(lines)
