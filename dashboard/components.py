"""Page pieces every tab uses: styles, KPI cards, figure helpers and number formatting.

The live tab redraws four figures every second, so :func:`live_figure` builds plain
dicts (no plotly validation); the models and data-quality tabs, refreshed every 10 s,
use :func:`small_figure` (a validated ``go.Figure``).
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from dash import dcc, html

#: Live figures: no mode bar (they redraw every second).
GRAPH_CONFIG: dcc.Graph.Config = {"displayModeBar": False}
#: Models and data-quality figures keep zoom and PNG export, shown on hover only (over the title otherwise).
TOOL_CONFIG: dcc.Graph.Config = {"displayModeBar": "hover", "displaylogo": False}
#: A wrapping row of cards or figures.
ROW: dict[str, Any] = {"display": "flex", "gap": "12px", "flexWrap": "wrap", "margin": "10px 0"}
#: A figure's share of a :data:`ROW`.
HALF: dict[str, Any] = {"flex": "1", "minWidth": "380px"}
#: Small grey explanatory text.
NOTE: dict[str, Any] = {"fontSize": "12px", "color": "#666"}
_CARD: dict[str, Any] = {
    "border": "1px solid #ddd",
    "borderRadius": "6px",
    "padding": "8px 14px",
    "minWidth": "150px",
    "background": "#fafafa",
}


def card(label: str, value_id: str) -> html.Div:
    """A KPI card: a small label over a large value whose element id is ``value_id``.

    Parameters
    ----------
    label : str
        What the number is, with its unit.
    value_id : str
        Id of the value element, the output of a callback.

    Returns
    -------
    dash.html.Div
    """
    return html.Div(
        [
            html.Div(label, style={"fontSize": "12px", "color": "#666"}),
            html.Div("–", id=value_id, style={"fontSize": "22px", "fontWeight": "bold"}),
        ],
        style=_CARD,
    )


def format_number(value: Any, unit: str = "") -> str:
    """A number as the page shows it: counts as integers, other values to 4 significant digits.

    Integral values (``95`` or ``95.0``, e.g. a confusion-matrix count logged as an MLflow
    float) print as integers with thousands separators; magnitudes of 1,000 and more as
    rounded integers; anything else with 4 significant digits (``0.8421``, ``12.35``).

    Parameters
    ----------
    value : int, float or None
    unit : str, default ""
        Appended as is (``" ms"``).

    Returns
    -------
    str
        ``"n/a"`` for None or a non-finite number.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a" if value is None or isinstance(value, float) else str(value)
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{round(value):,}{unit}"
    return f"{value:.4g}{unit}"


def small_figure(title: str, height: int = 260) -> go.Figure:
    """An empty ``plotly_white`` figure with the page's margins, keeping zoom across refreshes."""
    fig = go.Figure()
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        uirevision="keep",
        template="plotly_white",
    )
    return fig


_TEMPLATE: dict[str, Any] | None = None


def _template() -> dict[str, Any]:
    """The ``plotly_white`` template as plain JSON-able dicts, built once.

    ``go.Figure(template=...)`` deep-copies and re-validates the template on every call
    (about 80 ms per figure); the live tab redraws four figures every second.
    """
    global _TEMPLATE
    if _TEMPLATE is None:
        import plotly.io as pio

        _TEMPLATE = pio.templates["plotly_white"].to_plotly_json()
    return _TEMPLATE


def live_figure(title: str, traces: list[dict[str, Any]], height: int = 260, **layout: Any) -> dict[str, Any]:
    """A figure as a plain dict (no plotly validation): the live tab's hot path.

    Parameters
    ----------
    title : str
    traces : list of dict
        Plotly traces as dicts (``{"type": "scatter", "x": ..., "y": ...}``).
    height : int, default 260
        Pixels.
    **layout
        Extra layout keys (``xaxis``, ``annotations``, ...).

    Returns
    -------
    dict
        ``{"data": traces, "layout": {...}}``, ready for ``dcc.Graph.figure``.
    """
    return {
        "data": traces,
        "layout": {
            "title": {"text": title},
            "height": height,
            "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
            "uirevision": "keep",
            "template": _template(),
            **layout,
        },
    }
