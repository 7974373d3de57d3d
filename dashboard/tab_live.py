"""The Live tab: KPI cards, rate/latency/lag/score-distribution figures, alert and score grids.

Refreshed every second from one :class:`~dashboard.buffers.LiveSnapshot`; the figures
are plain dicts (building them as plotly ``go.Figure`` objects cost ~200 ms a second).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dash
import numpy as np
from dash import Input, Output, dcc, html

from dashboard import grids
from dashboard.buffers import LiveSnapshot
from dashboard.components import GRAPH_CONFIG, HALF, NOTE, ROW, card, live_figure
from dashboard.live import LiveFeed
from schemas.events import REASONS_FIELD, VALUE_AT_RISK_FIELD

#: Milliseconds between refreshes of the live tab.
LIVE_REFRESH_MS = 1000

_SCORE_COLUMNS = [
    grids.column("customer_id", "customer", minWidth=120),
    grids.column("churn_probability", "probability", grids.PROBABILITY),
    grids.column(
        "churn_label", "label", cellDataType="text", valueFormatter={"function": "params.value ? 'churn' : 'stay'"}
    ),
    grids.column("model_version", "model version"),
    grids.column("scored_at", "scored at (UTC)", minWidth=130),
    grids.column("latency_ms", "latency ms", grids.MILLISECONDS),
]
_ALERT_COLUMNS = [
    grids.column("customer_id", "customer", minWidth=120),
    grids.column("churn_probability", "probability", grids.PROBABILITY),
    grids.column("threshold", "threshold", grids.PROBABILITY),
    grids.column(REASONS_FIELD, "reasons", minWidth=460, flex=1, **grids.WRAPPED),
    grids.column(VALUE_AT_RISK_FIELD, "value at risk (USD)", grids.USD),
    grids.column("model_version", "model version"),
    grids.column("scored_at", "scored at (UTC)", minWidth=130),
]


def layout() -> html.Div:
    """The Live tab's components (filled by :func:`register`'s callback)."""
    return html.Div(
        [
            html.Div(
                [
                    card("scores received", "kpi-scores"),
                    card("alerts received", "kpi-alerts"),
                    card("events/s (5 s)", "kpi-rate"),
                    card("latency p50 / p95", "kpi-latency"),
                    card("consumer lag (customers)", "kpi-lag"),
                    card("feed", "kpi-status"),
                ],
                style=ROW,
            ),
            html.Div(id="feed-note", style=NOTE),
            html.Div(id="lag-note", style={"color": "#a15c00", "fontSize": "13px"}),
            html.Div(
                [
                    dcc.Graph(id="graph-rate", config=GRAPH_CONFIG, style=HALF),
                    dcc.Graph(id="graph-latency", config=GRAPH_CONFIG, style=HALF),
                ],
                style=ROW,
            ),
            html.Div(
                [
                    dcc.Graph(id="graph-lag", config=GRAPH_CONFIG, style=HALF),
                    dcc.Graph(id="graph-distribution", config=GRAPH_CONFIG, style=HALF),
                ],
                style=ROW,
            ),
            html.H3("Alerts (churn-alerts)"),
            grids.grid("alerts-table", _ALERT_COLUMNS, page_size=10, columnSize="responsiveSizeToFit"),
            html.H3("Latest scores (churn-scores)"),
            grids.grid("scores-table", _SCORE_COLUMNS, sortable=False, page_size=10, columnSize="responsiveSizeToFit"),
        ]
    )


def _iso_times(ts: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, tz=UTC).isoformat() for t in ts]


def feed_note(snap: LiveSnapshot) -> str:
    """What the counters count: records produced since the dashboard started, and any it skipped.

    Parameters
    ----------
    snap : LiveSnapshot

    Returns
    -------
    str
    """
    since = datetime.fromtimestamp(snap.started_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    note = f"Counting records produced since the dashboard started ({since}); nothing is replayed."
    if snap.skipped_before_start:
        note += f" {snap.skipped_before_start:,} older records the broker served at start were skipped."
    return note


def live_outputs(snap: LiveSnapshot) -> tuple:
    """Everything the live tab shows, from one snapshot (no I/O).

    The figures are plain dicts: this runs every second and must stay well inside that.

    Parameters
    ----------
    snap : LiveSnapshot

    Returns
    -------
    tuple
        In the order of :func:`register`'s outputs.
    """
    lag_text = "n/a" if snap.lag is None else f"{snap.lag:,}"
    times = _iso_times(snap.times)

    rate = live_figure(
        "Scores per second",
        [
            {
                "type": "scatter",
                "x": times,
                "y": snap.events_per_s,
                "mode": "lines",
                "name": "events/s",
                "line": {"shape": "hv"},
            }
        ],
    )
    latency = live_figure(
        "End-to-end latency, ms (scored_at − event_time)",
        [
            {
                "type": "scatter",
                "x": times,
                "y": snap.latency_mean_ms,
                "mode": "lines+markers",
                "name": "mean",
                "connectgaps": False,
                "marker": {"size": 3},
            },
            {
                "type": "scatter",
                "x": times,
                "y": snap.latency_max_ms,
                "mode": "lines",
                "name": "max",
                "connectgaps": False,
                "line": {"dash": "dot"},
            },
        ],
    )
    lag_layout: dict[str, Any] = {}
    if snap.lag_note and snap.lag is None:
        lag_layout["annotations"] = [
            {"text": snap.lag_note, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}
        ]
    lag = live_figure(
        "Consumer lag on customers (end offsets − committed offsets)",
        [
            {
                "type": "scatter",
                "x": _iso_times(snap.lag_times),
                "y": snap.lag_values,
                "mode": "lines+markers",
                "name": "lag",
                "marker": {"size": 3},
            }
        ],
        **lag_layout,
    )
    # Binned here: 20 counts travel to the browser every second instead of the last 2,000 scores.
    counts, edges = np.histogram(np.asarray(snap.probabilities, dtype=np.float64), bins=20, range=(0.0, 1.0))
    dist = live_figure(
        f"Score distribution (last {len(snap.probabilities):,} scores)",
        [
            {
                "type": "bar",
                "x": ((edges[:-1] + edges[1:]) / 2).round(3).tolist(),
                "y": counts.tolist(),
                "width": 0.05,
                "name": "scores",
            }
        ],
        xaxis={"range": [0, 1], "title": {"text": "churn probability"}},
        bargap=0.02,
    )
    p50 = "n/a" if snap.latency_p50_ms is None else f"{snap.latency_p50_ms:,.0f} ms"
    p95 = "n/a" if snap.latency_p95_ms is None else f"{snap.latency_p95_ms:,.0f} ms"
    return (
        f"{snap.scores_total:,}",
        f"{snap.alerts_total:,}",
        f"{snap.rate_per_s:,.1f}",
        f"{p50} / {p95}",
        lag_text,
        snap.status,
        (snap.lag_note or "") if snap.lag is None else "",
        rate,
        latency,
        lag,
        dist,
        snap.alerts,
        snap.scores,
        feed_note(snap),
    )


def register(app: dash.Dash, feed: LiveFeed) -> None:
    """Add the live tab's callback: one snapshot a second, only while the tab is shown.

    Parameters
    ----------
    app : dash.Dash
    feed : LiveFeed
        Its buffers are read; nothing else.
    """

    @app.callback(
        [
            Output("kpi-scores", "children"),
            Output("kpi-alerts", "children"),
            Output("kpi-rate", "children"),
            Output("kpi-latency", "children"),
            Output("kpi-lag", "children"),
            Output("kpi-status", "children"),
            Output("lag-note", "children"),
            Output("graph-rate", "figure"),
            Output("graph-latency", "figure"),
            Output("graph-lag", "figure"),
            Output("graph-distribution", "figure"),
            Output("alerts-table", "rowData"),
            Output("scores-table", "rowData"),
            Output("feed-note", "children"),
        ],
        Input("tick-live", "n_intervals"),
        Input("tabs", "value"),
    )
    def _live(_n, tab):
        if tab != "live":
            raise dash.exceptions.PreventUpdate
        return live_outputs(feed.buffers.snapshot())
