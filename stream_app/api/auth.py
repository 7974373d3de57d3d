"""Who may call the API: API keys and bearer JWTs, scopes per route, refusals counted and rate-limited.

Every request but ``GET /health`` and the documentation (``stream_app.api.app.PUBLIC_PATHS``) carries
``Authorization: Bearer <credential>``:

- an API key ``chs_<id>_<secret>`` (:mod:`plumbing.api_keys`: salted scrypt hashes in the
  key file, looked up by id, compared in constant time), or
- when ``CHURN_API_JWKS_URL`` is set, an OAuth2 access token (a JWT) signed by a key of
  that JWKS, with the configured ``iss`` and ``aud``, unexpired; scopes from its
  ``scope`` (space-separated) or ``scp`` (list or string) claim.

Scopes (:data:`ROUTE_SCOPES`): ``predict`` for ``POST /api/predict``, ``models:read`` for
``GET /api/models`` and ``GET /api/metrics``, ``admin`` for everything. A missing or
refused credential is 401 with ``WWW-Authenticate: Bearer`` (RFC 6750), a credential
without the route's scope 403, both with an :class:`~schemas.http.ErrorResponse` body.
Each refusal is counted by reason (``GET /api/metrics`` ``live.auth_failures_by_reason``).
A client address with ``max_failures`` 401s within a minute is answered 429 with
``Retry-After`` (seconds until its oldest counted failure is a minute old), whatever it
sends, until then (:class:`plumbing.failure_limiter.FailureLimiter`, shared with the dashboard's login).

What is presented is never logged, counted or echoed: logs name the reason, the client
address and, for a key, its id (not secret).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from plumbing.api_keys import SCOPE_ADMIN, SCOPE_MODELS_READ, SCOPE_PREDICT, ApiKeyError, ApiKeyStore, looks_like_key
from plumbing.failure_limiter import FailureLimiter
from plumbing.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

#: The scope each route needs (``admin`` grants all). Any other path needs a valid credential of any scope.
ROUTE_SCOPES = {"/api/predict": SCOPE_PREDICT, "/api/models": SCOPE_MODELS_READ, "/api/metrics": SCOPE_MODELS_READ}
#: The realm named in ``WWW-Authenticate``.
REALM = "churn-api"
#: Concurrent scrypt checks (16 MiB and ~50 ms each): wrong keys cannot take every thread.
SCRYPT_CONCURRENCY = 2


class AuthConfigError(SettingsError):
    """Authentication is on but nothing to check credentials against (no key file, no JWKS)."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts for.

    Attributes
    ----------
    name : str
        The key's name, or the token's ``sub``.
    scopes : frozenset of str
    kind : str
        ``key`` or ``jwt``.
    """

    name: str
    scopes: frozenset[str]
    kind: str

    def may(self, scope: str | None) -> bool:
        """Whether it holds ``scope`` (None: any credential will do) or ``admin``."""
        return scope is None or scope in self.scopes or SCOPE_ADMIN in self.scopes


class AuthFailure(Exception):
    """A refused request: its status, the counter's reason and the answer's summary line.

    Parameters
    ----------
    status : int
        401, 403 or 429.
    reason : str
        The counter label (``missing_credential``, ``unknown_key``, ``insufficient_scope`` ...).
    error : str
        The answer's one-line summary (never the credential).
    detail : str
        One line for the answer's ``errors``.
    """

    def __init__(self, status: int, reason: str, error: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.error = error
        self.detail = detail


class JwtVerifier:
    """Bearer JWTs signed by a key of the issuer's JWKS (PyJWT; keys fetched and cached by ``kid``).

    Parameters
    ----------
    jwks_url : str
    issuer, audience : str
        Required ``iss`` and ``aud``.
    leeway_s : float, default 30
        Clock skew allowed on ``exp``/``nbf``/``iat``.
    """

    #: Asymmetric algorithms only: ``none`` and HMAC (a public key used as a shared secret) are refused.
    ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

    def __init__(self, jwks_url: str, issuer: str, audience: str, leeway_s: float = 30.0) -> None:
        import jwt

        self._jwt = jwt
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def __repr__(self) -> str:
        return f"JwtVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    def verify(self, token: str) -> Principal:
        """The principal of a valid token (blocking: may fetch the JWKS).

        Raises
        ------
        AuthFailure
            401 ``invalid_token`` naming PyJWT's error class (expired, wrong audience, bad signature ...).
        """
        jwt = self._jwt
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(self.ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError:
            logger.error("JWKS unreachable, token refused")
            raise AuthFailure(
                401, "jwks_unavailable", "invalid credential", "the token's issuer keys are unavailable"
            ) from None
        except jwt.PyJWTError as exc:
            raise AuthFailure(
                401, "invalid_token", "invalid credential", f"token refused: {type(exc).__name__}"
            ) from None
        raw: Any = claims.get("scope", claims.get("scp", ""))
        scopes = raw.split() if isinstance(raw, str) else [str(s) for s in raw] if isinstance(raw, list) else []
        return Principal(str(claims.get("sub", "")), frozenset(scopes), "jwt")


class Authenticator:
    """Checks a request's credential against the key file and/or the JWKS.

    Parameters
    ----------
    keys : ApiKeyStore or None
    jwt : JwtVerifier or None
    max_failures : int
        See :class:`FailureLimiter`.
    """

    def __init__(self, keys: ApiKeyStore | None, jwt: JwtVerifier | None, max_failures: int) -> None:
        self.keys = keys
        self.jwt = jwt
        self.limiter = FailureLimiter(max_failures)
        self._scrypt = asyncio.Semaphore(SCRYPT_CONCURRENCY)

    def __repr__(self) -> str:
        return f"Authenticator(keys={self.keys!r}, jwt={self.jwt!r}, max_failures={self.limiter.max_failures})"

    @classmethod
    def from_settings(cls, settings: Settings, *, require_credentials: bool = False) -> Authenticator | None:
        """The authenticator ``settings`` ask for; None when ``CHURN_API_AUTH=none``.

        Parameters
        ----------
        settings : plumbing.settings.Settings
        require_credentials : bool, default False
            Raise when there is nothing to check against (``churn api`` refuses to start);
            otherwise such an API refuses every request.

        Raises
        ------
        AuthConfigError
            With ``require_credentials``, when no key is active in the key file and no JWKS is set.
        """
        if settings.api_auth == "none":
            return None
        keys = ApiKeyStore(settings.api_keys_path)
        jwt = (
            JwtVerifier(settings.api_jwks_url, settings.api_jwt_issuer, settings.api_jwt_audience)
            if settings.api_jwks_url
            else None
        )
        try:
            active = keys.active()
        except ApiKeyError as err:
            raise AuthConfigError(str(err)) from None
        if active and keys.path.stat().st_mode & 0o077:
            logger.warning("API key file is readable by others path=%s: chmod 600 it", keys.path)
        if require_credentials and jwt is None and not active:
            raise AuthConfigError(
                f"API authentication is on and {keys.path} holds no active key (and CHURN_API_JWKS_URL is not set): "
                "run `churn api keys create --name NAME --scope predict` (or set CHURN_API_AUTH=none for local "
                "development only)"
            )
        return cls(keys, jwt, settings.api_auth_max_failures)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value.

        Raises
        ------
        AuthFailure
            401 for a missing, malformed, unknown, revoked or wrong credential.
        """
        if not authorization:
            raise AuthFailure(
                401,
                "missing_credential",
                "authentication required",
                "Authorization: expected 'Bearer <API key or token>'",
            )
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthFailure(
                401,
                "malformed_credential",
                "authentication required",
                "Authorization: expected 'Bearer <API key or token>'",
            )
        if looks_like_key(credential) or self.jwt is None:
            if self.keys is None:
                raise AuthFailure(401, "unknown_key", "invalid credential", "the API key was not accepted")
            # Known answers (and a secret this process already accepted) on the loop; scrypt in a thread.
            check = self.keys.check_fast(credential)
            if check is None:
                async with self._scrypt:
                    check = await asyncio.to_thread(self.keys.verify, credential)
            if check.record is None:
                raise AuthFailure(401, check.reason, "invalid credential", "the API key was not accepted")
            return Principal(check.record.name, frozenset(check.record.scopes), "key")
        return await asyncio.to_thread(self.jwt.verify, credential)


class RequireCredential:
    """ASGI middleware: a credential with the route's scope, or 401/403/429 before the route runs.

    Parameters
    ----------
    app : ASGI application
    auth : Authenticator
    failures : dict of str to int
        Refusals by reason (shared with ``GET /api/metrics``).
    public_paths : tuple of str
        Paths answered without a credential; one ending in ``/`` is a prefix.
    """

    def __init__(
        self, app: ASGIApp, auth: Authenticator, failures: dict[str, int], public_paths: tuple[str, ...]
    ) -> None:
        self.app = app
        self.auth = auth
        self.failures = failures
        self.public_exact = frozenset(p for p in public_paths if not p.endswith("/"))
        self.public_prefixes = tuple(p for p in public_paths if p.endswith("/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (and websockets, which this API has none of)
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.public_exact or path.startswith(self.public_prefixes):
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        limiter = self.auth.limiter
        wait = limiter.retry_after(client, time.monotonic())
        if wait is not None:
            self._count("rate_limited")
            await self._refuse(
                send,
                AuthFailure(429, "rate_limited", "too many refused credentials", f"retry after {wait} s"),
                {"retry-after": str(wait)},
            )
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        try:
            principal = await self.auth.authenticate(header)
        except AuthFailure as failure:
            self._count(failure.reason)
            at_limit = limiter.record(client, time.monotonic())
            logger.info(
                "API request refused status=401 reason=%s client=%s path=%s", failure.reason, client, scope["path"]
            )
            if at_limit:
                logger.warning(
                    "API client rate-limited client=%s failures=%d window_s=%.0f",
                    client,
                    limiter.max_failures,
                    limiter.window_s,
                )
            error = "invalid_token" if failure.reason != "missing_credential" else None
            await self._refuse(send, failure, {"www-authenticate": _challenge(error)})
            return
        needed = ROUTE_SCOPES.get(scope["path"])
        if not principal.may(needed):
            self._count("insufficient_scope")
            logger.info(
                "API request refused status=403 reason=insufficient_scope principal=%s kind=%s path=%s",
                principal.name,
                principal.kind,
                scope["path"],
            )
            await self._refuse(
                send,
                AuthFailure(
                    403,
                    "insufficient_scope",
                    f"scope {needed} required",
                    f"this credential's scopes: {', '.join(sorted(principal.scopes)) or 'none'}",
                ),
                {"www-authenticate": _challenge("insufficient_scope", needed)},
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    def _count(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    @staticmethod
    async def _refuse(send: Send, failure: AuthFailure, headers: dict[str, str]) -> None:
        body = orjson.dumps(
            {"error": failure.error, "errors": [failure.detail] if failure.detail else [], "fields": []}
        )
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": failure.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})


def _challenge(error: str | None, scope: str | None = None) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 section 3)."""
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)
