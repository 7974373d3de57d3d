"""The app factory: routes, background tasks and middleware around one :class:`~stream_app.api.state.ApiState`.

:func:`create_app` builds the Starlette app (tests drive it in-process);
:func:`run_api` serves it with uvicorn (``churn api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from plumbing.clients import make_tracker, served_dataset
from plumbing.settings import Settings
from schemas.events import customer_input_model
from schemas.profiles import DatasetProfile
from stream_app.api.auth import Authenticator, RequireCredential
from stream_app.api.bodies import DEFAULT_MAX_BODY_BYTES
from stream_app.api.docs import PUBLIC_DOC_PATHS, docs_routes, openapi_document
from stream_app.api.handlers import health, metrics, models, predict
from stream_app.api.middleware import CountRequests
from stream_app.api.state import ApiState
from stream_app.contract import EventContract
from stream_app.model_follow import follow_model_updates
from stream_app.model_store import ModelStore

logger = logging.getLogger(__name__)

#: Paths answered without a credential: readiness, and the documentation. The OpenAPI document
#: describes the contract and holds no data; Swagger UI must read it before a user can enter a
#: key, and Kubernetes' liveness probe reads it (deploy/kubernetes).
PUBLIC_PATHS = ("/health", *PUBLIC_DOC_PATHS)


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
    """Whenever the models in service change, move the heap out of the garbage collector's sight.

    The process holds a few million long-lived objects (MLflow, pydantic, numpy, the
    models); every full collection walks all of them and stops the event loop for tens of
    milliseconds, which lands in the prediction latency tail. ``gc.freeze()`` after one
    collection keeps them out of every later collection (CPython's documented use). Done
    again after each load, so the value model, which arrives after the champion, and every
    swapped-in version are frozen too; later collections only walk what is new.
    """
    served: tuple[object, object] | None = None
    while True:
        current, value_model = store.current, getattr(store, "value_model", None)
        if current is not None and (served is None or served[0] is not current or served[1] is not value_model):
            gc.collect()
            gc.freeze()
            served = (current, value_model)
            logger.info("heap frozen after model load objects=%d", gc.get_freeze_count())
        await asyncio.sleep(poll_s)


def dataset_openapi(profile: DatasetProfile, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> dict[str, Any]:
    """The OpenAPI document of an API serving ``profile``: its customer body is the data set's contract.

    :func:`~stream_app.api.docs.openapi_document` describes the bodies of :mod:`schemas.http`
    (Telco's customer); its ``CustomerInput`` component is replaced by
    :func:`schemas.events.customer_input_model` of the served profile (equal for Telco), and
    ``info`` names the data set and its contract hash.
    """
    doc = openapi_document(max_body_bytes)
    body = customer_input_model(profile).model_json_schema(
        mode="validation", ref_template="#/components/schemas/{model}"
    )
    doc["components"]["schemas"].update(body.pop("$defs", {}))
    doc["components"]["schemas"]["CustomerInput"] = body
    doc["info"]["description"] += f" Data set served: {profile.name} (contract {profile.digest[:12]})."
    doc["info"]["x-dataset"] = profile.name
    doc["info"]["x-contract-sha256"] = profile.digest
    return doc


def create_app(
    settings: Settings,
    tracker: Any,
    store: ModelStore | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    follow_updates: bool = True,
) -> Starlette:
    """Build the Starlette prediction app.

    Every route but :data:`PUBLIC_PATHS` requires a credential (:mod:`stream_app.api.auth`)
    unless ``settings.api_auth`` is ``none``, which is logged as a warning. Without an active
    key or a JWKS, the app refuses every such request (:func:`run_api` refuses to start).

    Parameters
    ----------
    settings : plumbing.settings.Settings
    tracker : mlflow.MlflowClient
        Registry client for model selection, metrics and listings.
    store : ModelStore, optional
        The champion store; by default a new one on the configured MLflow server for the
        data set ``settings.dataset`` names (its contract, registered model names and
        ``model-updated`` topic) that also follows the regressor's champion (``value_models=True``).
    max_body_bytes : int, default 1 MiB
        Larger request bodies are answered with 413.
    follow_updates : bool, default True
        On startup, run :func:`~stream_app.model_follow.follow_model_updates` (load the
        champions, then swap in every announced one).

    Returns
    -------
    starlette.applications.Starlette
    """
    if store is None:
        profile, namespace = served_dataset(settings)
        store = ModelStore(
            settings.mlflow_tracking_uri,
            value_models=True,
            contract=EventContract.for_profile(profile),
            namespace=namespace,
        )
    state = ApiState(settings, tracker, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if follow_updates:

            async def load_champion_directly() -> None:
                # Without the broker there are no announcements, but the registry's
                # champion can still be served; the follower swaps later ones in once it runs.
                if store.current is None and await store.load_champion_async():
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
        # Separate from the API's routes: an auth layer can leave them open (docs.PUBLIC_DOC_PATHS).
        *docs_routes(dataset_openapi(state.contract.profile, max_body_bytes)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.api = state
    app.state.max_body_bytes = max_body_bytes
    auth = Authenticator.from_settings(settings)
    if auth is None:
        logger.warning(
            "API authentication is OFF (CHURN_API_AUTH=none): every route answers anyone who reaches it; "
            "for local development only"
        )
    else:
        # Added first, so inside CountRequests: refusals are counted by status too.
        app.add_middleware(RequireCredential, auth=auth, failures=state.stats.auth_failures, public_paths=PUBLIC_PATHS)
        logger.info(
            "API authentication on keys=%s jwt_issuer=%s max_failures_per_min=%d",
            settings.api_keys_path,
            settings.api_jwt_issuer or None,
            settings.api_auth_max_failures,
        )
    app.add_middleware(CountRequests, stats=state.stats)
    return app


def run_api(
    settings: Settings, host: str = "127.0.0.1", port: int = 8000, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> None:
    """Serve the API with uvicorn until interrupted (blocking).

    Parameters
    ----------
    settings : plumbing.settings.Settings
    host : str, default "127.0.0.1"
    port : int, default 8000
    max_body_bytes : int, default 1 MiB

    Raises
    ------
    stream_app.api.auth.AuthConfigError
        When authentication is on and there is no active key and no JWKS to check against.
    """
    import uvicorn

    Authenticator.from_settings(settings, require_credentials=True)  # refuse to start with nothing to check against
    app = create_app(settings, make_tracker(settings), max_body_bytes=max_body_bytes)
    # No per-request access log: it would cost more than scoring a customer.
    # uvloop and httptools explicitly (uvicorn's fastest pair; "auto" silently falls back to asyncio/h11).
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # no uvloop on Windows
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info", loop=loop, http="httptools")
