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
from schemas.registry import CHALLENGER, CHAMPION, CLASSIFIER_NAME, REGRESSOR_NAME

#: Most customers one request may carry.
MAX_CUSTOMERS_PER_REQUEST = 1000
#: A registered model version: ``name``, ``name/version`` or ``name@alias``.
MODEL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}(/[1-9][0-9]{0,8}|@[A-Za-z0-9_\-]{1,64})?$"
#: Longest :data:`ModelRef`: a 100-character name and a 65-character ``@alias``.
MODEL_REF_MAX_LENGTH = 166

# -------------------------------------------------------------------- examples
# Shown in the API docs (schema ``examples`` and the OpenAPI media-type examples); customers are
# rows of the IBM Telco data set, scores and errors are what the API answers for them.
# tests/unit/stream_app/test_api_docs.py validates each against its model and the error bodies
# against the API's real answers.

#: Telco customer 7590-VHVEG (month-to-month, one month in): ``event_id``/``event_time`` omitted.
EXAMPLE_CUSTOMER: dict[str, Any] = {
    "customer_id": "7590-VHVEG",
    "gender": "Female",
    "senior_citizen": False,
    "partner": True,
    "dependents": False,
    "tenure_months": 1,
    "phone_service": False,
    "multiple_lines": "No phone service",
    "internet_service": "DSL",
    "online_security": "No",
    "online_backup": "Yes",
    "device_protection": "No",
    "tech_support": "No",
    "streaming_tv": "No",
    "streaming_movies": "No",
    "contract": "Month-to-month",
    "paperless_billing": True,
    "payment_method": "Electronic check",
    "monthly_charges_usd": 29.85,
    "total_charges_usd": 29.85,
}
#: Telco customer 5575-GNVDE (one-year contract, 34 months in), with its own event id and time.
EXAMPLE_CUSTOMER_ONE_YEAR: dict[str, Any] = {
    "event_id": "5d6c1f0e-2b7a-4c39-9e84-0a1f3b6d7c52",
    "event_time": "2026-03-02T09:15:00Z",
    "customer_id": "5575-GNVDE",
    "gender": "Male",
    "senior_citizen": False,
    "partner": False,
    "dependents": False,
    "tenure_months": 34,
    "phone_service": True,
    "multiple_lines": "No",
    "internet_service": "DSL",
    "online_security": "Yes",
    "online_backup": "No",
    "device_protection": "Yes",
    "tech_support": "No",
    "streaming_tv": "No",
    "streaming_movies": "No",
    "contract": "One year",
    "paperless_billing": False,
    "payment_method": "Mailed check",
    "monthly_charges_usd": 56.95,
    "total_charges_usd": 1889.5,
}
#: The envelope form: customers plus a model selection.
EXAMPLE_PREDICT_REQUEST: dict[str, Any] = {
    "customers": [EXAMPLE_CUSTOMER_ONE_YEAR],
    "model_name": f"{CLASSIFIER_NAME}@{CHALLENGER}",
}
#: The score of :data:`EXAMPLE_CUSTOMER` (generated event id) by classifier version 3.
EXAMPLE_PREDICTION: dict[str, Any] = {
    "event_id": "dde6299a-1a38-468b-b18c-96101fc2781d",
    "customer_id": "7590-VHVEG",
    "churn_probability": 0.63,
    "churn_label": True,
    "threshold": 0.4,
    "predicted_value_usd": 48.7,
    "reasons": [
        {"feature": "tenure_months", "contribution": 1.7918},
        {"feature": "contract=Month-to-month", "contribution": 0.7084},
        {"feature": "monthly_charges_usd", "contribution": 0.5192},
    ],
    "model_name": CLASSIFIER_NAME,
    "model_version": "3",
}
#: The answer to a predict request with :data:`EXAMPLE_CUSTOMER`.
EXAMPLE_PREDICT_RESPONSE: dict[str, Any] = {
    "predictions": [EXAMPLE_PREDICTION],
    "classifier": {"model_name": CLASSIFIER_NAME, "model_version": "3"},
    "value_model": {"model_name": REGRESSOR_NAME, "model_version": "2"},
}
#: :data:`EXAMPLE_CUSTOMER` with ``tenure_months: "twelve"``: the 422 answer.
EXAMPLE_ERROR_422: dict[str, Any] = {
    "error": "request body failed validation",
    "errors": ["tenure_months: input should be a valid integer, got 'twelve'"],
    "fields": ["tenure_months"],
}
#: A 2 MiB body against the default 1 MiB limit: the 413 answer.
EXAMPLE_ERROR_413: dict[str, Any] = {
    "error": "request body too large: 2097152 bytes, limit 1048576",
    "errors": [],
    "fields": [],
}
#: ``?model_name=churn-classifier/99`` when the registry has no version 99: the 404 answer.
EXAMPLE_ERROR_404: dict[str, Any] = {
    "error": f"unknown model {CLASSIFIER_NAME}/99",
    "errors": [f"model_name: no registered model version {CLASSIFIER_NAME}/99"],
    "fields": ["model_name"],
}
#: Before the first champion is loaded: the 503 answer.
EXAMPLE_ERROR_503: dict[str, Any] = {"error": "no champion model loaded yet", "errors": [], "fields": []}
#: No ``Authorization`` header: the 401 answer (with ``WWW-Authenticate: Bearer``).
EXAMPLE_ERROR_401: dict[str, Any] = {
    "error": "authentication required",
    "errors": ["Authorization: expected 'Bearer <API key or token>'"],
    "fields": [],
}
#: A ``models:read`` key on ``POST /api/predict``: the 403 answer.
EXAMPLE_ERROR_403: dict[str, Any] = {
    "error": "scope predict required",
    "errors": ["this credential's scopes: models:read"],
    "fields": [],
}
#: A client address over the limit of refused credentials: the 429 answer (with ``Retry-After``).
EXAMPLE_ERROR_429: dict[str, Any] = {
    "error": "too many refused credentials",
    "errors": ["retry after 42 s"],
    "fields": [],
}
#: The model registry (MLflow) cannot be reached: the 503 answer of ``GET /api/models``.
EXAMPLE_ERROR_503_REGISTRY: dict[str, Any] = {
    "error": "model registry unavailable",
    "errors": ["MlflowException"],
    "fields": [],
}
#: ``GET /health`` with a champion in service, and before one is loaded (503).
EXAMPLE_HEALTH_OK: dict[str, Any] = {"status": "ok", "model_name": CLASSIFIER_NAME, "model_version": "3"}
EXAMPLE_HEALTH_STARTING: dict[str, Any] = {"status": "starting", "model_name": None, "model_version": None}
#: ``GET /api/metrics`` of an API process that has answered a few requests.
EXAMPLE_METRICS_RESPONSE: dict[str, Any] = {
    "champion": {
        "model_name": CLASSIFIER_NAME,
        "model_version": "3",
        "threshold": 0.4,
        "run_id": "9b6e2f4c0d7a4e51a3c8f1b2d5e6a7c9",
        "metrics": {"roc_auc": 0.848, "f1": 0.596, "f1_tuned": 0.624, "accuracy": 0.803, "threshold": 0.4},
    },
    "evaluation_error": None,
    "live": {
        "uptime_s": 3612.4,
        "requests_total": 1250,
        "predict_requests": 1204,
        "customers_scored": 7043,
        "responses_by_status": {"200": 1198, "401": 3, "422": 5, "413": 1},
        "auth_failures_by_reason": {"missing_credential": 2, "wrong_secret": 1},
        "latency": {"count": 1000, "mean_ms": 1.04, "p50_ms": 0.49, "p90_ms": 2.4, "p99_ms": 2.75, "max_ms": 2.79},
        "model_name": CLASSIFIER_NAME,
        "model_version": "3",
        "value_model_version": "2",
        "reloads_ok": 1,
        "reloads_failed": 0,
        "last_reload_error": None,
    },
}
#: ``GET /api/models``: the classifier (champion and challenger) and the regressor.
EXAMPLE_MODELS_RESPONSE: dict[str, Any] = {
    "models": [
        {
            "name": CLASSIFIER_NAME,
            "aliases": {CHAMPION: "3", CHALLENGER: "4"},
            "versions": [
                {
                    "version": "4",
                    "aliases": [CHALLENGER],
                    "run_id": "c41d7e9a2f5b4c08b6e3d1a0f9e8d7c6",
                    "status": "READY",
                    "created_at": "2026-03-02T10:04:11.512000+00:00",
                    "sha256": "6f1e0c5d2b9a8e7f3c4d5a6b7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
                    "metrics": {"roc_auc": 0.845, "f1_tuned": 0.619, "threshold": 0.38},
                },
                {
                    "version": "3",
                    "aliases": [CHAMPION],
                    "run_id": "9b6e2f4c0d7a4e51a3c8f1b2d5e6a7c9",
                    "status": "READY",
                    "created_at": "2026-03-01T10:02:47.093000+00:00",
                    "sha256": "0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b",
                    "metrics": {"roc_auc": 0.848, "f1_tuned": 0.624, "threshold": 0.4},
                },
            ],
        },
        {
            "name": REGRESSOR_NAME,
            "aliases": {CHAMPION: "2"},
            "versions": [
                {
                    "version": "2",
                    "aliases": [CHAMPION],
                    "run_id": "e2a4c6b8d0f14e3a5c7b9d1f3a5c7e9b",
                    "status": "READY",
                    "created_at": "2026-03-01T10:03:05.771000+00:00",
                    "sha256": "5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d",
                    "metrics": {"rmse": 412.7, "mae": 281.9, "r2": 0.967},
                }
            ],
        },
    ]
}


def _examples(*docs: dict[str, Any]) -> ConfigDict:
    """A model config whose JSON Schema carries ``docs`` as ``examples``."""
    return ConfigDict(json_schema_extra={"examples": list(docs)})


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
# The API docs show two real Telco customers as the served body's examples.
# Added to the generated model's own JSON Schema extras (its blank rules are an ``allOf`` there).
CustomerInput.model_config["json_schema_extra"] = {
    **dict(CustomerInput.model_config.get("json_schema_extra") or {}),  # type: ignore[arg-type]
    "examples": [EXAMPLE_CUSTOMER, EXAMPLE_CUSTOMER_ONE_YEAR],
}
CustomerInput.model_rebuild(force=True)


def customer_list_type(profile: DatasetProfile) -> Any:
    """A non-empty list of ``profile``'s customers, at most :data:`MAX_CUSTOMERS_PER_REQUEST`."""
    return Annotated[
        list[customer_input_model(profile)],  # type: ignore[misc]
        Field(min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST),
    ]


class PredictRequestBase(BaseModel):
    """Envelope form of a predict body: customers plus an optional model selection."""

    model_config = ConfigDict(
        frozen=True,
        allow_inf_nan=False,
        extra="forbid",
        json_schema_extra={"examples": [EXAMPLE_PREDICT_REQUEST]},
    )

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

    model_config = _examples(EXAMPLE_PREDICTION)

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

    model_config = _examples(EXAMPLE_PREDICT_RESPONSE)

    predictions: list[Prediction]
    classifier: ModelUsed
    value_model: ModelUsed | None


class ErrorResponse(BaseModel):
    """An error: a summary line, details (``field: expected ..., got ...``) and the failing fields."""

    model_config = _examples(
        EXAMPLE_ERROR_422,
        EXAMPLE_ERROR_413,
        EXAMPLE_ERROR_404,
        EXAMPLE_ERROR_503,
        EXAMPLE_ERROR_503_REGISTRY,
        EXAMPLE_ERROR_401,
        EXAMPLE_ERROR_403,
        EXAMPLE_ERROR_429,
    )

    error: str
    errors: list[str] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=list)


class HealthResponse(BaseModel):
    """Whether a champion is in service."""

    model_config = _examples(EXAMPLE_HEALTH_OK, EXAMPLE_HEALTH_STARTING)

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
    auth_failures_by_reason: dict[str, int] = Field(
        default_factory=dict,
        description="Requests refused by authentication, per reason (missing_credential, malformed_credential, "
        "malformed_key, unknown_key, revoked_key, wrong_secret, invalid_token, jwks_unavailable, "
        "insufficient_scope, rate_limited).",
    )
    model_refusals: dict[str, int] = Field(
        default_factory=dict,
        description="Announced or registered models not served, by reason (contract, features, sha256, error).",
    )
    announcements_refused: dict[str, int] = Field(
        default_factory=dict,
        description="model-updated announcements not followed because the registry's alias named another "
        "version or could not be asked, by reason (not_registry_version, older, no_alias, registry_unreachable).",
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

    model_config = _examples(EXAMPLE_METRICS_RESPONSE)

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

    model_config = _examples(EXAMPLE_MODELS_RESPONSE)

    models: list[RegisteredModelInfo]
