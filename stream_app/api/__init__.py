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
``GET /openapi.json`` (generated from the pydantic contracts), Swagger UI at ``GET /docs``
and ReDoc at ``GET /redoc`` (their assets served by the API itself: the machine serving
them may have no internet).

Modules, one job each:

- the request and response bodies are :mod:`schemas.http` (the dashboard's score
  form reads the same ones);
- :mod:`~stream_app.api.bodies` reads, parses and validates bodies, and answers errors;
- :mod:`~stream_app.api.state` holds the model store wiring, model selection and scoring;
- :mod:`~stream_app.api.handlers` holds the routes;
- :mod:`~stream_app.api.docs` makes the OpenAPI document and the ``/docs`` and ``/redoc`` pages;
- :mod:`~stream_app.api.middleware` counts requests;
- :mod:`~stream_app.api.app` builds the app (:func:`create_app`) and serves it (:func:`run_api`).
"""

from stream_app.api.app import create_app, run_api
from stream_app.api.bodies import DEFAULT_MAX_BODY_BYTES, ApiError
from stream_app.api.docs import docs_routes, openapi_document
from stream_app.api.state import ApiState

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ApiError",
    "ApiState",
    "create_app",
    "docs_routes",
    "openapi_document",
    "run_api",
]
