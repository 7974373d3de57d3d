"""The score-a-customer form, generated from the customer contract's JSON Schema, posted to the prediction API.

The dashboard never scores or validates by itself: the API serves the champion the
stream uses and applies the contract, so the answer shown, and every error message, is
the one the system gives. The form's fields, their types and constraints come from the
JSON Schema of the API's request contract (:class:`~schemas.http.CustomerInput`, the
``customers`` topic's :class:`~schemas.events.CustomerEvent`): a dataset profile with
other fields gets another form without code here. A JSON Schema ``enum`` becomes a
dropdown and ``default``/``examples`` fill the field. What the user types is sent as
typed (numbers parsed, nothing rounded or clamped), so ``-5`` or ``2.5`` months reach the
API, which answers 422 naming the field (:class:`~schemas.http.ErrorResponse`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.events import customer_input_model, format_validation_error
from schemas.http import CustomerInput, ErrorResponse, PredictResponse
from schemas.jsonschema import TOPIC_SCHEMAS
from schemas.profiles import DatasetProfile

logger = logging.getLogger(__name__)

#: Default prediction endpoint (``churn api``).
DEFAULT_API_URL = "http://127.0.0.1:8000/api/predict"
#: Fields every event carries (``event_id``, ``event_time``, ``schema_version``): the API fills them in.
ENVELOPE_FIELDS: frozenset[str] = frozenset.intersection(*(frozenset(m.model_fields) for m in TOPIC_SCHEMAS.values()))
#: Widget kinds of a :class:`FormField`.
TEXT, INTEGER, NUMBER, BOOLEAN, CHOICE = "text", "integer", "number", "boolean", "choice"
_INTEGER_TEXT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class FormField:
    """One input of the form, read from a JSON Schema property.

    Attributes
    ----------
    name : str
        The contract's field name (also the input's id, ``form-<name>``).
    kind : str
        ``"text"``, ``"integer"``, ``"number"``, ``"boolean"`` or ``"choice"`` (an ``enum``).
    required : bool
        In the schema's ``required`` list.
    nullable : bool
        The schema allows ``null`` (an empty input sends it).
    options : tuple
        The ``enum`` values of a choice.
    default : Any
        Initial value: the schema's ``default``, else its first ``examples`` entry, else None.
    hint : str
        The type and constraints in words (``"integer, 0 to 1200"``) and the description.
    """

    name: str
    kind: str
    required: bool
    nullable: bool
    options: tuple[Any, ...] = ()
    default: Any = None
    hint: str = ""


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**defs.get(ref.rsplit("/", 1)[1], {}), **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def _hint(kind: str, spec: dict[str, Any], required: bool, nullable: bool) -> str:
    words = {TEXT: "text", INTEGER: "integer", NUMBER: "number", BOOLEAN: "yes / no", CHOICE: "one of the list"}[kind]
    lo = spec.get("minimum", spec.get("exclusiveMinimum"))
    hi = spec.get("maximum", spec.get("exclusiveMaximum"))
    if lo is not None and hi is not None:
        words += f", {lo:,} to {hi:,}"
    elif lo is not None:
        words += f", at least {lo:,}"
    elif hi is not None:
        words += f", at most {hi:,}"
    if kind == TEXT and spec.get("maxLength"):
        words += f", up to {spec['maxLength']} characters"
    if not required:
        words += ", optional" + (" (empty: null)" if nullable else "")
    description = spec.get("description")
    return f"{words}. {description}" if description else words


def form_fields(schema: dict[str, Any], hidden: frozenset[str] | set[str] = ENVELOPE_FIELDS) -> list[FormField]:
    """The form's inputs, in the schema's property order.

    Parameters
    ----------
    schema : dict
        A JSON Schema of an object (``CustomerInput.model_json_schema()``).
    hidden : set of str, default ENVELOPE_FIELDS
        Properties left out (the envelope the API fills in, the label).

    Returns
    -------
    list of FormField
    """
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        if name in hidden:
            continue
        prop = _resolve(raw, defs)
        variants = [_resolve(v, defs) for v in prop.get("anyOf", [prop])]
        nullable = any(v.get("type") == "null" for v in variants)
        spec = next((v for v in variants if v.get("type") != "null"), {})
        spec = {**spec, **{k: v for k, v in prop.items() if k not in ("anyOf", "type")}}
        if "enum" in spec:
            kind = CHOICE
        else:
            kind = {"integer": INTEGER, "number": NUMBER, "boolean": BOOLEAN}.get(spec.get("type", ""), TEXT)
        examples = spec.get("examples")
        default = spec.get("default")
        if default is None and isinstance(examples, list) and examples:
            default = examples[0]
        fields.append(
            FormField(
                name=name,
                kind=kind,
                required=name in required,
                nullable=nullable,
                options=tuple(spec.get("enum", ())),
                default=default,
                hint=_hint(kind, spec, name in required, nullable),
            )
        )
    return fields


def customer_form_fields(
    hidden: set[str] | frozenset[str] = frozenset(), profile: DatasetProfile | None = None
) -> list[FormField]:
    """The inputs of the API's customer contract, envelope left out.

    Parameters
    ----------
    hidden : set of str, optional
        More fields to leave out (the dataset profile's label).
    profile : DatasetProfile, optional
        The served data set: the form is its :func:`~schemas.events.customer_input_model`;
        default Telco's (:class:`~schemas.http.CustomerInput`).

    Returns
    -------
    list of FormField
    """
    body = CustomerInput if profile is None else customer_input_model(profile)
    return form_fields(body.model_json_schema(), ENVELOPE_FIELDS | set(hidden))


def _typed(field: FormField, value: Any) -> Any:
    """A number typed into a text input as a JSON number; anything unreadable stays text for the API to name."""
    if field.kind not in (INTEGER, NUMBER) or not isinstance(value, str):
        return value
    text = value.strip()
    if _INTEGER_TEXT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return value


def build_customer(fields: list[FormField], values: dict[str, Any]) -> dict[str, Any]:
    """The request body for the form's values, unvalidated: the API applies the contract.

    Parameters
    ----------
    fields : list of FormField
    values : dict
        Field name -> the input's value (text, number, bool, an enum value, or None/"" when empty).

    Returns
    -------
    dict
        JSON-able. An empty input is sent as ``null`` when the field is nullable and left
        out otherwise (the API then says which required field is missing); numbers typed
        as text are sent as numbers.
    """
    doc: dict[str, Any] = {}
    for field in fields:
        value = values.get(field.name)
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            if field.nullable:
                doc[field.name] = None
            continue
        doc[field.name] = _typed(field, value)
    return doc


#: What a refused credential (401/403) tells the user to do when the form sends ``CHURN_API_KEY``.
HINT_SET_API_KEY = "set CHURN_API_KEY to a key with the predict scope (`churn api keys create --scope predict`)"
#: The same when the form sends the logged-in user's key.
HINT_LOG_IN = "log in with a key that has the predict scope (`churn api keys create --scope predict`)"


def post_customer(
    api_url: str,
    customer: dict[str, Any],
    timeout_s: float = 5.0,
    api_key: str = "",
    refused_hint: str = HINT_SET_API_KEY,
) -> dict[str, Any]:
    """POST one customer to the API and summarise the answer.

    Parameters
    ----------
    api_url : str
        The ``POST /api/predict`` endpoint.
    customer : dict
        From :func:`build_customer`.
    timeout_s : float, default 5.0
    api_key : str, default ""
        Sent as ``Authorization: Bearer <api_key>`` when given: the logged-in user's key, or
        ``CHURN_API_KEY`` with the login off (a key with the ``predict`` scope).
    refused_hint : str, default HINT_SET_API_KEY
        Appended to the API's own message when it refuses the credential (401 or 403).

    Returns
    -------
    dict
        ``{"ok": True, "prediction": schemas.http.Prediction}`` with the API's first
        prediction, or ``{"ok": False, "unreachable": bool, "message": str, "errors": [...],
        "fields": [...]}`` with the API's own per-field messages and the failing fields
        (an answer that is not a :class:`~schemas.http.PredictResponse` is an error too).
    """
    import httpx

    try:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        response = httpx.post(api_url, json=customer, headers=headers, timeout=timeout_s)
    except httpx.TransportError as exc:
        logger.info("prediction API unreachable url=%s error=%s", api_url, type(exc).__name__)
        return {
            "ok": False,
            "unreachable": True,
            "errors": [],
            "fields": [],
            "message": f"Prediction API unreachable at {api_url} ({type(exc).__name__}). "
            "Start it with `churn api`, then submit again.",
        }
    if response.status_code == 200:
        try:
            answer = PredictResponse.model_validate_json(response.content)
        except ValidationError as exc:
            return _failed(response.status_code, "not a prediction response", format_validation_error(exc).errors)
        if answer.predictions:
            return {"ok": True, "prediction": answer.predictions[0]}
        return _failed(response.status_code, "no prediction", [])
    try:
        error = ErrorResponse.model_validate_json(response.content)
    except ValidationError:
        return _failed(response.status_code, response.text[:200], [])
    if response.status_code in (401, 403):
        # The credential, not the customer, was refused: the API's message, then what to do.
        return _failed(response.status_code, f"{error.error}: {refused_hint}", error.errors)
    return _failed(response.status_code, error.error, error.errors, error.fields)


def _failed(status: int, summary: str, errors: list[str], fields: list[str] | None = None) -> dict[str, Any]:
    return {
        "ok": False,
        "unreachable": False,
        "errors": [str(e) for e in errors],
        "fields": [str(f) for f in fields or []],
        "message": f"The API answered {status}: {summary}",
    }
