"""Request bodies in, JSON documents out: reading, parsing and validating, and the error answers.

The bodies' contracts are in :mod:`schemas.http`; this module applies them to bytes.
Every failure becomes an :class:`ApiError`, answered as an
:class:`~schemas.http.ErrorResponse` naming each failing field.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from schemas.events import CustomerInputBase, error_fields, format_validation_error
from schemas.http import ModelRef, customer_list_type
from schemas.profiles import TELCO, DatasetProfile

#: Default request-body limit (bytes); larger bodies get 413.
DEFAULT_MAX_BODY_BYTES = 1 << 20


class ApiError(Exception):
    """An error answered with ``status`` and an :class:`~schemas.http.ErrorResponse` body.

    Parameters
    ----------
    status : int
        HTTP status code.
    error : str
        One-line summary.
    errors : list of str, optional
        Details, ``"field: expected ..., got ..."``.
    fields : list of str, optional
        The failing fields (``customers.0.tenure_months``, ``model_name``, ``<body>``).
    """

    def __init__(
        self, status: int, error: str, errors: list[str] | None = None, fields: list[str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.errors = errors or []
        self.fields = fields or []


def json_response(doc: Any, status: int = 200) -> Response:
    """``doc`` as an ``application/json`` response (orjson: the predict path's encoder)."""
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def error_response(err: ApiError) -> Response:
    """The :class:`~schemas.http.ErrorResponse` answer of ``err``."""
    return json_response({"error": err.error, "errors": err.errors, "fields": err.fields}, err.status)


class _Envelope(BaseModel):
    """:class:`~schemas.http.PredictRequest` as parsed: ``customers`` is validated on its own so
    errors name ``customers.0.tenure_months`` rather than pydantic's union branches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customers: Any
    model_name: ModelRef | None = None


_ADAPTERS: dict[str, tuple[TypeAdapter[Any], TypeAdapter[Any]]] = {}


def _adapters(profile: DatasetProfile) -> tuple[TypeAdapter[Any], TypeAdapter[Any]]:
    """Validators of one customer and of a customer list of ``profile`` (cached per digest)."""
    if profile.digest not in _ADAPTERS:
        from schemas.events import customer_input_model

        _ADAPTERS[profile.digest] = (
            TypeAdapter(customer_input_model(profile)),
            TypeAdapter(customer_list_type(profile)),
        )
    return _ADAPTERS[profile.digest]


def _validation_error(exc: ValidationError, prefix: str | None = None) -> ApiError:
    lines = format_validation_error(exc).errors
    # Every failing field is named; the detail lines stop at 10.
    fields = error_fields(exc, prefix)[:100]
    if prefix:
        lines = [
            f"{prefix}{line[len('<event>') :]}" if line.startswith("<event>") else f"{prefix}.{line}" for line in lines
        ]
    return ApiError(422, "request body failed validation", lines, fields)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused past ``limit`` bytes (declared or streamed).

    Raises
    ------
    ApiError
        413 over the limit; 400 when the client disconnects mid-body.
    """
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


def decode_json(body: bytes) -> Any:
    """Parse a body; NaN/Infinity parse (then fail validation naming their field), anything else non-JSON is 422.

    Raises
    ------
    ApiError
        422 for an empty or non-JSON body.
    """
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


def _validate_customers(obj: Any, profile: DatasetProfile, prefix: str | None = None) -> list[CustomerInputBase]:
    one, many = _adapters(profile)
    try:
        if isinstance(obj, list):
            return many.validate_python(obj)
        return [one.validate_python(obj)]
    except ValidationError as exc:
        raise _validation_error(exc, prefix) from None


def parse_customers(obj: Any, profile: DatasetProfile = TELCO) -> tuple[list[CustomerInputBase], str | None]:
    """The customers of a decoded predict body and the ``model_name`` its envelope names.

    Parameters
    ----------
    obj : object
        One customer, a list of customers, or ``{"customers": ..., "model_name": ...}``.
    profile : DatasetProfile, default Telco
        The served data set: customers are its contract's
        (:func:`schemas.events.customer_input_model`, the ``customers`` topic's rules).

    Returns
    -------
    customers : list of CustomerInputBase
    model_name : str or None

    Raises
    ------
    ApiError
        422 naming each failing field.
    """
    if isinstance(obj, dict) and "customers" in obj and profile.id_column not in obj:
        try:
            envelope = _Envelope.model_validate(obj)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        return _validate_customers(envelope.customers, profile, "customers"), envelope.model_name
    return _validate_customers(obj, profile), None
