"""HTTP contracts of the prediction API: request and response bodies (pydantic v2).

The API validates requests and documents its answers (``/openapi.json``) with these
models; the dashboard's score form posts a :class:`CustomerInput` and reads a
:class:`PredictResponse`. A customer is the served data set's ``customers`` topic
contract (:func:`~schemas.events.customer_input_model`, generated from its profile:
``CustomerInput`` is Telco's), and a prediction's fields carry the same names and types
as a ``churn-alerts`` record's. Pure code, no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from schemas.events import PredictedValueUsd, Reasons, UnknownCategories, customer_input_model
from schemas.profiles import TELCO, DatasetProfile
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
#: Telco's customer body: the ``customers`` topic contract; ``event_id``/``event_time`` may be omitted.
#: Any data set's: :func:`~schemas.events.customer_input_model` of its profile.
CustomerInput = customer_input_model(TELCO)


def customer_list_type(profile: DatasetProfile) -> Any:
    """A non-empty list of ``profile``'s customers, at most :data:`MAX_CUSTOMERS_PER_REQUEST`."""
    return Annotated[
        list[customer_input_model(profile)],  # type: ignore[misc]
        Field(min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST),
    ]


#: Telco's :func:`customer_list_type`.
CustomerList = customer_list_type(TELCO)


class PredictRequestBase(BaseModel):
    """Envelope form of a predict body: customers plus an optional model selection."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    model_name: ModelRef | None = None


_REQUESTS: dict[str, type[PredictRequestBase]] = {}


def predict_request_model(profile: DatasetProfile) -> type[PredictRequestBase]:
    """The envelope body of ``profile``'s predict requests (cached per profile digest)."""
    if profile.digest not in _REQUESTS:
        item = customer_input_model(profile)
        _REQUESTS[profile.digest] = create_model(
            "PredictRequest",
            __base__=PredictRequestBase,
            __module__=__name__,
            customers=(item | customer_list_type(profile), ...),
        )
    return _REQUESTS[profile.digest]


#: Telco's :func:`predict_request_model`.
PredictRequest = predict_request_model(TELCO)


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
    unknown_categories: UnknownCategories = Field(default_factory=list)
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
    model_refusals: dict[str, int] = Field(
        default_factory=dict,
        description="Announced or registered models not served, by reason (contract, features, sha256, error).",
    )
    unknown_categories: dict[str, int] = Field(
        default_factory=dict, description="Customers scored with a category not seen in training, per field."
    )


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
