"""HTTP contracts of the prediction API: request and response bodies (pydantic v2).

The API validates requests and documents its answers (``/openapi.json``) with these
models; the dashboard's score form posts a :class:`CustomerInput` and reads a
:class:`PredictResponse`. A customer is the ``customers`` topic's contract
(:class:`~schemas.events.CustomerEvent`), and a prediction's fields carry the same
names and types as a ``churn-alerts`` record's. Pure code, no I/O.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import CustomerEvent, PredictedValueUsd, Reasons, new_event_id, utc_now
from schemas.registry import CHALLENGER, CLASSIFIER_NAME

#: Most customers one request may carry.
MAX_CUSTOMERS_PER_REQUEST = 1000
#: A registered model version: ``name``, ``name/version`` or ``name@alias``.
MODEL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}(/[1-9][0-9]{0,8}|@[A-Za-z0-9_\-]{1,64})?$"
#: Longest :data:`ModelRef`: a 100-character name and a 65-character ``@alias``.
MODEL_REF_MAX_LENGTH = 166

ModelRef = Annotated[
    str,
    Field(
        pattern=MODEL_REF_PATTERN,
        max_length=MODEL_REF_MAX_LENGTH,
        description=f"A registered model version: `name/version` (e.g. `{CLASSIFIER_NAME}/3`), `name@alias` "
        f"(e.g. `{CLASSIFIER_NAME}@{CHALLENGER}`) or `name` (its champion).",
        examples=[f"{CLASSIFIER_NAME}/1", f"{CLASSIFIER_NAME}@{CHALLENGER}"],
    ),
]


# -------------------------------------------------------------------- requests
class CustomerInput(CustomerEvent):
    """A customer to score: the ``customers`` topic contract; ``event_id``/``event_time`` may be omitted."""

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
        AwareDatetime, Field(default_factory=utc_now, description="When the event happened, UTC (now when omitted).")
    ]


#: A non-empty list of customers, at most :data:`MAX_CUSTOMERS_PER_REQUEST`.
CustomerList = Annotated[list[CustomerInput], Field(min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST)]


class PredictRequest(BaseModel):
    """Envelope form of a predict body: customers plus an optional model selection."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    customers: CustomerInput | CustomerList
    model_name: ModelRef | None = None


# ------------------------------------------------------------------- responses
class ModelUsed(BaseModel):
    """One registered model version that contributed to a response."""

    model_name: str
    model_version: str


class Prediction(BaseModel):
    """The score of one customer; the fields it shares with a `churn-alerts` record have their names and types."""

    event_id: str
    customer_id: str
    churn_probability: Annotated[float, Field(ge=0, le=1)]
    churn_label: bool = Field(description="`churn_probability >= threshold`.")
    threshold: Annotated[float, Field(ge=0, le=1)]
    predicted_value_usd: PredictedValueUsd
    reasons: Reasons
    model_name: str
    model_version: str


class PredictResponse(BaseModel):
    """Scores in request order and the model versions that produced them."""

    predictions: list[Prediction]
    classifier: ModelUsed
    value_model: ModelUsed | None


class ErrorResponse(BaseModel):
    """An error: a summary line, details (``field: expected ..., got ...``) and the failing fields."""

    error: str
    errors: list[str] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=list)


class HealthResponse(BaseModel):
    """Whether a champion is in service."""

    status: str
    model_name: str | None
    model_version: str | None


class LatencySummary(BaseModel):
    """Server-side ``POST /api/predict`` latency over the last requests, milliseconds."""

    count: int
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class LiveFigures(BaseModel):
    """Counters of this API process since it started."""

    uptime_s: float
    requests_total: int
    predict_requests: int
    customers_scored: int
    responses_by_status: dict[str, int]
    latency: LatencySummary
    model_name: str | None
    model_version: str | None
    value_model_version: str | None
    reloads_ok: int
    reloads_failed: int
    last_reload_error: str | None


class ChampionMetrics(BaseModel):
    """The champion in service and its evaluation (hold-out) metrics from its MLflow run."""

    model_name: str
    model_version: str
    threshold: float
    run_id: str | None
    metrics: dict[str, float]


class MetricsResponse(BaseModel):
    """``GET /api/metrics``."""

    champion: ChampionMetrics | None
    evaluation_error: str | None = None
    live: LiveFigures


class ModelVersionInfo(BaseModel):
    """One registered version."""

    version: str
    aliases: list[str]
    run_id: str | None
    status: str | None
    created_at: str | None
    sha256: str | None
    metrics: dict[str, float]


class RegisteredModelInfo(BaseModel):
    """One registered model with its aliases and versions (newest first)."""

    name: str
    aliases: dict[str, str]
    versions: list[ModelVersionInfo]


class ModelsResponse(BaseModel):
    """``GET /api/models``."""

    models: list[RegisteredModelInfo]
