"""The prediction API (Starlette): the stream's featurisation and scoring over HTTP.

``POST /api/predict`` validates customers with the same contract as the ``customers``
topic (``event_id``/``event_time`` may be omitted and are then generated), builds one
matrix with :func:`stream_app.scoring.event_columns` and the champion's own
preprocessor, and scores it with one matrix operation, so an HTTP score equals the
stream's and the batch job's for the same model version. The champion comes from the
same hot-reloaded :class:`~stream_app.model_store.ModelStore` the worker uses: a new
champion announced on ``model-updated`` is served without a restart.

Other endpoints: ``GET /api/metrics`` (the champion's evaluation metrics from MLflow
plus live figures), ``GET /api/models`` (registry), ``GET /health``,
``GET /openapi.json`` (generated from the pydantic contracts) and ``GET /docs``
(a self-contained HTML page: the machine serving it may have no internet).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import html
import json
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from plumbing.artifacts import download_pipeline, version_artifact_uri
from schemas.events import CustomerEvent, Reason, format_validation_error, new_event_id, utc_now
from schemas.profiles import TELCO
from stream_app.model_store import ModelStore, follow_model_updates
from stream_app.scoring import LoadedModel, churn_probabilities, event_columns, reason_codes

logger = logging.getLogger(__name__)

#: Registered name of the customer-value regressor (its champion fills ``predicted_customer_value_usd``).
REGRESSOR_NAME = "sales-regressor"
#: Default request-body limit (bytes); larger bodies get 413.
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: Most customers one request may carry.
MAX_CUSTOMERS_PER_REQUEST = 1000
#: Loaded non-champion versions kept in memory (least recently used evicted).
MODEL_CACHE_SIZE = 8
#: Seconds an alias (``name@alias``) stays resolved before the registry is asked again.
ALIAS_TTL_S = 5.0
#: Predict latencies kept for the live summary.
LATENCY_WINDOW = 10_000

#: Run metrics shown as a version's key metrics (classifiers and regressors).
KEY_METRICS = ("roc_auc", "f1", "f1_tuned", "accuracy", "precision", "recall", "threshold", "rmse", "mae", "r2", "mape")

_MODEL_REF = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}(/[1-9][0-9]{0,8}|@[A-Za-z0-9_\-]{1,64})?$"
_MODEL_REF_RE = re.compile(_MODEL_REF)

ModelRef = Annotated[
    str,
    Field(
        pattern=_MODEL_REF,
        max_length=166,
        description="A registered model version: `name/version` (e.g. `churn-classifier/3`), `name@alias` "
        "(e.g. `churn-classifier@challenger`) or `name` (its champion).",
        examples=["churn-classifier/1", "churn-classifier@challenger"],
    ),
]


# ------------------------------------------------------------------ contracts
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


class PredictRequest(BaseModel):
    """Envelope form of a predict body: customers plus an optional model selection."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    customers: CustomerInput | Annotated[list[CustomerInput], Field(min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST)]
    model_name: ModelRef | None = None


class ModelUsed(BaseModel):
    """One registered model version that contributed to a response."""

    model_name: str
    model_version: str


class Prediction(BaseModel):
    """The score of one customer."""

    event_id: str
    customer_id: str
    churn_probability: Annotated[float, Field(ge=0, le=1)]
    churn_label: bool = Field(description="`churn_probability >= threshold`.")
    threshold: Annotated[float, Field(ge=0, le=1)]
    predicted_customer_value_usd: float | None = Field(
        description="Customer value (total charges, USD) from the `sales-regressor` champion, clipped at 0 "
        "as in the stream's alerts; null when none is registered."
    )
    reasons: list[Reason] = Field(description="Up to 3 features pushing the churn score up, largest first.")
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


class _Envelope(BaseModel):
    """:class:`PredictRequest` as parsed: ``customers`` is validated on its own so errors name
    ``customers.0.tenure_months`` rather than pydantic's union branches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customers: Any
    model_name: ModelRef | None = None


_CUSTOMER = TypeAdapter(CustomerInput)
_CUSTOMER_LIST = TypeAdapter(Annotated[list[CustomerInput], Field(min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST)])


# --------------------------------------------------------------------- errors
class ApiError(Exception):
    """An error answered with ``status`` and an :class:`ErrorResponse` body."""

    def __init__(
        self, status: int, error: str, errors: list[str] | None = None, fields: list[str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.errors = errors or []
        self.fields = fields or []


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _error_response(err: ApiError) -> Response:
    return _json({"error": err.error, "errors": err.errors, "fields": err.fields}, err.status)


def _validation_error(exc: ValidationError, prefix: str | None = None) -> ApiError:
    lines = format_validation_error(exc).errors
    fields = []
    for e in exc.errors()[:100]:  # every failing field is named; the detail lines stop at 10
        loc = ".".join(str(p) for p in (([prefix] if prefix else []) + list(e.get("loc", ()))))
        if loc and loc not in fields:
            fields.append(loc)
    if prefix:
        lines = [
            f"{prefix}{line[len('<event>') :]}" if line.startswith("<event>") else f"{prefix}.{line}" for line in lines
        ]
    return ApiError(422, "request body failed validation", lines, fields)


def _decode_json(body: bytes) -> Any:
    """Parse a body; NaN/Infinity parse (then fail validation naming their field), anything else non-JSON is 422."""
    if not body:
        raise ApiError(
            422, "request body is empty; expected JSON", ["<body>: expected a JSON object or array"], ["<body>"]
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    # orjson refuses NaN, Infinity and overflowing numbers; the standard parser reads them as
    # floats so pydantic (allow_inf_nan=False) can name the offending field.
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(422, "request body is not valid JSON", [f"<body>: {first_error}"], ["<body>"]) from None


# ---------------------------------------------------------------------- state
class _Stats:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests_total = 0
        self.predict_requests = 0
        self.customers_scored = 0
        self.by_status: dict[str, int] = {}
        self.latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def latency_summary(self) -> dict[str, Any]:
        if not self.latencies_s:
            return {"count": 0, "mean_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
        ms = np.fromiter(self.latencies_s, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99]).tolist()
        return {
            "count": int(ms.size),
            "mean_ms": float(ms.mean()),
            "p50_ms": p50,
            "p90_ms": p90,
            "p99_ms": p99,
            "max_ms": float(ms.max()),
        }


class ApiState:
    """What the API serves from: the shared champion store, the value model, loaded versions.

    Parameters
    ----------
    settings : plumbing.settings.Settings
    tracker : mlflow.MlflowClient
        Registry client (built by the entry point).
    store : ModelStore
        The hot-reloaded churn champion (and ``sales-regressor`` champion, when it follows one).
    downloader : callable
        ``(tracking_uri, artifact_uri, sha256) -> ScoringPipeline``.
    """

    def __init__(
        self, settings, tracker, store: ModelStore, downloader: Callable[..., Any] = download_pipeline
    ) -> None:
        self.settings = settings
        self.tracker = tracker
        self.store = store
        self._download = downloader
        self.stats = _Stats()
        self._versions: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._aliases: dict[tuple[str, str], tuple[str, float]] = {}
        self._run_metrics: dict[str, dict[str, float]] = {}
        self._load_lock = asyncio.Lock()

    @property
    def value_model(self) -> LoadedModel | None:
        """The ``sales-regressor`` champion the store follows (None when not registered or not followed)."""
        return getattr(self.store, "value_model", None)

    # -- registry access (blocking; called through asyncio.to_thread)
    def _model_version(self, name: str, version: str | None, alias: str | None):
        from mlflow.exceptions import MlflowException

        try:
            if version is not None:
                return self.tracker.get_model_version(name, version)
            return self.tracker.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                what = f"{name}/{version}" if version is not None else f"{name}@{alias}"
                raise ApiError(
                    404, f"unknown model {what}", [f"model_name: no registered model version {what}"], ["model_name"]
                ) from None
            raise ApiError(503, "model registry unavailable", [f"{type(exc).__name__}: {exc}"[:300]]) from None

    def _load_version(self, mv) -> LoadedModel:
        sha = mv.tags.get("sha256")
        if not sha:
            raise ApiError(
                404,
                f"model {mv.name}/{mv.version} has no verifiable artifact",
                ["model_name: the version carries no sha256 tag"],
                ["model_name"],
            )
        pipeline = self._download(self.tracker.tracking_uri, version_artifact_uri(mv), sha)
        return LoadedModel(pipeline, mv.name, str(mv.version))

    def run_metrics(self, run_id: str | None) -> dict[str, float]:
        """Metrics logged on an MLflow run (cached; runs are finished when registered)."""
        if not run_id:
            return {}
        if run_id not in self._run_metrics:
            metrics = self.tracker.get_run(run_id).data.metrics
            self._run_metrics[run_id] = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        return self._run_metrics[run_id]

    # -- model selection
    async def resolve(self, ref: str | None) -> LoadedModel:
        """The classifier to score with: the champion in service, or the version ``ref`` names.

        Raises
        ------
        ApiError
            503 when no champion is loaded yet, 404 for an unknown model, 422 when the
            named version is not a churn classifier fed by the customer contract.
        """
        if ref is None:
            model = self.store.current
            if model is None:
                raise ApiError(503, "no champion model loaded yet")
            return model
        if not _MODEL_REF_RE.match(ref):
            raise ApiError(
                422,
                "invalid model_name",
                [f"model_name: expected name, name/version or name@alias, got {ref[:40]!r}"],
                ["model_name"],
            )
        if "/" in ref:
            name, version = ref.split("/", 1)
        else:
            name, _, alias = ref.partition("@")
            alias = alias or "champion"
            cached = self._aliases.get((name, alias))
            if cached is not None and cached[1] > time.monotonic():
                version = cached[0]
            else:
                mv = await asyncio.to_thread(self._model_version, name, None, alias)
                version = str(mv.version)
                self._aliases[(name, alias)] = (version, time.monotonic() + ALIAS_TTL_S)
        current = self.store.current
        if current is not None and (current.model_name, current.model_version) == (name, version):
            return current
        key = (name, version)
        model = self._versions.get(key)
        if model is None:
            async with self._load_lock:
                model = self._versions.get(key)
                if model is None:
                    mv = await asyncio.to_thread(self._model_version, name, version, None)
                    model = await asyncio.to_thread(self._load_version, mv)
                    self._check_classifier(model)
                    self._versions[key] = model
                    while len(self._versions) > MODEL_CACHE_SIZE:
                        self._versions.popitem(last=False)
                    logger.info("loaded model=%s model_version=%s for model_name selection", name, version)
        self._versions.move_to_end(key)
        return model

    @staticmethod
    def _check_classifier(model: LoadedModel) -> None:
        task = getattr(model.pipeline.model, "task", "")
        if task != "classifier":
            raise ApiError(
                422,
                f"model {model.model_name}/{model.model_version} is not a churn classifier",
                [f"model_name: expected a classifier, got a {task or 'unknown'} model"],
                ["model_name"],
            )
        missing = set(model.pipeline.feature_names_in) - set(CustomerEvent.model_fields)
        if missing:
            raise ApiError(
                422,
                f"model {model.model_name}/{model.model_version} needs unknown features",
                [f"model_name: needs features not in the customer contract: {sorted(missing)}"],
                ["model_name"],
            )

    # -- scoring (the hot path: one matrix, one predict_proba call)
    def predict(self, model: LoadedModel, events: list[CustomerInput]) -> dict[str, Any]:
        """Score customers with ``model`` and the value model; the :class:`PredictResponse` document."""
        pipeline = model.pipeline
        try:
            X = pipeline.transform(event_columns(events, pipeline.feature_names_in))
        except (ValueError, TypeError) as exc:
            raise ApiError(422, "customers could not be featurised", [str(exc)[:300]]) from None
        proba = churn_probabilities(model, X)
        threshold = pipeline.threshold
        reasons = reason_codes(model, X)
        value_model = self.value_model
        values: list[float | None] = [None] * len(events)
        if value_model is not None:
            vp = value_model.pipeline
            # Clipped at 0 like the stream's alerts: a linear regressor extrapolates below zero for new customers.
            values = np.maximum(vp.predict(event_columns(events, vp.feature_names_in)), 0.0).tolist()
        preds = [
            {
                "event_id": ev.event_id,
                "customer_id": ev.customer_id,
                "churn_probability": p,
                "churn_label": p >= threshold,
                "threshold": threshold,
                "predicted_customer_value_usd": v,
                "reasons": r,
                "model_name": model.model_name,
                "model_version": model.model_version,
            }
            for ev, p, v, r in zip(events, proba.tolist(), values, reasons)
        ]
        self.stats.customers_scored += len(preds)
        return {
            "predictions": preds,
            "classifier": {"model_name": model.model_name, "model_version": model.model_version},
            "value_model": (
                None
                if value_model is None
                else {"model_name": value_model.model_name, "model_version": value_model.model_version}
            ),
        }


# ------------------------------------------------------------------ handlers
async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body too large: {declared} bytes, limit {limit}")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body too large: over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-body: nobody is left to answer; no traceback in the log.
        raise ApiError(400, "client disconnected before the body was complete") from None
    return b"".join(chunks)


def _validate_customers(obj: Any, prefix: str | None = None) -> list[CustomerInput]:
    try:
        if isinstance(obj, list):
            return _CUSTOMER_LIST.validate_python(obj)
        return [_CUSTOMER.validate_python(obj)]
    except ValidationError as exc:
        raise _validation_error(exc, prefix) from None


def _parse_customers(obj: Any) -> tuple[list[CustomerInput], str | None]:
    if isinstance(obj, dict) and "customers" in obj and "customer_id" not in obj:
        try:
            envelope = _Envelope.model_validate(obj)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        return _validate_customers(envelope.customers, "customers"), envelope.model_name
    return _validate_customers(obj), None


async def predict(request: Request) -> Response:
    """Score one customer or a list."""
    state: ApiState = request.app.state.api
    t0 = time.perf_counter()
    try:
        body = await _read_body(request, request.app.state.max_body_bytes)
        customers, body_ref = _parse_customers(_decode_json(body))
        # The query parameter, when given, wins over the body's model_name (documented in OpenAPI).
        query_ref = request.query_params.get("model_name")
        model = await state.resolve(query_ref if query_ref is not None else body_ref)
        response = _json(state.predict(model, customers))
    except ApiError as err:
        response = _error_response(err)
    state.stats.predict_requests += 1
    state.stats.latencies_s.append(time.perf_counter() - t0)
    return response


async def health(request: Request) -> Response:
    """200 when a champion is in service, 503 otherwise."""
    current = request.app.state.api.store.current
    if current is None:
        return _json({"status": "starting", "model_name": None, "model_version": None}, 503)
    return _json({"status": "ok", "model_name": current.model_name, "model_version": current.model_version})


async def metrics(request: Request) -> Response:
    """The champion's evaluation metrics and this process's live figures."""
    state: ApiState = request.app.state.api
    store = state.store
    current = store.current
    champion = None
    evaluation_error = None
    if current is not None:
        champion = {
            "model_name": current.model_name,
            "model_version": current.model_version,
            "threshold": current.threshold,
            "run_id": None,
            "metrics": {},
        }
        try:
            mv = await asyncio.to_thread(state._model_version, current.model_name, current.model_version, None)
            champion["run_id"] = mv.run_id
            champion["metrics"] = await asyncio.to_thread(state.run_metrics, mv.run_id)
        except ApiError as err:
            evaluation_error = err.error
        except Exception as exc:  # noqa: BLE001 - live figures are still worth serving
            evaluation_error = f"{type(exc).__name__}: {exc}"[:300]
    stats = state.stats
    live = {
        "uptime_s": time.monotonic() - stats.started,
        "requests_total": stats.requests_total,
        "predict_requests": stats.predict_requests,
        "customers_scored": stats.customers_scored,
        "responses_by_status": dict(stats.by_status),
        "latency": stats.latency_summary(),
        "model_name": current.model_name if current else None,
        "model_version": current.model_version if current else None,
        "value_model_version": state.value_model.model_version if state.value_model else None,
        "reloads_ok": store.reloads_ok,
        "reloads_failed": store.reloads_failed,
        "last_reload_error": store.last_error,
    }
    return _json({"champion": champion, "evaluation_error": evaluation_error, "live": live})


def _list_models(state: ApiState) -> dict[str, Any]:
    tracker = state.tracker
    out = []
    for rm in tracker.search_registered_models():
        name = rm.name
        escaped = name.replace("'", "\\'")
        aliases = {alias: str(v) for alias, v in (getattr(rm, "aliases", None) or {}).items()}
        # search_model_versions leaves a version's aliases empty: take them from the model.
        aliases_of: dict[str, list[str]] = {}
        for alias, v in aliases.items():
            aliases_of.setdefault(v, []).append(alias)
        versions = []
        for mv in tracker.search_model_versions(f"name='{escaped}'"):
            run_metrics = state.run_metrics(mv.run_id)
            created = (
                datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC).isoformat()
                if mv.creation_timestamp
                else None
            )
            versions.append(
                {
                    "version": str(mv.version),
                    "aliases": sorted(
                        set(aliases_of.get(str(mv.version), [])) | set(getattr(mv, "aliases", None) or [])
                    ),
                    "run_id": mv.run_id,
                    "status": str(mv.status) if mv.status is not None else None,
                    "created_at": created,
                    "sha256": (mv.tags or {}).get("sha256"),
                    "metrics": {k: run_metrics[k] for k in KEY_METRICS if k in run_metrics},
                }
            )
        versions.sort(key=lambda v: int(v["version"]), reverse=True)
        out.append({"name": name, "aliases": aliases, "versions": versions})
    out.sort(key=lambda m: m["name"])
    return {"models": out}


async def models(request: Request) -> Response:
    """Registered models, their versions, aliases and key metrics."""
    state: ApiState = request.app.state.api
    try:
        doc = await asyncio.to_thread(_list_models, state)
    except Exception as exc:  # noqa: BLE001 - the registry being down is a 503, not a bug here
        logger.error("model listing failed error=%s", f"{type(exc).__name__}: {exc}"[:300])
        return _error_response(ApiError(503, "model registry unavailable", [f"{type(exc).__name__}"]))
    return _json(doc)


# ------------------------------------------------------------------- OpenAPI
def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        404: "Unknown model.",
        413: "Request body too large.",
        422: "Invalid body or parameter; `errors` names each failing field.",
        503: "No champion loaded yet, or the model registry is unreachable.",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }
        for c in codes
    }


def openapi_document(max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document, its schemas generated from the pydantic models."""
    _, defs = models_json_schema(
        [
            (CustomerInput, "validation"),
            (PredictRequest, "validation"),
            (PredictResponse, "serialization"),
            (ErrorResponse, "serialization"),
            (HealthResponse, "serialization"),
            (MetricsResponse, "serialization"),
            (ModelsResponse, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs["$defs"]

    def ok(name: str, description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }

    model_param = {
        "name": "model_name",
        "in": "query",
        "required": False,
        "description": "Score with this registered version instead of the champion "
        "(`name/version`, `name@alias` or `name`). Takes precedence over a "
        "`model_name` in the body.",
        "schema": {"type": "string", "pattern": _MODEL_REF, "maxLength": 166},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "churn-stream prediction API",
            "version": "1",
            "description": "Churn probability, label, reason codes and customer value per customer, scored with "
            "the same featurisation and model versions as the stream.",
        },
        "paths": {
            "/api/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Score one customer or a list",
                    "description": 'Body: one customer, a list of customers, or `{"customers": ..., '
                    '"model_name": ...}`. '
                    f"At most {MAX_CUSTOMERS_PER_REQUEST} customers and "
                    f"{max_body_bytes} bytes. `event_id` and `event_time` may be omitted.",
                    "parameters": [model_param],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "anyOf": [
                                        {"$ref": "#/components/schemas/CustomerInput"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/CustomerInput"},
                                            "minItems": 1,
                                            "maxItems": MAX_CUSTOMERS_PER_REQUEST,
                                        },
                                        {"$ref": "#/components/schemas/PredictRequest"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": ok("PredictResponse", "Scores in request order."),
                        **_error_responses(404, 413, 422, 503),
                    },
                }
            },
            "/api/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Champion evaluation metrics (MLflow) and live figures",
                    "responses": {"200": ok("MetricsResponse", "Metrics.")},
                }
            },
            "/api/models": {
                "get": {
                    "operationId": "models",
                    "summary": "Registered models, versions, aliases and key metrics",
                    "responses": {"200": ok("ModelsResponse", "The registry."), **_error_responses(503)},
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "200 when a champion is in service",
                    "responses": {
                        "200": ok("HealthResponse", "A champion is in service."),
                        "503": ok("HealthResponse", "No champion loaded yet."),
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }


def docs_html(doc: dict[str, Any]) -> str:
    """A self-contained HTML page describing ``doc`` (no scripts, no external assets)."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc['info']['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "pre{background:#f4f4f4;padding:.8em;overflow:auto}code{background:#f4f4f4}"
        "h2{border-bottom:1px solid #ccc}</style></head><body>",
        f"<h1>{html.escape(doc['info']['title'])}</h1><p>{html.escape(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p><h2>Endpoints</h2>",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            parts.append(f"<h3><code>{method.upper()} {html.escape(path)}</code> — {html.escape(op['summary'])}</h3>")
            if op.get("description"):
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            for p in op.get("parameters", []):
                parts.append(f"<p>Query <code>{html.escape(p['name'])}</code>: {html.escape(p['description'])}</p>")
            codes = ", ".join(f"{c} {html.escape(r['description'])}" for c, r in op["responses"].items())
            parts.append(f"<p>Responses: {codes}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(
            f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>"
            f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>"
        )
    parts.append("</body></html>")
    return "".join(parts)


# ------------------------------------------------------------------------ app
class _CountRequests:
    """ASGI middleware counting requests and response statuses (cheap: no body handling)."""

    def __init__(self, app, stats: _Stats) -> None:  # ASGI app
        self.app = app
        self.stats = stats

    async def __call__(self, scope, receive, send) -> None:  # ASGI
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = self.stats
        stats.requests_total += 1

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                key = str(message["status"])
                stats.by_status[key] = stats.by_status.get(key, 0) + 1
            await send(message)

        await self.app(scope, receive, counting_send)


async def _supervise(
    name: str, make: Callable[[], Any], retry_s: float = 2.0, on_failure: Callable[[], Any] | None = None
) -> None:
    """Run a background coroutine forever, restarting it after a failure (logged).

    ``on_failure`` (a coroutine function) runs after each failure, before the retry.
    """
    while True:
        try:
            await make()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lost broker or registry must not stop serving
            logger.error(
                "background task %s failed, restarting in %.0fs error=%s",
                name,
                retry_s,
                f"{type(exc).__name__}: {exc}"[:300],
            )
            if on_failure is not None:
                try:
                    await on_failure()
                except Exception as exc2:  # noqa: BLE001
                    logger.error(
                        "background task %s recovery failed error=%s", name, f"{type(exc2).__name__}: {exc2}"[:300]
                    )
            await asyncio.sleep(retry_s)


async def _freeze_heap_when_serving(store: ModelStore, poll_s: float = 0.2) -> None:
    """Once a champion is in service, move the start-up heap out of the garbage collector's sight.

    The process holds a few million long-lived objects (MLflow, pydantic, numpy, the
    models); every full collection walks all of them and stops the event loop for tens of
    milliseconds, which lands in the prediction latency tail. ``gc.freeze()`` after one
    collection keeps them out of every later collection (CPython's documented use).
    """
    while store.current is None:
        await asyncio.sleep(poll_s)
    gc.collect()
    gc.freeze()
    logger.info("heap frozen after champion load objects=%d", gc.get_freeze_count())


def create_app(
    settings,
    tracker,
    store: ModelStore | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    follow_updates: bool = True,
) -> Starlette:
    """Build the Starlette prediction app.

    Parameters
    ----------
    settings : plumbing.settings.Settings
    tracker : mlflow.MlflowClient
        Registry client for model selection, metrics and listings.
    store : ModelStore, optional
        The champion store; by default a new one on the configured MLflow server that
        also follows the ``sales-regressor`` champion (``value_models=True``).
    max_body_bytes : int, default 1 MiB
        Larger request bodies are answered with 413.
    follow_updates : bool, default True
        On startup, run :func:`~stream_app.model_store.follow_model_updates` (load the
        champions, then swap in every announced one).

    Returns
    -------
    starlette.applications.Starlette
    """
    store = store or ModelStore(settings.mlflow_tracking_uri, expected_features=list(TELCO.features), value_models=True)
    state = ApiState(settings, tracker, store)
    doc = openapi_document(max_body_bytes)
    doc_bytes = orjson.dumps(doc)
    page = docs_html(doc)

    async def openapi(request: Request) -> Response:
        return Response(doc_bytes, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        tasks = []
        if follow_updates:

            async def load_champion_directly() -> None:
                # Without the broker there are no announcements, but the registry's
                # champion can still be served; the follower swaps later ones in once it runs.
                if store.current is None and await asyncio.to_thread(store.load_champion):
                    if getattr(store, "value_models", False):
                        await asyncio.to_thread(store.load_secondary)

            tasks.append(
                asyncio.create_task(
                    _supervise(
                        "model-updates",
                        lambda: follow_model_updates(settings, store),
                        on_failure=load_champion_directly,
                    )
                )
            )
        tasks.append(asyncio.create_task(_freeze_heap_when_serving(store)))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    routes = [
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/metrics", metrics, methods=["GET"]),
        Route("/api/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.api = state
    app.state.max_body_bytes = max_body_bytes
    app.add_middleware(_CountRequests, stats=state.stats)
    return app


def run_api(settings, host: str = "127.0.0.1", port: int = 8000, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Serve the API with uvicorn until interrupted (blocking).

    Parameters
    ----------
    settings : plumbing.settings.Settings
    host : str, default "127.0.0.1"
    port : int, default 8000
    max_body_bytes : int, default 1 MiB
    """
    import uvicorn

    from plumbing.clients import make_tracker

    app = create_app(settings, make_tracker(settings), max_body_bytes=max_body_bytes)
    # No per-request access log: it would cost more than scoring a customer.
    # uvloop and httptools explicitly (uvicorn's fastest pair; "auto" silently falls back to asyncio/h11).
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # no uvloop on Windows
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info", loop=loop, http="httptools")
