"""A SASL_SSL front for a broker that cannot enforce SCRAM or TLS itself (Tansu 0.6.0).

Tansu 0.6.0 stores no SCRAM credentials (its only storage engine's ``save`` of a user is a
no-op and every lookup answers "unknown-user") and never wraps its listener in TLS
(``docs/security.md`` has the source lines). So in ``churn stack up --secure`` Tansu listens
in plaintext on a loopback-only backend port and this gateway owns the public Kafka port:

1. TLS (Python's :mod:`ssl`, TLS 1.2 at least) with a certificate the stack made (trustme);
2. before login only three requests are accepted: ApiVersions (forwarded to the broker, so
   clients see its real versions), SaslHandshake v1 naming ``SCRAM-SHA-512`` (any other
   mechanism: error 33, UNSUPPORTED_SASL_MECHANISM) and SaslAuthenticate v0-v2, answered
   here with the :mod:`scramp` library; any other request closes the connection;
3. a failed login answers error 58 (SASL_AUTHENTICATION_FAILED) with Apache Kafka's own
   wording, then closes; an unknown user fails exactly like a wrong password;
4. after a successful login the connection is a byte pipe to the broker.

The users file holds, per user, only the salt and the SCRAM-SHA-512 stored and server keys
(RFC 5802, 8192 PBKDF2 iterations), never a password; it is re-read when it changes, so a
rotated password takes effect for the next connection without a restart. The login phase
has a deadline, refusals are logged at most once per :data:`REFUSAL_LOG_INTERVAL_S` per
reason (refused clients reconnect in tight loops), and no password or proof is ever logged.

Run it as ``python -m churn_stream.stack.kafka_gateway --users FILE --listen HOST:PORT
--broker HOST:PORT --cert PEM --key PEM`` (what
:class:`~churn_stream.stack.gateway_service.KafkaGatewayService` does).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import ssl
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scramp import ScramException, ScramMechanism

# Named explicitly: the module runs as __main__ under `python -m`.
logger = logging.getLogger("churn_stream.stack.kafka_gateway")

#: The one SASL mechanism the gateway offers.
MECHANISM = "SCRAM-SHA-512"
#: PBKDF2 iterations of the stored keys (Apache Kafka's minimum for SCRAM is 4096).
ITERATIONS = 8192
#: Seconds a client has from TCP accept to a completed SCRAM login (TLS handshake included).
LOGIN_TIMEOUT_S = 10.0
#: Least seconds between two log lines for the same refusal reason.
REFUSAL_LOG_INTERVAL_S = 10.0
#: Largest request accepted before login (ApiVersions and SASL messages are tiny).
MAX_PRELOGIN_FRAME = 64 * 1024
#: ApiVersions requests accepted before login.
MAX_PRELOGIN_API_VERSIONS = 2

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ERR_UNSUPPORTED_SASL_MECHANISM, ERR_SASL_AUTHENTICATION_FAILED = 33, 58
#: Apache Kafka's message for a failed SCRAM login (``SaslServerAuthenticator``).
AUTH_FAILED_MESSAGE = (
    f"Authentication failed during authentication due to invalid credentials with SASL mechanism {MECHANISM}"
)

_SCRAM = ScramMechanism(MECHANISM)


# ------------------------------------------------------------------ users file
@dataclass(frozen=True)
class ScramKeys:
    """What the gateway knows of one user: no password, only what verifies one (RFC 5802).

    Attributes
    ----------
    salt, stored_key, server_key : bytes
    iterations : int
    """

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def auth_info(self) -> tuple[bytes, bytes, bytes, int]:
        """The tuple :mod:`scramp`'s server ``auth_fn`` returns."""
        return self.salt, self.stored_key, self.server_key, self.iterations


def write_users_file(path: Path, passwords: Mapping[str, str]) -> None:
    """Write the SCRAM-SHA-512 keys of ``passwords`` to ``path`` (mode 600, atomically).

    Parameters
    ----------
    path : Path
        The users file the gateway reads.
    passwords : mapping of str to str
        User name to password; the passwords themselves are not written.
    """
    users = {}
    for name, password in passwords.items():
        salt, stored_key, server_key, iterations = _SCRAM.make_auth_info(password, iteration_count=ITERATIONS)
        users[name] = {
            "salt": base64.b64encode(salt).decode(),
            "stored_key": base64.b64encode(stored_key).decode(),
            "server_key": base64.b64encode(server_key).decode(),
            "iterations": iterations,
        }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"mechanism": MECHANISM, "users": users}, out, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_users_file(path: Path) -> dict[str, ScramKeys]:
    """The users of a file written by :func:`write_users_file`.

    Raises
    ------
    ValueError
        If the file is for another mechanism or a user's entry is incomplete.
    """
    doc = json.loads(path.read_text())
    if doc.get("mechanism") != MECHANISM:
        raise ValueError(f"{path}: expected mechanism {MECHANISM}, got {doc.get('mechanism')!r}")
    users = {}
    for name, entry in doc["users"].items():
        users[name] = ScramKeys(
            base64.b64decode(entry["salt"]),
            base64.b64decode(entry["stored_key"]),
            base64.b64decode(entry["server_key"]),
            int(entry["iterations"]),
        )
    return users


class _Users:
    """The users file, re-read when its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, ScramKeys] = {}
        # Unknown users get a verifier for a random password: the exchange fails at the
        # proof, as for a wrong password, and costs the same.
        salt, stored_key, server_key, iterations = _SCRAM.make_auth_info(
            secrets.token_urlsafe(32), iteration_count=ITERATIONS
        )
        self.decoy = ScramKeys(salt, stored_key, server_key, iterations)

    def current(self) -> dict[str, ScramKeys]:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._users = read_users_file(self.path)
            self._stamp = stamp
            logger.info("users loaded path=%s users=%d", self.path, len(self._users))
        return self._users


# ------------------------------------------------------------------- the wire
def _uvarint(buf: bytes, offset: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 28:
            raise ValueError("varint too long")


def _enc_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


@dataclass(frozen=True)
class _Request:
    api_key: int
    api_version: int
    correlation_id: int
    body: bytes


def _parse_request(payload: bytes) -> _Request:
    """Header v1 (or v2 for flexible SaslAuthenticate) and the body after it."""
    api_key, api_version, correlation_id, client_id_len = struct.unpack(">hhih", payload[:10])
    offset = 10 + max(client_id_len, 0)
    if api_key == SASL_AUTHENTICATE and api_version >= 2:  # header v2: tagged fields
        count, offset = _uvarint(payload, offset)
        for _ in range(count):
            _tag, offset = _uvarint(payload, offset)
            size, offset = _uvarint(payload, offset)
            offset += size
    if offset > len(payload):
        raise ValueError("request header longer than its frame")
    return _Request(api_key, api_version, correlation_id, payload[offset:])


def _handshake_mechanism(body: bytes) -> str:
    (length,) = struct.unpack(">h", body[:2])
    return body[2 : 2 + length].decode("utf-8", errors="replace")


def _handshake_response(correlation_id: int, error: int) -> bytes:
    mechanism = MECHANISM.encode()
    body = struct.pack(">ihi", correlation_id, error, 1) + struct.pack(">h", len(mechanism)) + mechanism
    return _frame(body)


def _authenticate_token(request: _Request) -> bytes:
    if request.api_version >= 2:
        length, offset = _uvarint(request.body, 0)
        return request.body[offset : offset + length - 1]
    (length,) = struct.unpack(">i", request.body[:4])
    return request.body[4 : 4 + length]


def _authenticate_response(correlation_id: int, version: int, error: int, message: str | None, token: bytes) -> bytes:
    if version >= 2:  # flexible: response header v1 (tagged fields) and compact fields
        text = b"\x00" if message is None else _enc_uvarint(len(message.encode()) + 1) + message.encode()
        body = struct.pack(">i", correlation_id) + b"\x00" + struct.pack(">h", error) + text
        body += _enc_uvarint(len(token) + 1) + token + struct.pack(">q", 0) + b"\x00"
        return _frame(body)
    text = struct.pack(">h", -1) if message is None else struct.pack(">h", len(message.encode())) + message.encode()
    body = struct.pack(">ih", correlation_id, error) + text + struct.pack(">i", len(token)) + token
    if version >= 1:
        body += struct.pack(">q", 0)  # session_lifetime_ms 0: no re-authentication
    return _frame(body)


# ------------------------------------------------------------------ refusals
class _Refused(Exception):
    """A connection refused before login; ``reason`` is a short, log-safe code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _RefusalLog:
    """One WARNING per reason per interval, with the count of refusals folded into it."""

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def refused(self, reason: str, peer: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval_s) < self.interval_s:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        suppressed = self._suppressed.pop(reason, 0)
        self._last[reason] = now
        logger.warning("refused reason=%s peer=%s also_refused_since_last_line=%d", reason, peer, suppressed)


# ------------------------------------------------------------------ the server
class KafkaGateway:
    """TLS + SASL/SCRAM-SHA-512 in front of a plaintext broker at ``broker``.

    Parameters
    ----------
    users_path : Path
        File written by :func:`write_users_file`.
    broker : tuple of (str, int)
        The broker's plaintext listener (loopback).
    ssl_context : ssl.SSLContext or None
        Server context; ``None`` only in tests of the SASL layer alone.
    login_timeout_s : float, default :data:`LOGIN_TIMEOUT_S`
    """

    def __init__(
        self,
        users_path: Path,
        broker: tuple[str, int],
        ssl_context: ssl.SSLContext | None,
        login_timeout_s: float = LOGIN_TIMEOUT_S,
    ) -> None:
        self.users = _Users(users_path)
        self.users.current()  # fail at start, not at the first client, on a bad file
        self.broker = broker
        self.ssl_context = ssl_context
        self.login_timeout_s = login_timeout_s
        self.refusals = _RefusalLog()

    async def serve(self, host: str, port: int) -> None:
        """Accept connections on ``host:port`` until cancelled."""
        server = await asyncio.start_server(
            self._handle,
            host,
            port,
            ssl=self.ssl_context,
            ssl_handshake_timeout=self.login_timeout_s if self.ssl_context else None,
        )
        logger.info(
            "listening address=%s:%d tls=%s mechanism=%s broker=%s:%d",
            host,
            port,
            self.ssl_context is not None,
            MECHANISM,
            *self.broker,
        )
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        backend: list[asyncio.StreamWriter] = []
        try:
            try:
                broker = await asyncio.wait_for(self._login(reader, writer, backend, peer), self.login_timeout_s)
            except TimeoutError:
                raise _Refused("login-timeout") from None
            await asyncio.gather(_pipe(reader, backend[0]), _pipe(broker, writer))
        except _Refused as refusal:
            self.refusals.refused(refusal.reason, peer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, struct.error) as exc:
            logger.debug("connection closed peer=%s reason=%s", peer, type(exc).__name__)
        except ValueError:
            self.refusals.refused("malformed-request", peer)
        finally:
            for w in (writer, *backend):
                w.close()

    async def _broker(self, backend: list[asyncio.StreamWriter]) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(*self.broker)
        backend.append(writer)
        return reader

    async def _login(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        backend: list[asyncio.StreamWriter],
        peer: str,
    ) -> asyncio.StreamReader:
        """Run the pre-login exchange; return the broker's reader once the client is authenticated."""
        broker: asyncio.StreamReader | None = None
        api_versions_seen = 0
        server = None
        known_user: str | None = None
        state = "start"
        while True:
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            if not 0 < size <= MAX_PRELOGIN_FRAME:
                raise _Refused("bad-frame-size")
            payload = await reader.readexactly(size)
            request = _parse_request(payload)
            if request.api_key == API_VERSIONS and api_versions_seen < MAX_PRELOGIN_API_VERSIONS:
                # Forwarded: clients see the broker's own versions (SASL APIs included).
                api_versions_seen += 1
                if broker is None:
                    broker = await self._broker(backend)
                backend[0].write(_frame(payload))
                await backend[0].drain()
                (answer_size,) = struct.unpack(">i", await broker.readexactly(4))
                writer.write(_frame(await broker.readexactly(answer_size)))
                await writer.drain()
                continue
            if request.api_key == SASL_HANDSHAKE and request.api_version >= 1 and state == "start":
                if _handshake_mechanism(request.body) != MECHANISM:
                    writer.write(_handshake_response(request.correlation_id, ERR_UNSUPPORTED_SASL_MECHANISM))
                    await writer.drain()
                    raise _Refused("unsupported-mechanism")
                writer.write(_handshake_response(request.correlation_id, 0))
                await writer.drain()
                state = "handshaken"
                continue
            if request.api_key == SASL_AUTHENTICATE and state in ("handshaken", "first-sent"):
                token = _authenticate_token(request)
                try:
                    if state == "handshaken":
                        users = self.users.current()

                        def auth_fn(username: str, users: Mapping[str, ScramKeys] = users) -> tuple:
                            nonlocal known_user
                            keys = users.get(username)
                            known_user = username if keys is not None else None
                            return (keys or self.users.decoy).auth_info()

                        server = _SCRAM.make_server(auth_fn)
                        server.set_client_first(token.decode())
                        answer = server.get_server_first().encode()
                    else:
                        assert server is not None
                        server.set_client_final(token.decode())
                        answer = server.get_server_final().encode()
                        if known_user is None:  # the decoy cannot verify, but never let it log in
                            raise ScramException("unknown user")
                except (ScramException, UnicodeDecodeError):
                    writer.write(
                        _authenticate_response(
                            request.correlation_id,
                            request.api_version,
                            ERR_SASL_AUTHENTICATION_FAILED,
                            AUTH_FAILED_MESSAGE,
                            b"",
                        )
                    )
                    await writer.drain()
                    raise _Refused("authentication-failed") from None
                writer.write(_authenticate_response(request.correlation_id, request.api_version, 0, None, answer))
                await writer.drain()
                if state == "handshaken":
                    state = "first-sent"
                    continue
                logger.info("authenticated peer=%s user=%s", peer, known_user)
                return broker if broker is not None else await self._broker(backend)
            raise _Refused(f"request-before-login api_key={request.api_key}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context for ``cert`` (chain, PEM) and ``key`` (PEM)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    """``python -m churn_stream.stack.kafka_gateway``: run the gateway until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m churn_stream.stack.kafka_gateway", description=__doc__)
    parser.add_argument("--users", type=Path, required=True, help="users file (SCRAM keys, no passwords)")
    parser.add_argument("--listen", type=_host_port, required=True, help="HOST:PORT clients connect to")
    parser.add_argument("--broker", type=_host_port, required=True, help="HOST:PORT of the plaintext broker")
    parser.add_argument("--cert", type=Path, required=True, help="server certificate chain (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="server private key (PEM)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    gateway = KafkaGateway(args.users, args.broker, server_ssl_context(args.cert, args.key))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(gateway.serve(*args.listen))


if __name__ == "__main__":
    main()
