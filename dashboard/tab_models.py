"""The Models tab: latest cycle, leaderboard (champion and challenger marked), champion curves, versions.

Refreshed every 10 s from :class:`~dashboard.tracking.ModelsReader`, whose answers for a
finished cycle and a registered version are read from MLflow once and kept.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from dashboard import grids
from dashboard.components import NOTE, ROW, TOOL_CONFIG, format_number, small_figure
from dashboard.tracking import LEADERBOARD_METRICS, ModelsReader
from schemas.registry import CHALLENGER, CHAMPION, CLASSIFIER_NAME

logger = logging.getLogger(__name__)

#: Milliseconds between refreshes of the models and data-quality tabs.
MODELS_REFRESH_MS = 10_000

_ROW_STYLE = {
    "styleConditions": [
        {
            "condition": f"params.data.alias && params.data.alias.includes('{CHAMPION}')",
            "style": {"backgroundColor": "#e3f4e1", "fontWeight": "bold"},
        },
        {
            "condition": f"params.data.alias && params.data.alias.includes('{CHALLENGER}')",
            "style": {"backgroundColor": "#fff4d6"},
        },
    ]
}


def layout(classifier_name: str = CLASSIFIER_NAME) -> html.Div:
    """The Models tab's components (filled by :func:`register`'s callback).

    Parameters
    ----------
    classifier_name : str, default "churn-classifier"
        The data set's registered churn classifier (:attr:`ModelsReader.classifier_name`).
    """
    return html.Div(
        [
            html.Div(id="cycle-info", style={"margin": "10px 0"}),
            html.H3("Leaderboard of the latest cycle"),
            grids.grid("leaderboard-table", getRowStyle=_ROW_STYLE, columnSize="responsiveSizeToFit"),
            html.H3(f"Champion evaluation ({classifier_name})"),
            html.Div(id="champion-info"),
            html.Div(id="champion-curves", style=ROW),
            html.H3("Version history"),
            html.Div(
                "Registration times come from the registry; MLflow keeps no history of alias moves, so the "
                "aliases shown are the current ones.",
                style=NOTE,
            ),
            grids.grid("versions-table", page_size=20, columnSize="responsiveSizeToFit"),
        ]
    )


def curve_figures(ev: dict[str, Any]) -> list:
    """The champion's ROC and PR curves and confusion matrix, from whichever its run logged.

    Parameters
    ----------
    ev : dict
        :meth:`~dashboard.tracking.ModelsReader.champion_evaluation`.

    Returns
    -------
    list of dash.dcc.Graph
        Empty when the run logged none of them (and its metrics hold no confusion counts).
    """
    figs = []
    roc = ev.get("roc")
    if isinstance(roc, dict) and roc.get("fpr") and roc.get("tpr"):
        f = small_figure("ROC curve", 320)
        f.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", name="ROC"))
        f.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
        f.update_xaxes(title="false positive rate")
        f.update_yaxes(title="true positive rate")
        figs.append(dcc.Graph(id="graph-roc", figure=f, config=TOOL_CONFIG, style={"flex": "1", "minWidth": "320px"}))
    pr = ev.get("pr")
    if isinstance(pr, dict) and pr.get("precision") and pr.get("recall"):
        f = small_figure("Precision–recall curve", 320)
        f.add_trace(go.Scatter(x=pr["recall"], y=pr["precision"], mode="lines", name="PR"))
        f.update_xaxes(title="recall")
        f.update_yaxes(title="precision")
        figs.append(dcc.Graph(id="graph-pr", figure=f, config=TOOL_CONFIG, style={"flex": "1", "minWidth": "320px"}))
    cm = ev.get("confusion")
    matrix = cm.get("matrix") if isinstance(cm, dict) else cm
    m = ev.get("metrics", {})
    if matrix is None and all(k in m for k in ("tn", "fp", "fn", "tp")):
        matrix = [[m["tn"], m["fp"]], [m["fn"], m["tp"]]]
    if isinstance(matrix, list) and len(matrix) == 2:
        f = small_figure("Confusion matrix, hold-out", 320)
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
            dcc.Graph(id="graph-confusion", figure=f, config=TOOL_CONFIG, style={"flex": "1", "minWidth": "320px"})
        )
    return figs


def models_outputs(reader: ModelsReader) -> tuple:
    """Leaderboard, champion evaluation and version history from the cached MLflow views.

    Parameters
    ----------
    reader : ModelsReader

    Returns
    -------
    tuple
        In the order of :func:`register`'s outputs; MLflow being down is said on the page.
    """
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
    board_cols = grids.infer_columns(board, ["model", "task", "alias", "version", *LEADERBOARD_METRICS])
    if not ev:
        champ = html.Div(f"No {reader.classifier_name} champion yet.")
        curves: list = []
    else:
        metrics = ", ".join(f"{k} {format_number(v)}" for k, v in sorted(ev["metrics"].items()))
        curves = curve_figures(ev)
        champ = html.Div(
            [
                html.Div([html.B(f"{reader.classifier_name} v{ev['version']}"), f" ({ev['model']}): {metrics}"]),
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
    version_cols = grids.infer_columns(
        versions, ["registered_model", "version", "model", "aliases", "metric", "value", "registered_at", "updated_at"]
    )
    return info, board_cols, board, champ, curves, version_cols, versions


def register(app: dash.Dash, reader: ModelsReader) -> None:
    """Add the Models tab's callback: every 10 s, only while the tab is shown.

    Parameters
    ----------
    app : dash.Dash
    reader : ModelsReader
    """

    @app.callback(
        [
            Output("cycle-info", "children"),
            Output("leaderboard-table", "columnDefs"),
            Output("leaderboard-table", "rowData"),
            Output("champion-info", "children"),
            Output("champion-curves", "children"),
            Output("versions-table", "columnDefs"),
            Output("versions-table", "rowData"),
        ],
        Input("tick-models", "n_intervals"),
        Input("tabs", "value"),
    )
    def _models(_n, tab):
        if tab != "models":
            raise dash.exceptions.PreventUpdate
        return models_outputs(reader)
