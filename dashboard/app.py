"""The Dash app factory and server: four tabs, their callbacks, a ``Server-Timing`` header, waitress.

``create_app(settings, api_url=...)`` builds the app and starts the one background
Kafka consumer (:class:`~dashboard.live.LiveFeed`); ``run_dashboard`` serves it.
Each tab lives in its own module (``tab_live``, ``tab_models``, ``tab_quality``,
``tab_score``: layout, outputs and callback). Callbacks read only snapshots: the live
buffers (under their lock) and the cached MLflow views of
:class:`~dashboard.tracking.ModelsReader`. The page refreshes its live tab every second
and its model and data-quality tabs every 10 seconds, and only the visible tab does any work.

Every page and callback needs a login (:mod:`dashboard.auth`: an API key of the prediction
API's key file opens a session; the score form posts with that user's key), unless
``CHURN_DASHBOARD_AUTH=none``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dash
from dash import dcc, html

from dashboard import tab_live, tab_models, tab_quality, tab_score
from dashboard.auth import LOGOUT_PATH, DashboardLogin, with_session_watch
from dashboard.buffers import LiveBuffers
from dashboard.live import LiveFeed
from dashboard.score_form import DEFAULT_API_URL, HINT_LOG_IN, HINT_SET_API_KEY, customer_form_fields
from dashboard.tab_live import LIVE_REFRESH_MS, live_outputs
from dashboard.tab_models import MODELS_REFRESH_MS, models_outputs
from dashboard.tab_quality import quality_outputs
from dashboard.tab_score import score_output
from dashboard.tracking import ModelsReader
from plumbing.clients import served_dataset

__all__ = [
    "DashboardApp",
    "create_app",
    "live_outputs",
    "models_outputs",
    "quality_outputs",
    "run_dashboard",
    "score_output",
]

logger = logging.getLogger(__name__)


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
    """The Dash app with the things its owner stops or inspects.

    Attributes
    ----------
    live_feed : LiveFeed
        The background Kafka consumer (``app.live_feed.stop()`` ends it).
    models_reader : ModelsReader
        The cached MLflow views the models and data-quality tabs read.
    login : DashboardLogin or None
        The login and its session store; None with ``CHURN_DASHBOARD_AUTH=none``.
    """

    live_feed: LiveFeed
    models_reader: ModelsReader
    login: DashboardLogin | None


def _header() -> html.Div:
    """The title, and who is logged in with a logout button (rendered per page load)."""
    user = DashboardLogin.current_user()
    children: list[Any] = [html.H2("churn-stream dashboard", style={"margin": "6px 0", "flex": "1"})]
    if user is not None:
        children.append(
            html.Form(
                [
                    html.Span(
                        [html.B(user.name, id="login-user"), f" ({', '.join(user.scopes)})"],
                        style={"marginRight": "10px", "fontSize": "13px", "color": "#444"},
                    ),
                    html.Button("Log out", id="logout", type="submit"),
                ],
                action=LOGOUT_PATH,
                method="POST",
            )
        )
    return html.Div(children, style={"display": "flex", "alignItems": "center"})


def create_app(
    settings,
    api_url: str = DEFAULT_API_URL,
    *,
    tracker=None,
    feed: LiveFeed | None = None,
    start_feed: bool = True,
    dataset: str | None = None,
    kafka_options: dict[str, Any] | None = None,
    login: DashboardLogin | None = None,
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
    dataset : str, optional
        A shipped profile's name or a profile file; default ``settings.dataset`` (``CHURN_DATASET``).
        Its namespace names the topics, the scoring group and the registered models shown, its
        experiment is ``churn-<name>``, and its contract is the score form (label left out).
    kafka_options : dict, optional
        aiokafka connection arguments built by the entry point
        (``plumbing.clients.kafka_kwargs``: SSL/SASL); default ``bootstrap_servers`` only.
    login : DashboardLogin, optional
        The login; by default the one ``settings`` ask for (on, against
        ``settings.api_keys_path``, unless ``CHURN_DASHBOARD_AUTH=none``). An app whose key
        file has no key refuses every login (``run_dashboard`` refuses to start instead).

    Returns
    -------
    DashboardApp
        A ``dash.Dash`` with ``live_feed``, ``models_reader`` and ``login`` attributes.
    """
    if tracker is None:
        from mlflow import MlflowClient

        tracker = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    profile, namespace = served_dataset(settings, dataset)
    feed = feed or LiveFeed(settings, LiveBuffers(), kafka_options=kafka_options, namespace=namespace)
    reader = ModelsReader(tracker, dataset=profile.name, ttl_s=5.0)
    form = customer_form_fields(hidden={profile.classification_target}, profile=profile)
    models_layout = tab_models.layout(reader.classifier_name)
    if login is None:
        login = DashboardLogin.from_settings(settings)
    if login is None:
        logger.warning(
            "dashboard login is OFF (CHURN_DASHBOARD_AUTH=none): every page answers anyone who reaches it, "
            "and the score form sends CHURN_API_KEY; for local development only"
        )
    app = DashboardApp(__name__, title="churn-stream dashboard", update_title="")
    if login is not None:
        login.install(app.server, settings.dashboard_secret_key, settings.dashboard_cookie_secure)
        app.index_string = with_session_watch(app.index_string)
    body = [
        dcc.Interval(id="tick-live", interval=LIVE_REFRESH_MS),
        dcc.Interval(id="tick-models", interval=MODELS_REFRESH_MS),
        dcc.Tabs(
            id="tabs",
            value="live",
            children=[
                dcc.Tab(label="Live", value="live", id="tab-live", children=tab_live.layout()),
                dcc.Tab(label="Models", value="models", id="tab-models", children=models_layout),
                dcc.Tab(label="Data quality", value="quality", id="tab-quality", children=tab_quality.layout()),
                dcc.Tab(
                    label="Score a customer",
                    value="score",
                    id="tab-score",
                    children=tab_score.layout(api_url, form),
                ),
            ],
        ),
    ]

    def serve_layout() -> html.Div:  # per page load: the header names the logged-in user
        return html.Div([_header(), *body], style={"fontFamily": "sans-serif", "margin": "0 18px"})

    app.layout = serve_layout
    tab_live.register(app, feed)
    tab_models.register(app, reader)
    tab_quality.register(app, reader)
    if login is not None:
        tab_score.register(app, api_url, form, login.current_api_key, HINT_LOG_IN)
    else:
        fixed_key = settings.api_key
        tab_score.register(app, api_url, form, lambda: fixed_key, HINT_SET_API_KEY)
    _time_callbacks(app.server)
    app.live_feed = feed
    app.models_reader = reader
    app.login = login
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

    Raises
    ------
    dashboard.auth.DashboardAuthConfigError
        If the login is on and the key file holds no active key.
    """
    from waitress import serve

    login = DashboardLogin.from_settings(settings)
    if login is not None:
        login.require_keys()
    app = create_app(settings, api_url=api_url, kafka_options=kafka_options, login=login)
    logger.info(
        "dashboard on http://%s:%d api_url=%s threads=%d login=%s",
        host,
        port,
        api_url,
        threads,
        "off" if login is None else f"on keys={login.keys.path}",
    )
    try:
        serve(app.server, host=host, port=port, threads=threads, ident="churn-dashboard")
    finally:
        app.live_feed.stop()
