"""What the API serves from: the shared champion store, the value model, other loaded versions, counters.

:class:`ApiState` resolves a request's model selection (the champion in service, or
``name/version``, ``name@alias``, ``name``) and scores customers with one matrix
operation, the stream's own featurisation and reason codes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from plumbing.artifacts import download_pipeline, version_artifact_uri
from plumbing.settings import Settings
from schemas.events import (
    PREDICTED_VALUE_FIELD,
    REASONS_FIELD,
    UNKNOWN_CATEGORIES_FIELD,
    CustomerEventBase,
    contract_refusal,
)
from schemas.http import MODEL_REF_PATTERN
from schemas.registry import CHAMPION
from scratch_models.pipeline import ScoringPipeline
from stream_app.api.bodies import ApiError
from stream_app.api.one_row import one_row_encoder
from stream_app.contract import TELCO_CONTRACT, EventContract
from stream_app.model_store import ModelStore
from stream_app.reasons import reason_codes
from stream_app.scoring import LoadedModel, churn_probabilities, unknown_categories

logger = logging.getLogger(__name__)

#: Loaded non-champion versions kept in memory (least recently used evicted).
MODEL_CACHE_SIZE = 8
#: Seconds an alias (``name@alias``) stays resolved before the registry is asked again.
ALIAS_TTL_S = 5.0
#: Predict latencies kept for the live summary.
LATENCY_WINDOW = 10_000

_MODEL_REF_RE = re.compile(MODEL_REF_PATTERN)


@functools.lru_cache(maxsize=64)
def _union_names(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return first + tuple(n for n in second if n not in first)


def _input_names(model: LoadedModel, value_model: LoadedModel | None) -> tuple[str, ...]:
    """The event columns the classifier and the value model read, the classifier's first."""
    names = tuple(model.pipeline.feature_names_in)
    if value_model is None:
        return names
    return _union_names(names, tuple(value_model.pipeline.feature_names_in))


def _design_matrix(
    pipeline: ScoringPipeline, columns: dict[str, np.ndarray], n_rows: int
) -> tuple[np.ndarray, list[list[str]] | None]:
    """``pipeline.transform(columns)``; for one customer by look-ups, with its unseen-category fields.

    Returns
    -------
    X : ndarray of shape (n_customers, n_features_out), float64
    unknown : list of list of str, or None
        For one customer, ``[fields with a category the model never saw]``
        (:func:`~stream_app.scoring.unknown_categories` of ``X``); None for several.
    """
    if n_rows == 1:
        X, fields = one_row_encoder(pipeline.preprocessor).transform(columns)
        return X, [fields]
    return pipeline.transform(columns), None


class ApiStats:
    """Counters of this API process since it started (``GET /api/metrics`` ``live``).

    Attributes
    ----------
    started : float
        ``time.monotonic()`` at start.
    requests_total, predict_requests, customers_scored : int
    by_status : dict of str to int
        Responses per HTTP status code.
    latencies_s : deque of float
        The last :data:`LATENCY_WINDOW` ``POST /api/predict`` handler times, seconds.
    auth_failures : dict of str to int
        Requests refused by authentication, per reason (:mod:`stream_app.api.auth`).
    unknown_categories : dict of str to int
        Customers scored with a category the model never saw in training, per field.
    """

    def __init__(self) -> None:
        self.unknown_categories: dict[str, int] = {}
        self.started = time.monotonic()
        self.requests_total = 0
        self.predict_requests = 0
        self.customers_scored = 0
        self.by_status: dict[str, int] = {}
        self.latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.auth_failures: dict[str, int] = {}

    def latency_summary(self) -> dict[str, Any]:
        """The :class:`~schemas.http.LatencySummary` document of :attr:`latencies_s`, milliseconds."""
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
        The hot-reloaded churn champion (and the regressor's champion, when it follows one).
    downloader : callable
        ``(tracking_uri, artifact_uri, sha256) -> ScoringPipeline``.
    """

    def __init__(
        self,
        settings: Settings,
        tracker: Any,
        store: ModelStore,
        downloader: Callable[..., Any] = download_pipeline,
    ) -> None:
        self.settings = settings
        self.tracker = tracker
        self.store = store
        self._download = downloader
        self.stats = ApiStats()
        #: The data set served: the store's contract (Telco's for a store built without one).
        self.contract: EventContract = getattr(store, "contract", None) or TELCO_CONTRACT
        self._versions: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._aliases: dict[tuple[str, str], tuple[str, float]] = {}
        self._run_metrics: dict[str, dict[str, float]] = {}
        self._load_lock = asyncio.Lock()

    @property
    def value_model(self) -> LoadedModel | None:
        """The regressor's champion the store follows (None when not registered or not followed)."""
        return getattr(self.store, "value_model", None)

    # -- registry access (blocking; called through asyncio.to_thread)
    def model_version(self, name: str, version: str | None, alias: str | None) -> Any:
        """The registry's ``name/version`` (or ``name@alias`` when ``version`` is None); blocking.

        Returns
        -------
        mlflow.entities.model_registry.ModelVersion

        Raises
        ------
        ApiError
            404 for an unknown model, version or alias; 503 when the registry fails.
        """
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

    def _load_version(self, mv: Any) -> LoadedModel:
        sha = mv.tags.get("sha256")
        if not sha:
            raise ApiError(
                404,
                f"model {mv.name}/{mv.version} has no verifiable artifact",
                ["model_name: the version carries no sha256 tag"],
                ["model_name"],
            )
        pipeline = self._download(self.tracker.tracking_uri, version_artifact_uri(mv), sha)
        return LoadedModel(pipeline, mv.name, str(mv.version), self.contract)

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
            alias = alias or CHAMPION
            cached = self._aliases.get((name, alias))
            if cached is not None and cached[1] > time.monotonic():
                version = cached[0]
            else:
                mv = await asyncio.to_thread(self.model_version, name, None, alias)
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
                    mv = await asyncio.to_thread(self.model_version, name, version, None)
                    model = await asyncio.to_thread(self._load_version, mv)
                    self._check_classifier(model)
                    self._versions[key] = model
                    while len(self._versions) > MODEL_CACHE_SIZE:
                        self._versions.popitem(last=False)
                    logger.info("loaded model=%s model_version=%s for model_name selection", name, version)
        self._versions.move_to_end(key)
        return model

    def _check_classifier(self, model: LoadedModel) -> None:
        task = getattr(model.pipeline.model, "task", "")
        if task != "classifier":
            raise ApiError(
                422,
                f"model {model.model_name}/{model.model_version} is not a churn classifier",
                [f"model_name: expected a classifier, got a {task or 'unknown'} model"],
                ["model_name"],
            )
        refusal = contract_refusal(model.pipeline.metadata, self.contract.profile)
        if refusal is not None:
            raise ApiError(
                422,
                f"model {model.model_name}/{model.model_version} serves another data set contract",
                [f"model_name: {refusal}"],
                ["model_name"],
            )
        missing = set(model.pipeline.feature_names_in) - self.contract.provides()
        if missing:
            raise ApiError(
                422,
                f"model {model.model_name}/{model.model_version} needs unknown features",
                [f"model_name: needs features not in the customer contract: {sorted(missing)}"],
                ["model_name"],
            )

    # -- scoring (the hot path: one matrix, one predict_proba call)
    def predict(self, model: LoadedModel, events: Sequence[CustomerEventBase]) -> dict[str, Any]:
        """Score customers with ``model`` and the value model.

        Returns
        -------
        dict
            The :class:`~schemas.http.PredictResponse` document, predictions in ``events`` order.

        Raises
        ------
        ApiError
            422 when the customers cannot be featurised for ``model``.
        """
        pipeline = model.pipeline
        contract = self.contract
        value_model = self.value_model
        rows = [ev.__dict__ for ev in events]
        values: list[float | None] = [None] * len(events)
        try:
            # One featurisation of the events for both models (the value model reads a subset of the same fields).
            columns = contract.columns(rows, _input_names(model, value_model))
            X, unknown = _design_matrix(pipeline, columns, len(rows))
            if value_model is not None:
                vp = value_model.pipeline
                Xv, _ = _design_matrix(vp, {n: columns[n] for n in vp.feature_names_in}, len(rows))
                # Clipped at 0 like the stream's alerts: a linear regressor extrapolates below zero for new customers.
                values = np.maximum(vp.model.predict(Xv), 0.0).tolist()
        except (ValueError, TypeError) as exc:
            raise ApiError(422, "customers could not be featurised", [str(exc)[:300]]) from None
        proba = churn_probabilities(model, X)
        threshold = pipeline.threshold
        reasons = reason_codes(model, X)
        if unknown is None:
            unknown, counts = unknown_categories(model, X)
        else:
            counts = dict.fromkeys(unknown[0], 1)
        id_field, normalised_id = contract.id_field, contract.normalised_id
        preds = [
            {
                "event_id": row["event_id"],
                "customer_id": normalised_id(row[id_field]),
                "churn_probability": p,
                "churn_label": p >= threshold,
                "threshold": threshold,
                PREDICTED_VALUE_FIELD: v,
                REASONS_FIELD: r,
                UNKNOWN_CATEGORIES_FIELD: u,
                "model_name": model.model_name,
                "model_version": model.model_version,
            }
            for row, p, v, r, u in zip(rows, proba.tolist(), values, reasons, unknown)
        ]
        self.stats.customers_scored += len(preds)
        for name, n in counts.items():
            self.stats.unknown_categories[name] = self.stats.unknown_categories.get(name, 0) + n
        return {
            "predictions": preds,
            "classifier": {"model_name": model.model_name, "model_version": model.model_version},
            "value_model": (
                None
                if value_model is None
                else {"model_name": value_model.model_name, "model_version": value_model.model_version}
            ),
        }
