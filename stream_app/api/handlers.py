"""The API's route handlers: ``POST /api/predict``, ``GET /api/metrics``, ``GET /api/models``, ``GET /health``.

Each reads the :class:`~stream_app.api.state.ApiState` from ``request.app.state.api``
and answers the documents of :mod:`schemas.http`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stream_app.api.bodies import ApiError, decode_json, error_response, json_response, parse_customers, read_body
from stream_app.api.state import ApiState

logger = logging.getLogger(__name__)

#: Run metrics shown as a version's key metrics (classifiers and regressors).
KEY_METRICS = ("roc_auc", "f1", "f1_tuned", "accuracy", "precision", "recall", "threshold", "rmse", "mae", "r2", "mape")


async def predict(request: Request) -> Response:
    """Score one customer or a list (``POST /api/predict``)."""
    state: ApiState = request.app.state.api
    t0 = time.perf_counter()
    try:
        body = await read_body(request, request.app.state.max_body_bytes)
        customers, body_ref = parse_customers(decode_json(body), state.contract.profile)
        # The query parameter, when given, wins over the body's model_name (documented in OpenAPI).
        query_ref = request.query_params.get("model_name")
        model = await state.resolve(query_ref if query_ref is not None else body_ref)
        response = json_response(state.predict(model, customers))
    except ApiError as err:
        response = error_response(err)
    state.stats.predict_requests += 1
    state.stats.latencies_s.append(time.perf_counter() - t0)
    return response


async def health(request: Request) -> Response:
    """200 when a champion is in service, 503 otherwise (``GET /health``)."""
    current = request.app.state.api.store.current
    if current is None:
        return json_response({"status": "starting", "model_name": None, "model_version": None}, 503)
    return json_response({"status": "ok", "model_name": current.model_name, "model_version": current.model_version})


async def metrics(request: Request) -> Response:
    """The champion's evaluation metrics and this process's live figures (``GET /api/metrics``)."""
    state: ApiState = request.app.state.api
    store = state.store
    current = store.current
    champion: dict[str, Any] | None = None
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
            mv = await asyncio.to_thread(state.model_version, current.model_name, current.model_version, None)
            champion["run_id"] = mv.run_id
            champion["metrics"] = await asyncio.to_thread(state.run_metrics, mv.run_id)
        except ApiError as err:
            evaluation_error = err.error
        except Exception as exc:  # noqa: BLE001 - live figures are still worth serving
            evaluation_error = f"{type(exc).__name__}: {exc}"[:300]
    stats = state.stats
    value_model = state.value_model
    live = {
        "uptime_s": time.monotonic() - stats.started,
        "requests_total": stats.requests_total,
        "predict_requests": stats.predict_requests,
        "customers_scored": stats.customers_scored,
        "responses_by_status": dict(stats.by_status),
        "auth_failures_by_reason": dict(stats.auth_failures),
        "latency": stats.latency_summary(),
        "model_name": current.model_name if current else None,
        "model_version": current.model_version if current else None,
        "value_model_version": value_model.model_version if value_model else None,
        "reloads_ok": store.reloads_ok,
        "reloads_failed": store.reloads_failed,
        "last_reload_error": store.last_error,
        "model_refusals": dict(getattr(store, "refusals", {})),
        "announcements_refused": dict(getattr(store, "announcements_refused", {})),
        "unknown_categories": dict(stats.unknown_categories),
    }
    return json_response({"champion": champion, "evaluation_error": evaluation_error, "live": live})


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
    """Registered models, their versions, aliases and key metrics (``GET /api/models``)."""
    state: ApiState = request.app.state.api
    try:
        doc = await asyncio.to_thread(_list_models, state)
    except Exception as exc:  # noqa: BLE001 - the registry being down is a 503, not a bug here
        logger.error("model listing failed error=%s", f"{type(exc).__name__}: {exc}"[:300])
        return error_response(ApiError(503, "model registry unavailable", [f"{type(exc).__name__}"]))
    return json_response(doc)
