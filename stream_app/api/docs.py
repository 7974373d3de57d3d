"""The API's own description: the OpenAPI 3.1 document, Swagger UI at ``/docs`` and ReDoc at ``/redoc``.

The schemas come from the pydantic contracts of :mod:`schemas.http`, so the document
cannot drift from what the handlers validate; every body carries the examples defined
there (Telco customers, and the API's real answers for them).

Both pages load their scripts and styles from this server, never from a CDN: the
machine serving them may have no internet. Swagger UI 5 comes from the ``swagger-ui-py``
wheel (the ``swagger-ui-bundle`` wheel ships Swagger UI 4, which cannot render OpenAPI
3.1); ReDoc's standalone bundle is vendored under ``static/redoc/`` (see its README for
version and licence). A Content-Security-Policy on both pages keeps every request on
this origin. The routes come from :func:`docs_routes`, apart from the API's own, so an
authentication layer added later can leave :data:`PUBLIC_DOC_PATHS` open.
"""

from __future__ import annotations

import copy
import html
import importlib.util
from pathlib import Path
from typing import Any

import orjson
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from schemas.http import (
    EXAMPLE_CUSTOMER,
    EXAMPLE_CUSTOMER_ONE_YEAR,
    EXAMPLE_ERROR_401,
    EXAMPLE_ERROR_403,
    EXAMPLE_ERROR_404,
    EXAMPLE_ERROR_413,
    EXAMPLE_ERROR_422,
    EXAMPLE_ERROR_429,
    EXAMPLE_ERROR_503,
    EXAMPLE_ERROR_503_REGISTRY,
    EXAMPLE_HEALTH_OK,
    EXAMPLE_HEALTH_STARTING,
    EXAMPLE_METRICS_RESPONSE,
    EXAMPLE_MODELS_RESPONSE,
    EXAMPLE_PREDICT_REQUEST,
    EXAMPLE_PREDICT_RESPONSE,
    MAX_CUSTOMERS_PER_REQUEST,
    MODEL_REF_MAX_LENGTH,
    MODEL_REF_PATTERN,
    CustomerInput,
    ErrorResponse,
    HealthResponse,
    MetricsResponse,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
)
from schemas.registry import CHALLENGER, CLASSIFIER_NAME
from stream_app.api.auth import ROUTE_SCOPES
from stream_app.api.bodies import DEFAULT_MAX_BODY_BYTES

#: The machine-readable document.
OPENAPI_PATH = "/openapi.json"
#: Swagger UI (try requests from the browser).
DOCS_PATH = "/docs"
#: ReDoc (a three-panel reference).
REDOC_PATH = "/redoc"
#: The pages' scripts, styles and icon: ``/docs/assets/<name>``.
ASSETS_PATH = "/docs/assets"
#: Paths an authentication layer should leave open (the last one is a prefix).
PUBLIC_DOC_PATHS = (OPENAPI_PATH, DOCS_PATH, REDOC_PATH, ASSETS_PATH + "/")

#: Everything on this origin. ``'unsafe-inline'`` styles: both UIs set style attributes at run time;
#: ``blob:`` workers: ReDoc's search index runs in one; ``data:`` images: Swagger UI's inline icons.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'self'"
)

_STATIC = Path(__file__).resolve().parent / "static"
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png"}


def _swagger_ui_static() -> Path:
    """The ``static`` folder of the installed ``swagger-ui-py`` wheel (located, not imported).

    Raises
    ------
    RuntimeError
        If ``swagger-ui-py`` is not installed.
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("swagger-ui-py is not installed; it serves Swagger UI's files at /docs (pip install -e .)")
    return Path(spec.origin).parent / "static"


def doc_assets() -> dict[str, Path]:
    """The files the ``/docs`` and ``/redoc`` pages load, by the name they are served under.

    Only these are served (not the whole folders they come from).

    Returns
    -------
    dict of str to pathlib.Path
        ``/docs/assets/<name>`` -> packaged file.

    Raises
    ------
    RuntimeError
        If ``swagger-ui-py`` is not installed.
    """
    swagger = _swagger_ui_static()
    return {
        "swagger-ui-bundle.js": swagger / "swagger-ui-bundle.js",
        "swagger-ui.css": swagger / "swagger-ui.css",
        "favicon-32x32.png": swagger / "favicon-32x32.png",
        "swagger-init.js": _STATIC / "swagger-init.js",
        "redoc.standalone.js": _STATIC / "redoc" / "redoc.standalone.js",
    }


def _json(schema_name: str, description: str, examples: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """A response (or request body) of ``schema_name`` with named examples ``{key: (summary, value)}``."""
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{schema_name}"},
                "examples": {k: {"summary": s, "value": copy.deepcopy(v)} for k, (s, v) in examples.items()},
            }
        },
    }


def _error(description: str, **examples: tuple[str, Any]) -> dict[str, Any]:
    return _json("ErrorResponse", description, examples)


#: The security scheme every operation but ``/health`` names (``stream_app.api.auth``).
SECURITY_SCHEME = "bearer"


def _secured(operation: dict[str, Any], scope: str) -> dict[str, Any]:
    """``operation`` with its credential requirement and the 401/403/429 answers documented."""
    responses = dict(operation["responses"])
    responses["401"] = _error(
        "No credential, or one refused (malformed, unknown, revoked, expired). "
        "Answered with `WWW-Authenticate: Bearer`.",
        missing=("No Authorization header", EXAMPLE_ERROR_401),
    )
    responses["403"] = _error(
        f"The credential lacks the `{scope}` scope (or `admin`).",
        scope=("A models:read key on POST /api/predict", EXAMPLE_ERROR_403),
    )
    responses["429"] = _error(
        "Too many refused credentials from this client address within a minute; `Retry-After` says how long to wait.",
        limited=("Rate-limited", EXAMPLE_ERROR_429),
    )
    return {**operation, "security": [{SECURITY_SCHEME: [scope]}], "responses": responses}


def openapi_document(max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document, its schemas generated from the pydantic models.

    Parameters
    ----------
    max_body_bytes : int, default 1 MiB
        The body limit the predict operation states.

    Returns
    -------
    dict
        JSON-able; served at ``/openapi.json``. Every request and response body has
        named examples (``content.application/json.examples``), and each body's schema
        its ``examples``.
    """
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

    model_param = {
        "name": "model_name",
        "in": "query",
        "required": False,
        "description": "Score with this registered version instead of the champion "
        "(`name/version`, `name@alias` or `name`). Takes precedence over a "
        "`model_name` in the body.",
        "schema": {"type": "string", "pattern": MODEL_REF_PATTERN, "maxLength": MODEL_REF_MAX_LENGTH},
        "examples": {
            "version": {"summary": "A registered version", "value": f"{CLASSIFIER_NAME}/3"},
            "alias": {"summary": "The version an alias points to", "value": f"{CLASSIFIER_NAME}@{CHALLENGER}"},
        },
    }
    customer_list = {
        "title": "CustomerInput list",
        "type": "array",
        "items": {"$ref": "#/components/schemas/CustomerInput"},
        "minItems": 1,
        "maxItems": MAX_CUSTOMERS_PER_REQUEST,
    }
    predict_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/CustomerInput"},
                        customer_list,
                        {"$ref": "#/components/schemas/PredictRequest"},
                    ]
                },
                "examples": {
                    "one": {
                        "summary": "One customer (event id and time generated)",
                        "value": copy.deepcopy(EXAMPLE_CUSTOMER),
                    },
                    "list": {
                        "summary": "A list of customers",
                        "value": copy.deepcopy([EXAMPLE_CUSTOMER, EXAMPLE_CUSTOMER_ONE_YEAR]),
                    },
                    "envelope": {
                        "summary": "Customers and the model version to score them with",
                        "value": copy.deepcopy(EXAMPLE_PREDICT_REQUEST),
                    },
                },
            }
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "churn-stream prediction API",
            "version": "1",
            "description": "Churn probability, label, reason codes and customer value per customer, scored with "
            "the same featurisation and model versions as the stream.",
        },
        "tags": [
            {"name": "scoring", "description": "Churn scores for customers, as the stream computes them."},
            {"name": "models", "description": "The registered models and the champion's figures."},
            {"name": "service", "description": "Readiness of this API process."},
        ],
        "paths": {
            "/api/predict": {
                "post": {
                    "operationId": "predict",
                    "tags": ["scoring"],
                    "summary": "Score one customer or a list",
                    "description": 'Body: one customer, a list of customers, or `{"customers": ..., '
                    '"model_name": ...}`. '
                    f"At most {MAX_CUSTOMERS_PER_REQUEST} customers and "
                    f"{max_body_bytes} bytes. `event_id` and `event_time` may be omitted.",
                    "parameters": [model_param],
                    "requestBody": predict_body,
                    "responses": {
                        "200": _json(
                            "PredictResponse",
                            "Scores in request order.",
                            {"scored": ("Customer 7590-VHVEG scored by the champion", EXAMPLE_PREDICT_RESPONSE)},
                        ),
                        "404": _error("Unknown model.", unknown=("No such registered version", EXAMPLE_ERROR_404)),
                        "413": _error(
                            "Request body too large.", too_large=("A 2 MiB body, 1 MiB limit", EXAMPLE_ERROR_413)
                        ),
                        "422": _error(
                            "Invalid body or parameter; `errors` names each failing field.",
                            invalid=("tenure_months given as text", EXAMPLE_ERROR_422),
                        ),
                        "503": _error(
                            "No champion loaded yet, or the model registry is unreachable.",
                            starting=("No champion loaded yet", EXAMPLE_ERROR_503),
                            registry=("Model registry unreachable", EXAMPLE_ERROR_503_REGISTRY),
                        ),
                    },
                }
            },
            "/api/metrics": {
                "get": {
                    "operationId": "metrics",
                    "tags": ["models"],
                    "summary": "Champion evaluation metrics (MLflow) and live figures",
                    "responses": {
                        "200": _json(
                            "MetricsResponse",
                            "Metrics.",
                            {"serving": ("Champion version 3 in service", EXAMPLE_METRICS_RESPONSE)},
                        )
                    },
                }
            },
            "/api/models": {
                "get": {
                    "operationId": "models",
                    "tags": ["models"],
                    "summary": "Registered models, versions, aliases and key metrics",
                    "responses": {
                        "200": _json(
                            "ModelsResponse",
                            "The registry.",
                            {"registry": ("Classifier and regressor", EXAMPLE_MODELS_RESPONSE)},
                        ),
                        "503": _error(
                            "The model registry is unreachable.",
                            registry=("Model registry unreachable", EXAMPLE_ERROR_503_REGISTRY),
                        ),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "tags": ["service"],
                    "summary": "200 when a champion is in service",
                    "responses": {
                        "200": _json(
                            "HealthResponse", "A champion is in service.", {"ok": ("Serving", EXAMPLE_HEALTH_OK)}
                        ),
                        "503": _json(
                            "HealthResponse",
                            "No champion loaded yet.",
                            {"starting": ("Starting", EXAMPLE_HEALTH_STARTING)},
                        ),
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`churn api keys create`, `chs_<id>_<secret>`) or, when the API is "
                    "configured with an issuer, an OAuth2 access token (JWT) with the operation's scope in its "
                    "`scope`/`scp` claim. Scopes: `predict`, `models:read`, `admin` (all).",
                }
            },
        },
    }
    for path, scope in ROUTE_SCOPES.items():
        for method, operation in doc["paths"][path].items():
            doc["paths"][path][method] = _secured(operation, scope)
    return doc


def _page(title: str, head: str, body: str) -> str:
    # Relative URLs (docs/assets/..., openapi.json): the pages also work behind a path prefix.
    return (
        "<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{html.escape(title)}</title>\n"
        f"<link rel='icon' type='image/png' href='{ASSETS_PATH[1:]}/favicon-32x32.png'>\n"
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def swagger_ui_html(title: str) -> str:
    """The ``/docs`` page: Swagger UI on ``openapi.json``, every asset from ``/docs/assets``.

    Parameters
    ----------
    title : str
        The page title.

    Returns
    -------
    str
    """
    assets = ASSETS_PATH[1:]
    return _page(
        f"{title} - Swagger UI",
        f"<link rel='stylesheet' href='{assets}/swagger-ui.css'>\n",
        "<noscript>Swagger UI needs JavaScript; the document itself is at "
        "<a href='openapi.json'>openapi.json</a>; a reference without a console at <a href='redoc'>redoc</a>."
        "</noscript>\n<div id='swagger-ui'></div>\n"
        f"<script src='{assets}/swagger-ui-bundle.js'></script>\n"
        f"<script src='{assets}/swagger-init.js'></script>\n",
    )


def redoc_html(title: str) -> str:
    """The ``/redoc`` page: ReDoc on ``openapi.json``, its bundle from ``/docs/assets``.

    Parameters
    ----------
    title : str
        The page title.

    Returns
    -------
    str
    """
    return _page(
        f"{title} - ReDoc",
        "<style>body{margin:0;padding:0}</style>\n",
        "<noscript>ReDoc needs JavaScript; the document itself is at <a href='openapi.json'>openapi.json</a>."
        "</noscript>\n"
        "<redoc spec-url='openapi.json' expand-responses='200' required-props-first='true'></redoc>\n"
        f"<script src='{ASSETS_PATH[1:]}/redoc.standalone.js'></script>\n",
    )


def docs_routes(doc: dict[str, Any]) -> list[Route]:
    """The documentation routes: ``/openapi.json``, ``/docs``, ``/redoc`` and their assets.

    Kept apart from the API's routes so an authentication layer can leave them open
    (:data:`PUBLIC_DOC_PATHS`).

    Parameters
    ----------
    doc : dict
        An :func:`openapi_document`, served as is.

    Returns
    -------
    list of starlette.routing.Route
        None of them in the OpenAPI document itself.

    Raises
    ------
    RuntimeError
        If ``swagger-ui-py`` is not installed.
    """
    doc_bytes = orjson.dumps(doc)
    title = doc["info"]["title"]
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
    swagger_page = swagger_ui_html(title)
    redoc_page = redoc_html(title)
    assets = doc_assets()

    async def openapi(request: Request) -> Response:
        return Response(doc_bytes, media_type="application/json")

    async def swagger_ui(request: Request) -> Response:
        return HTMLResponse(swagger_page, headers=headers)

    async def redoc(request: Request) -> Response:
        return HTMLResponse(redoc_page, headers=headers)

    async def asset(request: Request) -> Response:
        path = assets.get(request.path_params["name"])
        if path is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(
            path, media_type=_MEDIA_TYPES.get(path.suffix), headers={"Cache-Control": "public, max-age=3600"}
        )

    return [
        Route(OPENAPI_PATH, openapi, methods=["GET"], include_in_schema=False),
        Route(DOCS_PATH, swagger_ui, methods=["GET"], include_in_schema=False),
        Route(REDOC_PATH, redoc, methods=["GET"], include_in_schema=False),
        Route(ASSETS_PATH + "/{name}", asset, methods=["GET"], include_in_schema=False),
    ]
