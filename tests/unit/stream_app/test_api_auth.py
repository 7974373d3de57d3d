"""Authentication of the prediction API, in process: keys, scopes, refusals, rate limit, bearer JWTs.

The JWTs are checked against a real JWKS served on loopback by this test (keys made here with
``cryptography``). The same refusals against the API served by ``churn api`` on the real stack are
in ``tests/integration/test_api_auth.py``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
import time

import httpx
import pytest

from plumbing.api_keys import ApiKeyStore
from plumbing.settings import Settings
from schemas.profiles import TELCO

ISSUER = "https://idp.test/"
AUDIENCE = "churn-api"


def _call(app, method: str, path: str, credential: str | None = None, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {credential}"} if credential else {}
    headers.update(kwargs.pop("headers", {}))

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            return await c.request(method, path, headers=headers, **kwargs)

    return asyncio.run(go())


def _app(settings: Settings):
    from stream_app.api import create_app
    from stream_app.model_store import ModelStore

    store = ModelStore("http://registry.invalid", expected_features=list(TELCO.features))
    return create_app(settings, tracker=None, store=store, follow_updates=False)


@pytest.fixture
def keyed(tmp_path):
    """Settings with a key file holding a predict, a models:read, an admin and a revoked key."""
    store = ApiKeyStore(tmp_path / "api_keys.json")
    keys = {name: store.create(name, [scope])[1] for name, scope in (("p", "predict"), ("m", "models:read"))}
    keys["admin"] = store.create("admin", ["admin"])[1]
    keys["revoked"] = store.create("gone", ["admin"])[1]
    store.revoke("gone")
    return Settings(api_keys_file=str(store.path)), keys


def test_refusals_and_acceptances(keyed, caplog):
    settings, keys = keyed
    caplog.set_level(logging.DEBUG)
    app = _app(settings)
    # An accepted predict request reaches the handler: {} is a 422 of the body, not of the credential.
    assert _call(app, "POST", "/api/predict", keys["p"], json={}).status_code == 422
    assert _call(app, "POST", "/api/predict", keys["admin"], json={}).status_code == 422
    r = _call(app, "POST", "/api/predict", json={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="churn-api"'
    assert r.json()["error"] == "authentication required"
    for bad in (keys["p"][:-1] + ("A" if keys["p"][-1] != "A" else "B"), keys["revoked"], "nonsense", "chs_x"):
        r = _call(app, "POST", "/api/predict", bad, json={})
        assert r.status_code == 401, bad
        assert r.headers["www-authenticate"] == 'Bearer realm="churn-api", error="invalid_token"'
    r = _call(app, "POST", "/api/predict", headers={"authorization": f"Basic {keys['p']}"}, json={})
    assert r.status_code == 401
    r = _call(app, "POST", "/api/predict", keys["m"], json={})
    assert r.status_code == 403 and r.json()["error"] == "scope predict required"
    assert r.headers["www-authenticate"] == 'Bearer realm="churn-api", error="insufficient_scope", scope="predict"'
    assert _call(app, "GET", "/api/metrics", keys["p"]).status_code == 403
    # Open: readiness and the documentation; a predict key on an unknown path gets 404, not 403.
    assert _call(app, "GET", "/health").status_code == 503  # no champion here; not 401
    assert _call(app, "GET", "/openapi.json").status_code == 200
    assert _call(app, "GET", "/docs").status_code == 200
    assert _call(app, "GET", "/docs/assets/swagger-init.js").status_code == 200
    assert _call(app, "GET", "/nowhere").status_code == 401
    assert _call(app, "GET", "/nowhere", keys["p"]).status_code == 404
    live = _call(app, "GET", "/api/metrics", keys["m"]).json()["live"]
    assert live["auth_failures_by_reason"] == {
        "missing_credential": 2,
        "wrong_secret": 1,
        "revoked_key": 1,
        "malformed_key": 2,
        "malformed_credential": 1,
        "insufficient_scope": 2,
    }
    assert live["responses_by_status"]["401"] == 7 and live["responses_by_status"]["403"] == 2
    log = caplog.text
    assert "reason=wrong_secret" in log and "reason=revoked_key" in log
    for key in keys.values():
        # chs_<key id>_<secret>: the secret (token_urlsafe, which may itself hold "_") never appears.
        assert key not in log and key.split("_", 2)[2] not in log


def test_rate_limit_answers_429_with_retry_after_then_lets_the_client_in_again(keyed, monkeypatch):
    from stream_app.api import auth

    settings, keys = keyed
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    app = _app(settings.with_overrides(api_auth_max_failures=3))
    for _ in range(3):
        assert _call(app, "GET", "/api/models", keys["revoked"]).status_code == 401
    r = _call(app, "GET", "/api/metrics", keys["admin"])  # even a good key: the address is limited
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert r.json() == {"error": "too many refused credentials", "errors": ["retry after 60 s"], "fields": []}
    clock[0] += 59.5
    assert _call(app, "GET", "/api/metrics", keys["admin"]).headers["retry-after"] == "1"
    clock[0] += 1.0
    assert _call(app, "GET", "/api/metrics", keys["admin"]).status_code == 200
    live = _call(app, "GET", "/api/metrics", keys["admin"]).json()["live"]
    assert live["auth_failures_by_reason"] == {"revoked_key": 3, "rate_limited": 2}


def test_revocation_applies_to_a_running_app_without_restart(keyed):
    settings, keys = keyed
    app = _app(settings)
    assert _call(app, "POST", "/api/predict", keys["p"], json={}).status_code == 422
    ApiKeyStore(settings.api_keys_path).revoke("p")
    deadline = time.monotonic() + 5
    while _call(app, "POST", "/api/predict", keys["p"], json={}).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still accepted after 5 s"
        time.sleep(0.2)


def test_auth_none_logs_that_the_api_runs_open(caplog):
    caplog.set_level(logging.WARNING)
    app = _app(Settings(api_auth="none"))
    assert "API authentication is OFF (CHURN_API_AUTH=none)" in caplog.text
    assert _call(app, "POST", "/api/predict", json={}).status_code == 422


def test_without_keys_or_jwks_the_api_refuses_everything_and_run_api_refuses_to_start(tmp_path):
    from stream_app.api import run_api
    from stream_app.api.auth import AuthConfigError

    settings = Settings(data_dir=tmp_path)
    assert _call(_app(settings), "POST", "/api/predict", json={}).status_code == 401
    with pytest.raises(AuthConfigError, match="churn api keys create"):
        run_api(settings, port=1)


# ---------------------------------------------------------------- bearer JWTs
@pytest.fixture(scope="module")
def idp():
    """A JWKS on loopback with one RSA key (kid k1); yields (jwks_url, private key)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": "k1", "use": "sig"}
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", private
    finally:
        server.shutdown()


def _token(private, kid: str = "k1", alg: str = "RS256", **claims) -> str:
    import jwt

    now = int(time.time())
    doc = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-crm", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in doc.items() if v is not None}, private, algorithm=alg, headers={"kid": kid})


def _hs256_with_public_key(private) -> str:
    """The algorithm-confusion forgery: HMAC-SHA256 keyed with the issuer's public key (PEM)."""
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    claims = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "exp": 2**31, "scope": "predict"}).encode())
    signature = b64(hmac.new(pem, header + b"." + claims, hashlib.sha256).digest())
    return (header + b"." + claims + b"." + signature).decode()


def test_bearer_jwts_from_the_configured_issuer(idp, tmp_path):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    jwks_url, private = idp
    settings = Settings(data_dir=tmp_path, api_jwks_url=jwks_url, api_jwt_issuer=ISSUER, api_jwt_audience=AUDIENCE)
    app = _app(settings)
    ok = lambda tok: _call(app, "POST", "/api/predict", tok, json={}).status_code  # noqa: E731
    assert ok(_token(private, scope="predict models:read")) == 422  # accepted: the body is judged
    assert ok(_token(private, scp=["predict"])) == 422
    assert ok(_token(private, scope="admin")) == 422
    assert ok(_token(private, scope="models:read")) == 403
    assert ok(_token(private)) == 403  # no scope claim: no scope
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "expired": _token(private, scope="predict", exp=int(time.time()) - 3600),
        "wrong audience": _token(private, scope="predict", aud="someone-else"),
        "wrong issuer": _token(private, scope="predict", iss="https://evil.test/"),
        "no exp": _token(private, scope="predict", exp=None),
        "other key, same kid": _token(other, scope="predict"),
        "unknown kid": _token(private, kid="k9", scope="predict"),
        "alg none": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": 2**31, "scope": "predict"}, None, algorithm="none"
        ),
        "HS256 keyed with the public key": _hs256_with_public_key(private),
    }
    for what, tok in refused.items():
        r = _call(app, "POST", "/api/predict", tok, json={})
        assert r.status_code == 401, what
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    # Keys and tokens side by side: a key still works when a JWKS is configured.
    _, key = ApiKeyStore(settings.api_keys_path).create("k", ["predict"])
    assert ok(key) == 422
