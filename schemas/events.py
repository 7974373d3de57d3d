"""Event contracts (pydantic v2 models): the single schema source for Kafka, HTTP and Parquet.

Every event carries ``event_id``, ``event_time`` (UTC) and ``schema_version``.
Money is in US dollars (``_usd``), durations carry their unit (``_months``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

#: Version of the event contracts in this module.
SCHEMA_VERSION = 1

Category = Annotated[str, Field(min_length=1, max_length=64)]
#: JSON ``true``/``false`` only: pydantic's lax mode would also take ``1``, ``"Yes"`` or
#: ``"true"``, which the exported JSON Schema does not allow.
Flag = Annotated[bool, Field(strict=True)]


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


class CustomerEvent(_Event):
    """A customer record entering the system on the ``customers`` topic.

    Fields follow the IBM Telco customer churn data set. Types are strict, as in the
    exported JSON Schema: booleans are JSON ``true``/``false`` (not ``1`` or ``"Yes"``),
    numbers are JSON numbers (not strings), and ``tenure_months`` is an integer (``12``
    or ``12.0``, not ``12.5`` or ``"12"``). Unknown extra fields are ignored; categorical
    values not seen in training encode as all-zero indicators.
    ``total_charges_usd`` may be null: a customer not billed yet (tenure 0), which
    the featuriser imputes with the training median.
    """

    customer_id: Annotated[str, Field(min_length=1, max_length=64)]
    gender: Category
    senior_citizen: Flag
    partner: Flag
    dependents: Flag
    tenure_months: Annotated[
        int, Field(ge=0, le=1200, description="Months as a customer."), BeforeValidator(json_integer)
    ]
    phone_service: Flag
    multiple_lines: Category
    internet_service: Category
    online_security: Category
    online_backup: Category
    device_protection: Category
    tech_support: Category
    streaming_tv: Category
    streaming_movies: Category
    contract: Category
    paperless_billing: Flag
    payment_method: Category
    monthly_charges_usd: Annotated[float, Field(ge=0, le=100_000, strict=True)]
    total_charges_usd: Annotated[float | None, Field(ge=0, le=10_000_000, strict=True)] = None
    churned: Annotated[bool | None, Field(strict=True, description="Known outcome, when the producer has it.")] = None


class Reason(BaseModel):
    """One feature's push on a score (reason code)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    feature: str
    contribution: float


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


def format_validation_error(exc: ValidationError, limit: int = 10) -> EventValidationError:
    """Turn a pydantic error into ``"field: expected ..., got ..."`` lines.

    Input values are shortened to 40 characters so huge payloads stay out of logs.
    """
    lines = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<event>"
        got: Any = err.get("input")
        shown = repr(got)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        msg = err.get("msg", "invalid").lower()
        if err.get("type") == "missing":
            lines.append(f"{loc}: required field missing")
        else:
            lines.append(f"{loc}: {msg}, got {shown}")
    return EventValidationError(lines)
