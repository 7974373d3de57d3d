"""The Data quality tab: the latest cycle's gate report, its checks and PSI per feature with thresholds."""

from __future__ import annotations

import dash
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from dashboard import grids
from dashboard.components import TOOL_CONFIG, small_figure
from dashboard.tracking import ModelsReader, psi_rows

_STATUS_STYLE = {
    "styleConditions": [
        {"condition": "params.value && params.value.toUpperCase() == 'FAIL'", "style": {"color": "#b00"}},
        {"condition": "params.value && params.value.toUpperCase() == 'WARN'", "style": {"color": "#a15c00"}},
    ]
}


def layout() -> html.Div:
    """The Data quality tab's components (filled by :func:`register`'s callback)."""
    return html.Div(
        [html.Div(id="dq-summary", style={"margin": "10px 0"}), html.Div(id="dq-checks"), html.Div(id="dq-psi")]
    )


def quality_outputs(reader: ModelsReader) -> tuple:
    """The latest cycle's data-quality gate report (status, checks, PSI per feature), or "no report yet".

    Parameters
    ----------
    reader : ModelsReader

    Returns
    -------
    tuple
        ``(summary, checks, psi)`` components; the last two None when absent.
    """
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
                grids.grid(
                    "dq-checks-table",
                    [
                        grids.column("check"),
                        grids.column("status", cellStyle=_STATUS_STYLE),
                        grids.column("finding", minWidth=420, flex=1, **grids.WRAPPED),
                    ],
                    rows,
                    columnSize="responsiveSizeToFit",
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
    fig = small_figure("Per-feature drift vs the reference cycle (PSI)", 360)
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
            dcc.Graph(id="graph-psi", figure=fig, config=TOOL_CONFIG),
            grids.grid(
                "dq-psi-table",
                [
                    grids.column("feature"),
                    grids.column("kind"),
                    grids.column("psi", "PSI", grids.METRIC),
                    grids.column("status", cellStyle=_STATUS_STYLE),
                    grids.column("warn_at", "warn at", grids.METRIC),
                    grids.column("fail_at", "fail at", grids.METRIC),
                ],
                psi,
                page_size=25,
            ),
        ]
    )
    return summary, check_view, psi_view


def register(app: dash.Dash, reader: ModelsReader) -> None:
    """Add the Data quality tab's callback: every 10 s, only while the tab is shown.

    Parameters
    ----------
    app : dash.Dash
    reader : ModelsReader
    """

    @app.callback(
        [Output("dq-summary", "children"), Output("dq-checks", "children"), Output("dq-psi", "children")],
        Input("tick-models", "n_intervals"),
        Input("tabs", "value"),
    )
    def _quality(_n, tab):
        if tab != "quality":
            raise dash.exceptions.PreventUpdate
        return quality_outputs(reader)
