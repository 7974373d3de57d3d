"""The score-a-customer form: the CustomerEvent fields, checked locally, then posted to the prediction API.

The dashboard never scores by itself: the API serves the champion the stream uses, so
the answer shown is the one the system gives. The form posts the API's request contract
(:class:`~schemas.http.CustomerInput`) and reads its response contract
(:class:`~schemas.http.PredictResponse`), both from :mod:`schemas.http`.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from schemas.events import format_validation_error
from schemas.http import CustomerInput, ErrorResponse, PredictResponse

logger = logging.getLogger(__name__)

#: Default prediction endpoint (``churn api``).
DEFAULT_API_URL = "http://127.0.0.1:8000/api/predict"

_YES_NO = ("Yes", "No")
_INTERNET_ADDON = ("No", "Yes", "No internet service")

#: Categorical fields with the values of the IBM Telco data set, in form order (first value = default).
CATEGORICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "gender": ("Female", "Male"),
    "multiple_lines": ("No", "Yes", "No phone service"),
    "internet_service": ("Fiber optic", "DSL", "No"),
    "online_security": _INTERNET_ADDON,
    "online_backup": _INTERNET_ADDON,
    "device_protection": _INTERNET_ADDON,
    "tech_support": _INTERNET_ADDON,
    "streaming_tv": _INTERNET_ADDON,
    "streaming_movies": _INTERNET_ADDON,
    "contract": ("Month-to-month", "One year", "Two year"),
    "payment_method": ("Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"),
}
#: Boolean fields, shown as Yes/No dropdowns, with their defaults.
BOOLEAN_FIELDS: dict[str, bool] = {
    "senior_citizen": False,
    "partner": False,
    "dependents": False,
    "phone_service": True,
    "paperless_billing": True,
}
#: Numeric fields with (default, min, step); ``total_charges_usd`` may be left empty (not billed yet).
NUMERIC_FIELDS: dict[str, tuple[float | int, float, float]] = {
    "tenure_months": (2, 0, 1),
    "monthly_charges_usd": (85.0, 0, 0.05),
    "total_charges_usd": (170.0, 0, 0.05),
}


def build_customer(values: dict[str, Any]) -> dict[str, Any]:
    """A customer (JSON-able dict) from form values, checked against the API's :class:`~schemas.http.CustomerInput`.

    Parameters
    ----------
    values : dict
        Field name -> form value; booleans as ``"Yes"``/``"No"``, numbers as numbers or None.

    Returns
    -------
    dict
        The validated event, ``event_id``/``event_time`` generated.

    Raises
    ------
    schemas.events.EventValidationError
        With ``"field: expected ..., got ..."`` lines.
    """
    doc: dict[str, Any] = {"customer_id": (values.get("customer_id") or "dashboard-form").strip()}
    for name in CATEGORICAL_FIELDS:
        doc[name] = values.get(name)
    for name in BOOLEAN_FIELDS:
        v = values.get(name)
        doc[name] = v == "Yes" if isinstance(v, str) else v
    for name in NUMERIC_FIELDS:
        doc[name] = values.get(name)
    if doc.get("total_charges_usd") in ("", None):
        doc["total_charges_usd"] = None
    try:
        event = CustomerInput.model_validate(doc)  # generates event_id and event_time
    except ValidationError as exc:
        raise format_validation_error(exc) from None
    return event.model_dump(mode="json", exclude={"churned"})


def post_customer(api_url: str, customer: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """POST one customer to the API and summarise the answer.

    Parameters
    ----------
    api_url : str
        The ``POST /api/predict`` endpoint.
    customer : dict
        From :func:`build_customer`.
    timeout_s : float, default 5.0

    Returns
    -------
    dict
        ``{"ok": True, "prediction": schemas.http.Prediction}`` with the API's first
        prediction, or ``{"ok": False, "unreachable": bool, "message": str, "errors": [...]}``
        (an answer that is not a :class:`~schemas.http.PredictResponse` is an error too).
    """
    import httpx

    try:
        response = httpx.post(api_url, json=customer, timeout=timeout_s)
    except httpx.TransportError as exc:
        logger.info("prediction API unreachable url=%s error=%s", api_url, type(exc).__name__)
        return {
            "ok": False,
            "unreachable": True,
            "errors": [],
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
    return _failed(response.status_code, error.error, error.errors)


def _failed(status: int, summary: str, errors: list[str]) -> dict[str, Any]:
    return {
        "ok": False,
        "unreachable": False,
        "errors": [str(e) for e in errors][:10],
        "message": f"The API answered {status}: {summary}",
    }
