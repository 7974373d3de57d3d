"""The dashboard's login on real servers on loopback: the dashboard (werkzeug) and the prediction API (uvicorn).

Every case talks HTTP to a served dashboard whose login reads the API's own key file; the
score form's callback posts to the real API with the logged-in user's key.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import zlib

import httpx
import pytest

from dashboard.auth import SESSION_COOKIE, DashboardAuthConfigError, DashboardLogin
from plumbing.api_keys import ApiKeyStore
from plumbing.settings import Settings
from tests.unit.dashboard.conftest import free_port, wait_http
from tests.unit.dashboard.test_score_form_auth import CUSTOMER

#: Shown on the login page when a key is refused.
REFUSED = "That key was not accepted."


def _serve(settings: Settings, api_url: str):
    from werkzeug.serving import make_server

    from dashboard.app import create_app

    app = create_app(settings, api_url=api_url, tracker=None, start_feed=False)
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"dashboard-login-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/login", thread.is_alive)
    return app, url, server, thread


@pytest.fixture(scope="module")
def dashboard(keyed_api, api_keys_file):
    """A dashboard with the login on against the API's key file (3 refused logins a minute per client)."""
    api_url, _ = keyed_api
    settings = Settings(
        api_keys_file=str(api_keys_file), mlflow_tracking_uri="http://127.0.0.1:9", dashboard_login_max_failures=3
    )
    app, url, server, thread = _serve(settings, api_url)
    try:
        yield app, url
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, follow_redirects=False)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _login(client: httpx.Client, key: str, next_path: str = "/") -> httpx.Response:
    token = _csrf(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "api_key": key, "next": next_path})


def _score_body(client: httpx.Client) -> dict:
    """The ``/_dash-update-component`` body the browser posts when the form's button is clicked."""
    from churn_stream.bench.dashboard import _outputs

    deps = client.get("/_dash-dependencies").json()
    dep = next(d for d in deps if "score-result.children" in d["output"])
    return {
        "output": dep["output"],
        "outputs": _outputs(dep["output"]),
        "inputs": [{"id": "form-submit", "property": "n_clicks", "value": 1}],
        "changedPropIds": ["form-submit.n_clicks"],
        "state": [
            {"id": s["id"], "property": "value", "value": CUSTOMER.get(s["id"].removeprefix("form-"))}
            for s in dep["state"]
        ],
    }


@pytest.fixture
def clean_limiter(dashboard):
    app, _ = dashboard
    app.login.limiter._failures.clear()
    yield
    app.login.limiter._failures.clear()


def test_without_a_session_pages_redirect_to_the_login_and_the_rest_answers_401(dashboard):
    _, url = dashboard
    with _client(url) as c:
        for page in ("/", "/anything?tab=score"):
            r = c.get(page)
            assert r.status_code == 302, page
            assert r.headers["location"].startswith("/login?next="), r.headers["location"]
        assert c.get("/").headers["location"] == "/login?next=%2F"
        for path in ("/_dash-layout", "/_dash-dependencies", "/_reload-hash", "/assets/app.css"):
            r = c.get(path)
            assert r.status_code == 401 and r.json() == {"error": "login required", "login": "/login"}, path
        # The Dash page's own scripts are not public either; the login page needs none.
        renderer = "/_dash-component-suites/dash/dash-renderer/build/dash_renderer.v3_0_0m1.min.js"
        assert c.get(renderer).status_code == 401
        r = c.post("/_dash-update-component", json={"output": "kpi-scores.children", "inputs": [], "state": []})
        assert r.status_code == 401
        # Only POST /logout is open; a GET there is a page like any other.
        assert c.get("/logout").status_code == 302


def test_a_wrong_key_stays_on_the_login_with_a_message(dashboard, keyed_api, clean_limiter, caplog):
    _, url = dashboard
    _, keys = keyed_api
    good = keys["predict"]
    wrong_secret = good[:-1] + ("A" if good[-1] != "A" else "B")
    caplog.set_level(logging.DEBUG)
    with _client(url) as c:
        for bad in (wrong_secret, "chs_000000000000_" + "x" * 43):
            r = _login(c, bad)
            assert r.status_code == 401 and REFUSED in r.text and 'id="api-key"' in r.text
            assert bad not in r.text  # not echoed
            assert c.get("/").status_code == 302  # still no session
    text = caplog.text
    assert "dashboard login refused status=401 reason=wrong_secret client=127.0.0.1" in text
    assert "reason=unknown_key" in text
    assert wrong_secret not in text and wrong_secret.split("_", 2)[2] not in text


def test_a_login_without_the_forms_token_is_refused(dashboard, keyed_api):
    _, url = dashboard
    _, keys = keyed_api
    with _client(url) as c:
        r = c.post("/login", data={"api_key": keys["predict"], "next": "/"})
        assert r.status_code == 400 and "expired" in r.text
        assert c.get("/").status_code == 302


def test_refused_logins_are_rate_limited_per_client(dashboard, keyed_api, clean_limiter, caplog):
    _, url = dashboard
    _, keys = keyed_api
    caplog.set_level(logging.INFO)
    with _client(url) as c:
        for _ in range(3):
            assert _login(c, "not-a-key").status_code == 401
        r = _login(c, keys["predict"])  # even the right key, until the minute has passed
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
        assert "Too many refused logins" in r.text
        assert c.get("/").status_code == 302
    assert "dashboard login rate-limited client=127.0.0.1 failures=3 window_s=60" in caplog.text
    assert keys["predict"] not in caplog.text


def test_a_predict_key_logs_in_and_the_form_scores_with_it(dashboard, keyed_api, clean_limiter):
    _, url = dashboard
    _, keys = keyed_api
    with _client(url) as c:
        r = _login(c, keys["predict"], next_path="/?tab=score")
        assert r.status_code == 303 and r.headers["location"] == "/?tab=score"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(SESSION_COOKIE + "=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        # The cookie names a random session id; the key stays on the server.
        payload = c.cookies[SESSION_COOKIE].split(".")[1 if c.cookies[SESSION_COOKIE].startswith(".") else 0]
        doc = json.loads(zlib.decompress(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
        assert set(doc) >= {"_user_id"} and keys["predict"] not in json.dumps(doc)
        assert c.get("/").status_code == 200
        layout = c.get("/_dash-layout")
        assert layout.status_code == 200 and '"predict"' in layout.text and keys["predict"] not in layout.text
        r = c.post("/_dash-update-component", json=_score_body(c))
        assert r.status_code == 200, r.text
        assert "score-answer" in r.text and "score-probability" in r.text, r.text[:500]
        assert keys["predict"] not in r.text


def test_a_models_read_key_gets_the_apis_403_in_the_form(dashboard, keyed_api, clean_limiter):
    _, url = dashboard
    _, keys = keyed_api
    with _client(url) as c:
        assert _login(c, keys["models:read"]).status_code == 303
        r = c.post("/_dash-update-component", json=_score_body(c))
        assert r.status_code == 200
        assert "The API answered 403: scope predict required: log in with a key that has the predict scope" in r.text
        assert "score-answer" not in r.text and keys["models:read"] not in r.text


def test_logout_redirects_again_and_the_old_cookie_is_dead(dashboard, keyed_api, clean_limiter):
    _, url = dashboard
    _, keys = keyed_api
    with _client(url) as c:
        assert _login(c, keys["predict"]).status_code == 303
        old = c.cookies[SESSION_COOKIE]
        assert c.get("/").status_code == 200
        r = c.post("/logout")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert c.get("/").status_code == 302
    with _client(url) as replay:  # the cookie from before the logout, sent again
        replay.cookies.set(SESSION_COOKIE, old)
        assert replay.get("/").status_code == 302
        assert replay.post("/_dash-update-component", json={}).status_code == 401


def test_a_revoked_key_ends_its_sessions(dashboard, api_keys_file, clean_limiter):
    _, url = dashboard
    store = ApiKeyStore(api_keys_file)
    _, key = store.create("short-lived", ["predict"])
    time.sleep(1.1)  # the dashboard re-reads the key file at most once a second
    with _client(url) as c:
        assert _login(c, key).status_code == 303
        assert c.get("/").status_code == 200
        store.revoke("short-lived")
        deadline = time.monotonic() + 5
        while c.get("/").status_code != 302:
            assert time.monotonic() < deadline, "the session outlived its key"
            time.sleep(0.2)
        assert _login(c, key).status_code == 401


def test_login_off_only_by_setting_and_then_it_warns(keyed_api, caplog):
    api_url, keys = keyed_api
    caplog.set_level(logging.WARNING)
    settings = Settings(dashboard_auth="none", api_key=keys["predict"], mlflow_tracking_uri="http://127.0.0.1:9")
    app, url, server, thread = _serve(settings, api_url)
    try:
        assert "dashboard login is OFF (CHURN_DASHBOARD_AUTH=none)" in caplog.text
        with _client(url) as c:
            assert c.get("/").status_code == 200
            r = c.post("/_dash-update-component", json=_score_body(c))
            assert r.status_code == 200 and "score-answer" in r.text  # CHURN_API_KEY is sent
    finally:
        server.shutdown()
        thread.join(timeout=10)
    with pytest.raises(ValueError, match="CHURN_DASHBOARD_AUTH"):
        Settings.from_env({"CHURN_DASHBOARD_AUTH": "off"})


def test_the_entry_point_refuses_to_start_a_login_nobody_can_pass(tmp_path):
    login = DashboardLogin.from_settings(Settings(api_keys_file=str(tmp_path / "none.json")))
    with pytest.raises(DashboardAuthConfigError, match="churn api keys create"):
        login.require_keys()
    secret = Settings(dashboard_secret_key="s3cr3t-signing-key")
    assert "s3cr3t" not in repr(secret)
