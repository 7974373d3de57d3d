"""The API's own description: the OpenAPI 3.1 document and the ``/docs`` page made from it.

The schemas come from the pydantic contracts of :mod:`schemas.http`, so the document
cannot drift from what the handlers validate. The page is self-contained HTML (no
scripts, no external assets): the machine serving it may have no internet.
"""

from __future__ import annotations

import html
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.http import (
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
from stream_app.api.bodies import DEFAULT_MAX_BODY_BYTES


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
    """The OpenAPI 3.1 document, its schemas generated from the pydantic models.

    Parameters
    ----------
    max_body_bytes : int, default 1 MiB
        The body limit the predict operation states.

    Returns
    -------
    dict
        JSON-able; served at ``/openapi.json``.
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
        "schema": {"type": "string", "pattern": MODEL_REF_PATTERN, "maxLength": MODEL_REF_MAX_LENGTH},
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
    """A self-contained HTML page describing ``doc`` (no scripts, no external assets).

    Parameters
    ----------
    doc : dict
        An :func:`openapi_document`.

    Returns
    -------
    str
        The page served at ``/docs``.
    """
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
