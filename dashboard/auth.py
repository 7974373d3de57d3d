"""The dashboard's login: a session per user, opened with an API key of the prediction API's key file.

A user logs in at ``/login`` with an API key (``chs_<id>_<secret>``, made with
``churn api keys create``); :class:`~plumbing.api_keys.ApiKeyStore` verifies it against the
same key file the API reads (salted scrypt hashes). Any active key logs in, whatever its
scopes: the tabs are the same for everyone, and the score form posts to the API **with that
user's key**, so the API's scopes decide what the form may do (a ``models:read`` key gets
the API's 403 there).

Sessions are Flask-Login's, in Flask's signed session cookie (``HttpOnly``,
``SameSite=Lax``, ``Secure`` when ``CHURN_DASHBOARD_COOKIE_SECURE`` is set). The cookie
holds a random session id, never the key: the key stays in :class:`SessionStore`, in this
process's memory only (not on disk, not in the browser), so every session ends when the
dashboard restarts, whichever ``CHURN_DASHBOARD_SECRET_KEY`` signs the cookie. A session
lasts :data:`SESSION_LIFETIME_S` at most, and ends within a second of its key being revoked.

Without a session, pages (``GET`` of anything but Dash's own routes and assets) are
redirected (302) to the login, and everything else (``/_dash-layout``,
``/_dash-dependencies``, ``/_dash-update-component``, component suites, assets) answers 401.
Refused logins are counted per client address (:class:`~plumbing.failure_limiter.FailureLimiter`,
the API's limiter): past ``CHURN_DASHBOARD_LOGIN_MAX_FAILURES`` a minute, the login answers
429. A refusal is logged with its reason and the client address, never with what was typed.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import flask
import flask_login
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms import ValidationError

from plumbing.api_keys import ApiKeyError, ApiKeyRecord, ApiKeyStore
from plumbing.failure_limiter import FailureLimiter
from plumbing.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

#: Where the login form is served (GET) and posted (POST).
LOGIN_PATH = "/login"
#: Ends the session (POST only: with ``SameSite=Lax`` another site cannot post it with the cookie).
LOGOUT_PATH = "/logout"
#: The session cookie's name.
SESSION_COOKIE = "churn_dashboard_session"
#: Longest a session lasts, seconds (then the user logs in again).
SESSION_LIFETIME_S = 12 * 3600.0
#: Open sessions kept at most (the oldest is ended first): bounded memory.
MAX_SESSIONS = 10_000
#: Concurrent scrypt checks (16 MiB and ~50 ms each): wrong keys cannot take every request thread.
SCRYPT_CONCURRENCY = 2
#: Paths that are not pages: without a session they answer 401, not a redirect.
NOT_PAGES = ("/_dash-", "/_reload-hash", "/_favicon", "/assets/")
#: Shown under the form: which key, and what scopes do.
LOGIN_HINT = (
    "Log in with an API key of the prediction API (chs_…), made with "
    "`churn api keys create --name NAME --scope predict`. Every key sees the tabs; the score form "
    "acts with your key: predict scores customers, models:read alone gets the API's 403."
)
#: Watches callback answers in the page: a 401 (session ended) takes the browser to the login.
SESSION_WATCH_JS = f"""<script>
(function () {{
  var fetch0 = window.fetch;
  window.fetch = function () {{
    return fetch0.apply(this, arguments).then(function (r) {{
      if (r.status === 401 && r.url.indexOf("/_dash-") >= 0) {{
        window.location.assign("{LOGIN_PATH}?next=" + encodeURIComponent(window.location.pathname));
      }}
      return r;
    }});
  }};
}})();
</script>"""

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · churn-stream dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: sans-serif; margin: 60px auto; max-width: 520px; color: #222; }
label { display: block; font-size: 13px; color: #444; margin: 14px 0 4px; }
input[type=password] { width: 100%; box-sizing: border-box; padding: 8px; font-family: monospace; }
button { margin-top: 12px; padding: 8px 18px; font-size: 15px; }
#login-error { color: #b00; font-weight: bold; }
.hint { font-size: 12px; color: #555; margin-top: 22px; }
</style></head>
<body><main>
<h2>churn-stream dashboard</h2>
{% if message %}<p id="login-error" role="alert">{{ message }}</p>{% endif %}
<form id="login-form" method="post" action="{{ login_path }}">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next }}">
<label for="api-key">API key</label>
<input id="api-key" name="api_key" type="password" autocomplete="off" spellcheck="false" required autofocus>
<button id="login-submit" type="submit">Log in</button>
</form>
<p class="hint">{{ hint }}</p>
</main></body></html>
"""
#: The login page may load nothing, run nothing and post only to itself.
_LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


class DashboardAuthConfigError(SettingsError):
    """The login is on but there is no active key to log in with (``churn dashboard`` does not start)."""


@dataclass(eq=False)
class DashboardUser(flask_login.UserMixin):
    """One logged-in session.

    Attributes
    ----------
    session_id : str
        Random, 32 bytes; the only thing the cookie names.
    name, key_id : str
        The key's name and id (not secret).
    scopes : tuple of str
        The key's scopes.
    api_key : str
        The key itself: the score form posts with it. Server-side only; hidden from ``repr``.
    expires_at : float
        ``time.monotonic()`` after which the session is over.
    """

    session_id: str
    name: str
    key_id: str
    scopes: tuple[str, ...]
    api_key: str = field(repr=False)
    expires_at: float

    def get_id(self) -> str:
        """The session id (what Flask-Login keeps in the cookie)."""
        return self.session_id


class SessionStore:
    """Open sessions, by session id, in this process's memory only.

    Parameters
    ----------
    lifetime_s : float, default SESSION_LIFETIME_S
        Seconds a session lasts from its login.
    max_sessions : int, default MAX_SESSIONS
        Beyond this many, the oldest session is ended.
    """

    def __init__(self, lifetime_s: float = SESSION_LIFETIME_S, max_sessions: int = MAX_SESSIONS) -> None:
        self.lifetime_s = lifetime_s
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, DashboardUser] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, record: ApiKeyRecord, api_key: str, now: float) -> DashboardUser:
        """A new session for an accepted key.

        Parameters
        ----------
        record : ApiKeyRecord
            The accepted key's record.
        api_key : str
            The key as typed (kept for the score form).
        now : float
            ``time.monotonic()``.

        Returns
        -------
        DashboardUser
        """
        user = DashboardUser(
            session_id=secrets.token_urlsafe(32),
            name=record.name,
            key_id=record.key_id,
            scopes=record.scopes,
            api_key=api_key,
            expires_at=now + self.lifetime_s,
        )
        with self._lock:
            self._sessions[user.session_id] = user
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return user

    def get(self, session_id: str, now: float) -> DashboardUser | None:
        """The open session ``session_id``, or None (unknown, or expired and then ended)."""
        with self._lock:
            user = self._sessions.get(session_id)
            if user is not None and now >= user.expires_at:
                del self._sessions[session_id]
                return None
            return user

    def close(self, session_id: str) -> None:
        """End a session (logout, revoked key); nothing if it is not open."""
        with self._lock:
            self._sessions.pop(session_id, None)


def _safe_next(target: str | None) -> str:
    """``target`` when it is a path of this site, else ``/`` (no open redirect to another host)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def _no_store(response: flask.Response) -> flask.Response:
    response.headers["Cache-Control"] = "no-store"
    return response


class DashboardLogin:
    """The login on a dashboard's Flask server: login and logout routes, the gate, the session store.

    Parameters
    ----------
    keys : ApiKeyStore
        The prediction API's key file (``CHURN_API_KEYS_FILE``).
    max_failures : int
        Refused logins per client address and minute before 429.
    sessions : SessionStore, optional
        A new one by default.
    """

    def __init__(self, keys: ApiKeyStore, max_failures: int, sessions: SessionStore | None = None) -> None:
        self.keys = keys
        self.sessions = sessions or SessionStore()
        self.limiter = FailureLimiter(max_failures)
        self._scrypt = threading.BoundedSemaphore(SCRYPT_CONCURRENCY)

    def __repr__(self) -> str:
        return f"DashboardLogin(keys={self.keys!r}, max_failures={self.limiter.max_failures})"

    @classmethod
    def from_settings(cls, settings: Settings) -> DashboardLogin | None:
        """The login ``settings`` ask for; None with ``CHURN_DASHBOARD_AUTH=none``.

        Parameters
        ----------
        settings : plumbing.settings.Settings

        Returns
        -------
        DashboardLogin or None
        """
        if settings.dashboard_auth == "none":
            return None
        return cls(ApiKeyStore(settings.api_keys_path), settings.dashboard_login_max_failures)

    def require_keys(self) -> None:
        """Refuse to serve a login nobody can pass.

        Raises
        ------
        DashboardAuthConfigError
            If the key file is unreadable or holds no active key.
        """
        try:
            active = self.keys.active()
        except ApiKeyError as err:  # not a key file
            raise DashboardAuthConfigError(str(err)) from None
        if not active:
            raise DashboardAuthConfigError(
                f"dashboard login is on and the key file {self.keys.path} has no active key: create one with "
                "`churn api keys create --name NAME --scope predict` (CHURN_API_KEYS_FILE names the file), "
                "or set CHURN_DASHBOARD_AUTH=none for local development"
            )

    @staticmethod
    def current_api_key() -> str:
        """The logged-in user's API key (the score form's credential); empty outside a session."""
        user = flask_login.current_user
        return user.api_key if isinstance(user, DashboardUser) else ""

    @staticmethod
    def current_user() -> DashboardUser | None:
        """The logged-in user of this request, or None (no session, or outside a request)."""
        if not flask.has_request_context():
            return None
        user = flask_login.current_user
        return user if isinstance(user, DashboardUser) else None

    # -- wiring
    def install(self, server: flask.Flask, secret_key: str = "", cookie_secure: bool = False) -> None:
        """Add the login to ``server`` (a Dash app's ``app.server``).

        Parameters
        ----------
        server : flask.Flask
        secret_key : str, default ""
            Signs the session cookie (``CHURN_DASHBOARD_SECRET_KEY``); a random one when empty.
        cookie_secure : bool, default False
            Send the cookie over HTTPS only.
        """
        if not secret_key:
            logger.info("dashboard sessions signed with a key made for this process (CHURN_DASHBOARD_SECRET_KEY unset)")
        server.secret_key = secret_key or secrets.token_urlsafe(32)
        server.config.update(
            SESSION_COOKIE_NAME=SESSION_COOKIE,
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Lax",
            SESSION_COOKIE_SECURE=cookie_secure,
        )
        manager = flask_login.LoginManager()
        manager.init_app(server)
        manager.user_loader(self._load_user)
        server.before_request(self._gate)
        server.add_url_rule(LOGIN_PATH, "churn_login", self._login, methods=["GET", "POST"])
        server.add_url_rule(LOGOUT_PATH, "churn_logout", self._logout, methods=["POST"])

    def _load_user(self, session_id: str) -> DashboardUser | None:
        user = self.sessions.get(session_id, time.monotonic())
        if user is None:
            return None
        # Cheap (no scrypt): the key file is re-read at most once a second, so a revoked key ends its sessions.
        check = self.keys.check_fast(user.api_key)
        if check is not None and check.record is None:
            self.sessions.close(session_id)
            logger.info("dashboard session ended name=%s id=%s reason=%s", user.name, user.key_id, check.reason)
            return None
        return user

    def _gate(self) -> Any:
        request = flask.request
        # Only the login itself and POST /logout are open (Dash's catch-all would serve GET /logout its page).
        if request.path == LOGIN_PATH or (request.path == LOGOUT_PATH and request.method == "POST"):
            return None
        if flask_login.current_user.is_authenticated:
            return None
        if request.method == "GET" and not request.path.startswith(NOT_PAGES):
            target = request.full_path.rstrip("?")
            return flask.redirect(f"{LOGIN_PATH}?{urlencode({'next': target})}", 302)
        response = flask.jsonify(error="login required", login=LOGIN_PATH)
        response.status_code = 401
        return _no_store(response)

    def _page(self, status: int, message: str = "", next_path: str = "/") -> flask.Response:
        body = flask.render_template_string(
            _LOGIN_PAGE,
            message=message,
            csrf=generate_csrf(),
            next=_safe_next(next_path),
            login_path=LOGIN_PATH,
            hint=LOGIN_HINT,
        )
        response = flask.make_response(body, status)
        response.headers["Content-Security-Policy"] = _LOGIN_CSP
        response.headers["X-Frame-Options"] = "DENY"
        return _no_store(response)

    def _login(self) -> Any:
        request = flask.request
        if request.method == "GET":
            if flask_login.current_user.is_authenticated:
                return flask.redirect(_safe_next(request.args.get("next")))
            return self._page(200, next_path=request.args.get("next", "/"))
        next_path = request.form.get("next", "/")
        client = request.remote_addr or "unknown"
        wait = self.limiter.retry_after(client, time.monotonic())
        if wait is not None:
            logger.info("dashboard login refused status=429 reason=rate_limited client=%s", client)
            response = self._page(429, f"Too many refused logins from this address: try again in {wait} s.", next_path)
            response.headers["Retry-After"] = str(wait)
            return response
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError:
            logger.info("dashboard login refused status=400 reason=bad_form_token client=%s", client)
            return self._page(400, "The login form had expired: enter the key again.", next_path)
        presented = request.form.get("api_key", "").strip()
        if presented:
            with self._scrypt:
                check = self.keys.verify(presented)
            record, reason = check.record, check.reason
        else:
            record, reason = None, "missing_key"
        if record is None:
            at_limit = self.limiter.record(client, time.monotonic())
            logger.info("dashboard login refused status=401 reason=%s client=%s", reason, client)
            if at_limit:
                logger.warning(
                    "dashboard login rate-limited client=%s failures=%d window_s=%.0f",
                    client,
                    self.limiter.max_failures,
                    self.limiter.window_s,
                )
            return self._page(401, "That key was not accepted.", next_path)
        user = self.sessions.open(record, presented, time.monotonic())
        flask.session.clear()  # a new session: nothing of the anonymous one (its form token) carries over
        flask_login.login_user(user)
        logger.info(
            "dashboard login name=%s id=%s scopes=%s client=%s",
            record.name,
            record.key_id,
            ",".join(record.scopes),
            client,
        )
        return flask.redirect(_safe_next(next_path), 303)

    def _logout(self) -> Any:
        user = self.current_user()
        if user is not None:
            self.sessions.close(user.session_id)
            logger.info("dashboard logout name=%s id=%s", user.name, user.key_id)
        flask_login.logout_user()
        flask.session.clear()
        return flask.redirect(LOGIN_PATH, 303)


def with_session_watch(index_string: str) -> str:
    """A Dash ``index_string`` that sends the browser to the login when a callback answers 401."""
    return index_string.replace("{%scripts%}", SESSION_WATCH_JS + "\n        {%scripts%}", 1)
