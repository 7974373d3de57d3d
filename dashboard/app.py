"""The Dash app: Live, Models, Data quality and Score-a-customer tabs.

``create_app(settings, api_url=...)`` builds the app and starts the one background
Kafka consumer (:class:`~dashboard.live.LiveFeed`); ``run_dashboard`` serves it.
Callbacks read only snapshots: the live buffers (under their lock) and the cached
MLflow views of :class:`~dashboard.tracking.ModelsReader`. The page refreshes its live
tab every second and its model and data-quality tabs every 10 seconds, and only the
visible tab does any work.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from dash.dash_table.DataTable import DataTable

from dashboard.live import LiveBuffers, LiveFeed, LiveSnapshot
from dashboard.score_form import (
    BOOLEAN_FIELDS,
    CATEGORICAL_FIELDS,
    DEFAULT_API_URL,
    NUMERIC_FIELDS,
    build_customer,
    post_customer,
)
from dashboard.tracking import LEADERBOARD_METRICS, ModelsReader, psi_rows
from schemas.events import VALUE_AT_RISK_FIELD, EventValidationError
from schemas.http import Prediction
from schemas.registry import CHALLENGER, CHAMPION, CLASSIFIER_NAME

logger = logging.getLogger(__name__)

LIVE_REFRESH_MS = 1000
MODELS_REFRESH_MS = 10_000

_GRAPH_CONFIG: dcc.Graph.Config = {"displayModeBar": False}
#: Models and data-quality figures keep zoom and PNG export, shown on hover only (over the title otherwise).
_TOOL_CONFIG: dcc.Graph.Config = {"displayModeBar": "hover", "displaylogo": False}
_CARD = {
    "border": "1px solid #ddd",
    "borderRadius": "6px",
    "padding": "8px 14px",
    "minWidth": "150px",
    "background": "#fafafa",
}
_ROW = {"display": "flex", "gap": "12px", "flexWrap": "wrap", "margin": "10px 0"}
_TABLE_CELL = {
    "fontFamily": "sans-serif",
    "fontSize": "13px",
    "padding": "4px 8px",
    "textAlign": "left",
    "maxWidth": "420px",
    "whiteSpace": "normal",
}


def _table(**props: Any) -> DataTable:
    """A ``DataTable`` in the page's table style; ``props`` are DataTable's (id, data, columns, ...)."""
    return DataTable(
        style_table={"overflowX": "auto"},
        style_cell=_TABLE_CELL,
        style_header={"fontWeight": "bold", "background": "#f0f0f0"},
        **props,
    )


def _card(label: str, value_id: str) -> html.Div:
    return html.Div(
        [
            html.Div(label, style={"fontSize": "12px", "color": "#666"}),
            html.Div("–", id=value_id, style={"fontSize": "22px", "fontWeight": "bold"}),
        ],
        style=_CARD,
    )


def _small_figure(title: str, height: int = 260) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        uirevision="keep",
        template="plotly_white",
    )
    return fig


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


# ------------------------------------------------------------------ layout
def _live_tab() -> html.Div:
    score_cols = [
        ("customer_id", "customer", "text"),
        ("churn_probability", "probability", "numeric"),
        ("churn_label", "label", "any"),
        ("model_version", "model version", "text"),
        ("scored_at", "scored at (UTC)", "text"),
        ("latency_ms", "latency ms", "numeric"),
    ]
    alert_cols = [
        ("customer_id", "customer", "text"),
        ("churn_probability", "probability", "numeric"),
        ("threshold", "threshold", "numeric"),
        ("reasons", "reasons", "text"),
        (VALUE_AT_RISK_FIELD, "value at risk (USD)", "numeric"),
        ("model_version", "model version", "text"),
        ("scored_at", "scored at (UTC)", "text"),
    ]
    return html.Div(
        [
            html.Div(
                [
                    _card("scores received", "kpi-scores"),
                    _card("alerts received", "kpi-alerts"),
                    _card("events/s (5 s)", "kpi-rate"),
                    _card("latency p50 / p95", "kpi-latency"),
                    _card("consumer lag (customers)", "kpi-lag"),
                    _card("feed", "kpi-status"),
                ],
                style=_ROW,
            ),
            html.Div(id="lag-note", style={"color": "#a15c00", "fontSize": "13px"}),
            html.Div(
                [
                    dcc.Graph(id="graph-rate", config=_GRAPH_CONFIG, style={"flex": "1", "minWidth": "380px"}),
                    dcc.Graph(id="graph-latency", config=_GRAPH_CONFIG, style={"flex": "1", "minWidth": "380px"}),
                ],
                style=_ROW,
            ),
            html.Div(
                [
                    dcc.Graph(id="graph-lag", config=_GRAPH_CONFIG, style={"flex": "1", "minWidth": "380px"}),
                    dcc.Graph(id="graph-distribution", config=_GRAPH_CONFIG, style={"flex": "1", "minWidth": "380px"}),
                ],
                style=_ROW,
            ),
            html.H3("Alerts (churn-alerts)"),
            _table(
                id="alerts-table",
                columns=[{"id": c, "name": n, "type": t} for c, n, t in alert_cols],
                data=[],
                sort_action="native",
                page_size=15,
            ),
            html.H3("Latest scores (churn-scores)"),
            _table(
                id="scores-table",
                columns=[{"id": c, "name": n, "type": t} for c, n, t in score_cols],
                data=[],
                page_size=15,
            ),
        ]
    )


def _models_tab() -> html.Div:
    return html.Div(
        [
            html.Div(id="cycle-info", style={"margin": "10px 0"}),
            html.H3("Leaderboard of the latest cycle"),
            _table(
                id="leaderboard-table",
                data=[],
                sort_action="native",
                style_data_conditional=[
                    {
                        "if": {"filter_query": f'{{alias}} contains "{CHAMPION}"'},
                        "backgroundColor": "#e3f4e1",
                        "fontWeight": "bold",
                    },
                    {"if": {"filter_query": f'{{alias}} contains "{CHALLENGER}"'}, "backgroundColor": "#fff4d6"},
                ],
            ),
            html.H3(f"Champion evaluation ({CLASSIFIER_NAME})"),
            html.Div(id="champion-info"),
            html.Div(id="champion-curves", style=_ROW),
            html.H3("Version history"),
            html.Div(
                "Registration times come from the registry; MLflow keeps no history of alias moves, so the "
                "aliases shown are the current ones.",
                style={"fontSize": "12px", "color": "#666"},
            ),
            _table(id="versions-table", data=[], sort_action="native", page_size=20),
        ]
    )


def _quality_tab() -> html.Div:
    return html.Div(
        [html.Div(id="dq-summary", style={"margin": "10px 0"}), html.Div(id="dq-checks"), html.Div(id="dq-psi")]
    )


def _form_field(name: str, control) -> html.Div:
    return html.Div(
        [html.Label(name, htmlFor=f"form-{name}", style={"fontSize": "12px", "color": "#444"}), control],
        style={"display": "flex", "flexDirection": "column", "width": "220px"},
    )


def _score_tab(api_url: str) -> html.Div:
    fields = [_form_field("customer_id", dcc.Input(id="form-customer_id", type="text", value="dashboard-form"))]
    for name, (default, lo, step) in NUMERIC_FIELDS.items():
        fields.append(_form_field(name, dcc.Input(id=f"form-{name}", type="number", value=default, min=lo, step=step)))
    for name, default in BOOLEAN_FIELDS.items():
        fields.append(
            _form_field(
                name,
                dcc.Dropdown(
                    id=f"form-{name}", options=["Yes", "No"], value="Yes" if default else "No", clearable=False
                ),
            )
        )
    for name, values in CATEGORICAL_FIELDS.items():
        fields.append(
            _form_field(name, dcc.Dropdown(id=f"form-{name}", options=list(values), value=values[0], clearable=False))
        )
    return html.Div(
        [
            html.P(["Posts the customer to ", html.Code(api_url), " and shows the champion's answer."]),
            html.Div(fields, style={**_ROW, "gap": "14px"}),
            html.Button(
                "Score customer",
                id="form-submit",
                n_clicks=0,
                style={"padding": "8px 18px", "fontSize": "15px", "marginTop": "8px"},
            ),
            dcc.Loading(html.Div(id="score-result", style={"marginTop": "14px"})),
        ]
    )


FORM_FIELDS = ["customer_id", *NUMERIC_FIELDS, *BOOLEAN_FIELDS, *CATEGORICAL_FIELDS]


# --------------------------------------------------------------- rendering
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


def _live_figure(title: str, traces: list[dict[str, Any]], height: int = 260, **layout: Any) -> dict[str, Any]:
    """A figure as a plain dict (no plotly validation): the live tab's hot path."""
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


def _iso_times(ts: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, tz=UTC).isoformat() for t in ts]


def live_outputs(snap: LiveSnapshot) -> tuple:
    """Everything the live tab shows, from one snapshot (no I/O).

    The figures are plain dicts: this runs every second and must stay well inside that.
    """
    lag_text = "n/a" if snap.lag is None else f"{snap.lag:,}"
    times = _iso_times(snap.times)

    rate = _live_figure(
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
    latency = _live_figure(
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
    lag = _live_figure(
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
    dist = _live_figure(
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
    return (
        f"{snap.scores_total:,}",
        f"{snap.alerts_total:,}",
        f"{snap.rate_per_s:,.1f}",
        f"{_fmt(snap.latency_p50_ms, ' ms', 0)} / {_fmt(snap.latency_p95_ms, ' ms', 0)}",
        lag_text,
        snap.status,
        (snap.lag_note or "") if snap.lag is None else "",
        rate,
        latency,
        lag,
        dist,
        snap.alerts,
        snap.scores,
    )


def _columns(rows: list[dict[str, Any]], first: list[str]) -> list[dict[str, Any]]:
    keys = [k for k in first if any(k in r for r in rows)]
    keys += [k for r in rows for k in r if k not in keys and k != "run_id"]
    seen, cols = set(), []
    for k in keys:
        if k not in seen:
            seen.add(k)
            numeric = any(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for r in rows)
            cols.append({"id": k, "name": k, "type": "numeric" if numeric else "text"})
    return cols


def _curve_figures(ev: dict[str, Any]) -> list:
    figs = []
    roc = ev.get("roc")
    if isinstance(roc, dict) and roc.get("fpr") and roc.get("tpr"):
        f = _small_figure("ROC curve", 320)
        f.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", name="ROC"))
        f.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
        f.update_xaxes(title="false positive rate")
        f.update_yaxes(title="true positive rate")
        figs.append(dcc.Graph(id="graph-roc", figure=f, config=_TOOL_CONFIG, style={"flex": "1", "minWidth": "320px"}))
    pr = ev.get("pr")
    if isinstance(pr, dict) and pr.get("precision") and pr.get("recall"):
        f = _small_figure("Precision–recall curve", 320)
        f.add_trace(go.Scatter(x=pr["recall"], y=pr["precision"], mode="lines", name="PR"))
        f.update_xaxes(title="recall")
        f.update_yaxes(title="precision")
        figs.append(dcc.Graph(id="graph-pr", figure=f, config=_TOOL_CONFIG, style={"flex": "1", "minWidth": "320px"}))
    cm = ev.get("confusion")
    matrix = cm.get("matrix") if isinstance(cm, dict) else cm
    m = ev.get("metrics", {})
    if matrix is None and all(k in m for k in ("tn", "fp", "fn", "tp")):
        matrix = [[m["tn"], m["fp"]], [m["fn"], m["tp"]]]
    if isinstance(matrix, list) and len(matrix) == 2:
        f = _small_figure("Confusion matrix, hold-out", 320)
        f.add_trace(
            go.Heatmap(
                z=matrix,
                x=["predicted stay", "predicted churn"],
                y=["stayed", "churned"],
                text=matrix,
                texttemplate="%{text}",
                colorscale="Blues",
                showscale=False,
            )
        )
        figs.append(
            dcc.Graph(id="graph-confusion", figure=f, config=_TOOL_CONFIG, style={"flex": "1", "minWidth": "320px"})
        )
    return figs


def models_outputs(reader: ModelsReader) -> tuple:
    """Leaderboard, champion evaluation and version history from the cached MLflow views."""
    try:
        cycle = reader.latest_cycle()
        board = reader.leaderboard()
        versions = reader.versions()
        ev = reader.champion_evaluation()
    except Exception as exc:  # noqa: BLE001 - MLflow down: say so on the page, keep serving
        logger.warning("mlflow read failed error=%s", f"{type(exc).__name__}: {exc}"[:200])
        msg = html.Div(f"MLflow unavailable ({type(exc).__name__}); retrying every 10 s.", style={"color": "#b00"})
        return msg, [], [], html.Div(), [], [], []
    if cycle is None:
        info = html.Div("No cycle yet: run `churn batch run`.")
    else:
        info = html.Div(
            [
                html.B(cycle["name"]),
                f" — status {cycle['status']}, started {cycle['started']}",
                f", ended {cycle['ended']}" if cycle["ended"] else "",
                f" — {len(board)} models",
            ]
        )
    board_cols = _columns(board, ["model", "task", "alias", "version", *LEADERBOARD_METRICS])
    if not ev:
        champ = html.Div(f"No {CLASSIFIER_NAME} champion yet.")
        curves: list = []
    else:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(ev["metrics"].items()))
        curves = _curve_figures(ev)
        champ = html.Div(
            [
                html.Div([html.B(f"{CLASSIFIER_NAME} v{ev['version']}"), f" ({ev['model']}): {metrics}"]),
                html.Div(
                    ""
                    if curves
                    else "This champion's run logged no ROC/PR curve or confusion-matrix "
                    "artifacts; showing its metrics only.",
                    id="curves-note",
                    style={"fontSize": "13px", "color": "#666"},
                ),
            ]
        )
    version_cols = _columns(
        versions, ["registered_model", "version", "model", "aliases", "metric", "value", "registered_at", "updated_at"]
    )
    return info, board_cols, board, champ, curves, version_cols, versions


def quality_outputs(reader: ModelsReader) -> tuple:
    """The latest cycle's data-quality gate report (status, checks, PSI per feature), or "no report yet"."""
    try:
        report = reader.dq_report()
    except Exception as exc:  # noqa: BLE001 - MLflow down
        return html.Div(f"MLflow unavailable ({type(exc).__name__}).", style={"color": "#b00"}), None, None
    if report is None:
        return (
            html.Div("No data-quality report yet: the latest cycle logged no dq_report.json.", id="dq-none"),
            None,
            None,
        )
    status = str(report.get("status", "?")).upper()
    color = {"PASS": "#1e7d32", "WARN": "#a15c00", "FAIL": "#b00"}.get(status, "#333")
    summary = html.Div(
        [
            html.B(f"Gate: {status}", style={"color": color}),
            *[
                html.Span(f" · {k} {report[k]}")
                for k in ("dataset", "cycle_id", "source", "rows", "reference_cycle", "created_at")
                if report.get(k) is not None
            ],
        ]
    )
    checks = [c for c in report.get("checks") or [] if isinstance(c, dict)]
    check_view = None
    if checks:
        rows = [
            {"check": c.get("name"), "status": str(c.get("status", "")).upper(), "finding": c.get("message")}
            for c in checks
        ]
        check_view = html.Div(
            [
                html.H3("Checks"),
                _table(
                    id="dq-checks-table",
                    data=rows,
                    columns=[{"id": k, "name": k} for k in ("check", "status", "finding")],
                    sort_action="native",
                    style_data_conditional=[
                        {"if": {"filter_query": '{status} = "FAIL"'}, "color": "#b00"},
                        {"if": {"filter_query": '{status} = "WARN"'}, "color": "#a15c00"},
                    ],
                ),
            ]
        )
    psi = psi_rows(report)
    if not psi:
        return (
            summary,
            check_view,
            html.Div("No per-feature drift in this report (first cycle: nothing to compare with yet).", id="dq-no-psi"),
        )
    fig = _small_figure("Per-feature drift vs the reference cycle (PSI)", 360)
    colors = {"fail": "#c0392b", "warn": "#e67e22"}
    fig.add_trace(
        go.Bar(
            x=[r["feature"] for r in psi],
            y=[r["psi"] for r in psi],
            name="PSI",
            marker_color=[colors.get(r["status"], "#2e86c1") for r in psi],
        )
    )
    for key, label in (("warn_at", "warn"), ("fail_at", "fail")):
        t = psi[0][key]
        if isinstance(t, (int, float)):
            fig.add_hline(y=t, line_dash="dash", annotation_text=f"{label} at {t:g}", line_color=colors[label])
    psi_view = html.Div(
        [
            html.H3("Drift (PSI per feature)"),
            dcc.Graph(id="graph-psi", figure=fig, config=_TOOL_CONFIG),
            _table(
                id="dq-psi-table",
                data=psi,
                columns=_columns(psi, []),
                sort_action="native",
                page_size=25,
            ),
        ]
    )
    return summary, check_view, psi_view


def score_output(api_url: str, values: dict[str, Any]) -> html.Div:
    """Validate the form, post it, and render the answer or a clear error."""
    try:
        customer = build_customer(values)
    except EventValidationError as err:
        return html.Div(
            [html.B("Not a valid customer:"), html.Ul([html.Li(e) for e in err.errors])],
            id="score-error",
            style={"color": "#b00"},
        )
    answer = post_customer(api_url, customer)
    if not answer["ok"]:
        return html.Div(
            [html.B(answer["message"]), html.Ul([html.Li(e) for e in answer["errors"]])],
            id="score-unreachable" if answer["unreachable"] else "score-error",
            style={"color": "#b00"},
        )
    p: Prediction = answer["prediction"]
    value = p.predicted_value_usd
    return html.Div(
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


# ------------------------------------------------------------------ the app
def _time_callbacks(server) -> None:
    """Add ``Server-Timing: callback;dur=<ms>`` to every callback response.

    The time a callback request spent in the server (decoding, the callback, encoding),
    readable by any HTTP client; ``churn bench dashboard`` compares it with the refresh interval.
    """
    import flask

    @server.before_request
    def _start() -> None:
        flask.g.churn_t0 = time.perf_counter()

    @server.after_request
    def _stop(response):  # flask's hook signature
        t0 = flask.g.get("churn_t0")
        if t0 is not None and flask.request.path.endswith("_dash-update-component"):
            response.headers["Server-Timing"] = f"callback;dur={(time.perf_counter() - t0) * 1e3:.3f}"
        return response


class DashboardApp(dash.Dash):
    """The Dash app with the two things its owner stops or inspects.

    Attributes
    ----------
    live_feed : LiveFeed
        The background Kafka consumer (``app.live_feed.stop()`` ends it).
    models_reader : ModelsReader
        The cached MLflow views the models and data-quality tabs read.
    """

    live_feed: LiveFeed
    models_reader: ModelsReader


def create_app(
    settings,
    api_url: str = DEFAULT_API_URL,
    *,
    tracker=None,
    feed: LiveFeed | None = None,
    start_feed: bool = True,
    dataset: str = "telco",
    kafka_options: dict[str, Any] | None = None,
) -> DashboardApp:
    """Build the dashboard and start its background Kafka consumer.

    Parameters
    ----------
    settings : plumbing.settings.Settings
        Kafka and MLflow endpoints, the scoring consumer group.
    api_url : str, default "http://127.0.0.1:8000/api/predict"
        The prediction endpoint the form posts to.
    tracker : mlflow.MlflowClient, optional
        Read-only registry and tracking client; one on ``settings.mlflow_tracking_uri`` by default.
    feed : LiveFeed, optional
        The live consumer; a new one on ``settings`` by default.
    start_feed : bool, default True
        Start the consumer thread now (``app.live_feed.stop()`` ends it).
    dataset : str, default "telco"
        Experiment ``churn-<dataset>``.
    kafka_options : dict, optional
        aiokafka connection arguments built by the entry point
        (``plumbing.clients.kafka_kwargs``: SSL/SASL); default ``bootstrap_servers`` only.

    Returns
    -------
    DashboardApp
        A ``dash.Dash`` with ``live_feed`` and ``models_reader`` attributes.
    """
    if tracker is None:
        from mlflow import MlflowClient

        tracker = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    feed = feed or LiveFeed(settings, LiveBuffers(), kafka_options=kafka_options)
    reader = ModelsReader(tracker, dataset=dataset, ttl_s=5.0)
    app = DashboardApp(__name__, title="churn-stream dashboard", update_title="")
    app.layout = html.Div(
        [
            html.H2("churn-stream dashboard", style={"margin": "6px 0"}),
            dcc.Interval(id="tick-live", interval=LIVE_REFRESH_MS),
            dcc.Interval(id="tick-models", interval=MODELS_REFRESH_MS),
            dcc.Tabs(
                id="tabs",
                value="live",
                children=[
                    dcc.Tab(label="Live", value="live", id="tab-live", children=_live_tab()),
                    dcc.Tab(label="Models", value="models", id="tab-models", children=_models_tab()),
                    dcc.Tab(label="Data quality", value="quality", id="tab-quality", children=_quality_tab()),
                    dcc.Tab(label="Score a customer", value="score", id="tab-score", children=_score_tab(api_url)),
                ],
            ),
        ],
        style={"fontFamily": "sans-serif", "margin": "0 18px"},
    )

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
            Output("alerts-table", "data"),
            Output("scores-table", "data"),
        ],
        Input("tick-live", "n_intervals"),
        Input("tabs", "value"),
    )
    def _live(_n, tab):
        if tab != "live":
            raise dash.exceptions.PreventUpdate
        return live_outputs(feed.buffers.snapshot())

    @app.callback(
        [
            Output("cycle-info", "children"),
            Output("leaderboard-table", "columns"),
            Output("leaderboard-table", "data"),
            Output("champion-info", "children"),
            Output("champion-curves", "children"),
            Output("versions-table", "columns"),
            Output("versions-table", "data"),
        ],
        Input("tick-models", "n_intervals"),
        Input("tabs", "value"),
    )
    def _models(_n, tab):
        if tab != "models":
            raise dash.exceptions.PreventUpdate
        return models_outputs(reader)

    @app.callback(
        [Output("dq-summary", "children"), Output("dq-checks", "children"), Output("dq-psi", "children")],
        Input("tick-models", "n_intervals"),
        Input("tabs", "value"),
    )
    def _quality(_n, tab):
        if tab != "quality":
            raise dash.exceptions.PreventUpdate
        return quality_outputs(reader)

    @app.callback(
        Output("score-result", "children"),
        Input("form-submit", "n_clicks"),
        [State(f"form-{name}", "value") for name in FORM_FIELDS],
        prevent_initial_call=True,
    )
    def _score(_clicks, *values):
        return score_output(api_url, dict(zip(FORM_FIELDS, values)))

    _time_callbacks(app.server)
    app.live_feed = feed
    app.models_reader = reader
    if start_feed:
        feed.start()
    return app


def run_dashboard(
    settings,
    host: str = "127.0.0.1",
    port: int = 8050,
    api_url: str = DEFAULT_API_URL,
    kafka_options: dict[str, Any] | None = None,
    threads: int = 4,
) -> None:
    """Serve the dashboard until interrupted (blocking), on waitress.

    waitress serves the Flask app behind Dash from a fixed pool of ``threads``
    worker threads; Flask's development server starts a thread per request instead
    (with it, the one-hour ``churn bench dashboard`` soak grew +22.4 MB; with waitress
    and the kept MLflow answers, +10 to +11 MB).

    Parameters
    ----------
    settings : plumbing.settings.Settings
    host : str, default "127.0.0.1"
    port : int, default 8050
    api_url : str, default "http://127.0.0.1:8000/api/predict"
    kafka_options : dict, optional
        aiokafka connection arguments (see :func:`create_app`).
    threads : int, default 4
        Request threads: browsers poll the live tab every second and the others every 10 s.
    """
    from waitress import serve

    app = create_app(settings, api_url=api_url, kafka_options=kafka_options)
    logger.info("dashboard on http://%s:%d api_url=%s threads=%d", host, port, api_url, threads)
    try:
        serve(app.server, host=host, port=port, threads=threads, ident="churn-dashboard")
    finally:
        app.live_feed.stop()
