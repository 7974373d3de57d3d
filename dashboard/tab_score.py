"""The Score a customer tab: a form generated from the customer contract, posted to the prediction API.

Each :class:`~dashboard.score_form.FormField` becomes an input with id ``form-<name>``
and an error line ``form-error-<name>``; the API's 422 messages are shown as it wrote
them, in a list and under each failing field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from dashboard.components import ROW
from dashboard.score_form import (
    BOOLEAN,
    CHOICE,
    HINT_SET_API_KEY,
    INTEGER,
    FormField,
    build_customer,
    post_customer,
)
from schemas.http import Prediction

_FIELD_STYLE = {"display": "flex", "flexDirection": "column", "width": "230px"}
_LABEL_STYLE = {"fontSize": "12px", "color": "#444"}
_ERROR_STYLE = {"fontSize": "11px", "color": "#b00", "minHeight": "14px"}


def _control(field: FormField) -> Any:
    cid = f"form-{field.name}"
    if field.kind == BOOLEAN:
        options: list[dict[str, Any]] = [{"label": "Yes", "value": True}, {"label": "No", "value": False}]
        if field.nullable:  # "" is sent as null
            options.append({"label": "not given", "value": ""})
        return dcc.RadioItems(
            id=cid,
            options=options,
            value=field.default,
            inline=True,
            inputStyle={"marginRight": "4px"},
            labelStyle={"marginRight": "14px"},
            persistence=True,
            persistence_type="session",
        )
    if field.kind == CHOICE:
        return dcc.Dropdown(
            id=cid,
            options=list(field.options),
            value=field.default,
            clearable=not field.required,
            placeholder=field.hint,
            persistence=True,
            persistence_type="session",
        )
    # Numbers are typed as text: the browser's number input turns "-5" under min=0 or "2.5"
    # at step=1 into an empty value, and the API would answer "got None".
    return dcc.Input(
        id=cid,
        type="text",
        inputMode="numeric" if field.kind == INTEGER else None,
        value="" if field.default is None else str(field.default),
        placeholder=field.hint,
        debounce=False,
        persistence=True,
        persistence_type="session",
    )


def layout(api_url: str, fields: list[FormField]) -> html.Div:
    """The form: one input per contract field, in the contract's order.

    Parameters
    ----------
    api_url : str
        Shown on the page: where the form posts.
    fields : list of FormField
        From :func:`~dashboard.score_form.customer_form_fields`.

    Returns
    -------
    dash.html.Div
    """
    inputs = [
        html.Div(
            [
                html.Label(
                    f.name + ("" if f.required else " (optional)"), htmlFor=f"form-{f.name}", style=_LABEL_STYLE
                ),
                html.Div(_control(f), title=f.hint),
                html.Div(id=f"form-error-{f.name}", style=_ERROR_STYLE),
            ],
            style=_FIELD_STYLE,
        )
        for f in fields
    ]
    return html.Div(
        [
            html.P(
                [
                    "Posts the customer to ",
                    html.Code(api_url),
                    " and shows the champion's answer. The fields are the customer contract's; "
                    "the API checks them and its messages are shown as it wrote them.",
                ]
            ),
            html.Div(inputs, style={**ROW, "gap": "6px 14px"}),
            html.Button(
                "Score customer",
                id="form-submit",
                n_clicks=0,
                style={"padding": "8px 18px", "fontSize": "15px", "marginTop": "8px"},
            ),
            dcc.Loading(html.Div(id="score-result", style={"marginTop": "14px"})),
        ]
    )


def _field_errors(fields: list[FormField], errors: list[str]) -> list[str]:
    """Each field's messages from the API's ``"field: message"`` lines (empty for fields without)."""
    out = []
    for f in fields:
        mine = [e[len(f.name) + 1 :].strip() for e in errors if e.startswith(f"{f.name}:")]
        out.append("; ".join(mine))
    return out


def score_output(
    api_url: str,
    fields: list[FormField],
    values: dict[str, Any],
    api_key: str = "",
    refused_hint: str = HINT_SET_API_KEY,
) -> tuple[html.Div, list[str]]:
    """Post the form and render the answer, or the API's own error messages.

    Parameters
    ----------
    api_url : str
    fields : list of FormField
    values : dict
        Field name -> input value.
    api_key : str, default ""
        The API key the form acts with (the logged-in user's, or ``CHURN_API_KEY``).
    refused_hint : str, default HINT_SET_API_KEY
        What to do when the API refuses that key (401/403).

    Returns
    -------
    tuple
        The answer (or error) block, and one message per field (empty when it passed).
    """
    answer = post_customer(api_url, build_customer(fields, values), api_key=api_key, refused_hint=refused_hint)
    if not answer["ok"]:
        block = html.Div(
            [html.B(answer["message"]), html.Ul([html.Li(e) for e in answer["errors"]])],
            id="score-unreachable" if answer["unreachable"] else "score-error",
            style={"color": "#b00"},
        )
        return block, _field_errors(fields, answer["errors"])
    p: Prediction = answer["prediction"]
    value = p.predicted_value_usd
    block = html.Div(
        [
            html.Div(
                [
                    html.Span("churn probability ", style={"color": "#666"}),
                    html.B(f"{p.churn_probability:.3f}", id="score-probability"),
                ],
                style={"fontSize": "22px"},
            ),
            html.Div(
                [
                    html.Span("label ", style={"color": "#666"}),
                    html.B("CHURN (alert)" if p.churn_label else "stay", id="score-label"),
                    f" — threshold {p.threshold:.3f}, {p.model_name} v{p.model_version}",
                ]
            ),
            html.Div(f"predicted customer value: {value:,.2f} USD") if value is not None else None,
            html.Div(
                [
                    html.Span("reasons: ", style={"color": "#666"}),
                    html.Ul([html.Li(f"{r.feature} (+{r.contribution:.3f})") for r in p.reasons])
                    if p.reasons
                    else html.Span("none pushing the score up"),
                ],
                id="score-reasons",
            ),
        ],
        id="score-answer",
    )
    return block, ["" for _ in fields]


def register(
    app: dash.Dash,
    api_url: str,
    fields: list[FormField],
    credential: Callable[[], str] = lambda: "",
    refused_hint: str = HINT_SET_API_KEY,
) -> None:
    """Add the form's submit callback.

    Parameters
    ----------
    app : dash.Dash
    api_url : str
    fields : list of FormField
        The same list :func:`layout` was built from.
    credential : callable, default no key
        Called in each submit's request: the API key to send (the logged-in user's, kept
        server-side in the session store, or ``CHURN_API_KEY`` with the login off).
    refused_hint : str, default HINT_SET_API_KEY
        What to do when the API refuses that key.
    """
    names = [f.name for f in fields]

    @app.callback(
        [Output("score-result", "children"), *[Output(f"form-error-{n}", "children") for n in names]],
        Input("form-submit", "n_clicks"),
        [State(f"form-{n}", "value") for n in names],
        prevent_initial_call=True,
    )
    def _score(_clicks, *values):
        block, errors = score_output(api_url, fields, dict(zip(names, values, strict=True)), credential(), refused_hint)
        return [block, *errors]
