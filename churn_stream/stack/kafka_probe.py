"""Is a Kafka broker answering? Two raw requests on one socket: ApiVersions, then Metadata.

Why raw bytes and not aiokafka (a dependency already): the check is polled every 0.2 s
from synchronous code (the CLI, test fixtures) while a broker starts.

- aiokafka's public client (``AIOKafkaClient.bootstrap``) logs an ERROR for every refused
  connection and a WARNING for every failed Metadata request, so ``churn stack status``
  on a stopped broker, or ``churn stack up`` waiting for a durable broker's storage,
  would print one such line per poll; it also starts a metadata task to cancel.
- Its quiet layer (``aiokafka.conn.create_conn`` with ``aiokafka.protocol``) is
  internal, and changed shape within the versions ``pyproject.toml`` accepts
  (``MetadataRequest`` was a list of versioned structs before 0.13, a class since).
- confluent-kafka is a test-only extra.

The two requests use the oldest versions (ApiVersions v0, Metadata v1), which every
broker accepts, and only two integers of the responses are read. On the secure stack the
same two requests go over TLS with a SCRAM-SHA-512 login between them (SaslHandshake v1,
SaslAuthenticate v1, the SCRAM messages from :mod:`scramp`): health there means a real
client could log in and reach the broker.
"""

from __future__ import annotations

import socket
import ssl
import struct

from churn_stream.stack.errors import StackError

_API_VERSIONS = 18
_METADATA = 3
_SASL_HANDSHAKE = 17
_SASL_AUTHENTICATE = 36
_CORRELATION_ID = 0x43534B  # arbitrary, checked on the way back
_CLIENT_ID = b"churn-stack"


def kafka_answers(
    host: str,
    port: int,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    scram_login: tuple[str, str] | None = None,
) -> bool:
    """True when the broker at ``host:port`` answers ApiVersions and lists a broker in Metadata.

    Parameters
    ----------
    host : str
    port : int
    timeout : float
        Seconds for the connection and for each response.
    ssl_context : ssl.SSLContext, optional
        Speak TLS (the secure stack's gateway).
    scram_login : tuple of (str, str), optional
        ``(user, password)``: log in with SASL/SCRAM-SHA-512 after ApiVersions and before
        Metadata, as a real client does. The password is never logged.

    Returns
    -------
    bool
        False when ApiVersions returns an error code or Metadata lists no broker (a
        durable Tansu answers ApiVersions before its storage engine is ready).

    Raises
    ------
    OSError
        If the connection fails, times out or closes mid-response (``ssl.SSLError`` included).
    StackError
        If a response does not carry the request's correlation id, or the SCRAM login fails.
    """
    with _connect(host, port, timeout, ssl_context) as sock:
        api_versions = _round_trip(sock, _API_VERSIONS, 0, b"")
        if struct.unpack(">h", api_versions[:2])[0] != 0:
            return False
        if scram_login is not None:
            _scram_sha512_login(sock, *scram_login)
        # Metadata v1 with a null topic array: all topics; needs the storage engine.
        metadata = _round_trip(sock, _METADATA, 1, struct.pack(">i", -1))
    return bool(struct.unpack(">i", metadata[:4])[0] >= 1)


def _connect(host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if ssl_context is None:
        return sock
    try:
        return ssl_context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _round_trip(sock: socket.socket, api_key: int, api_version: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, api_version, _CORRELATION_ID, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
    response = _recv_exactly(sock, size)
    if struct.unpack(">i", response[:4])[0] != _CORRELATION_ID:
        raise StackError("kafka: response correlation id does not match the request")
    return response[4:]


def _scram_sha512_login(sock: socket.socket, user: str, password: str) -> None:
    """SaslHandshake v1 + two SaslAuthenticate v1 round trips (RFC 5802 via scramp)."""
    from scramp import ScramClient, ScramException

    mechanism = b"SCRAM-SHA-512"
    handshake = _round_trip(sock, _SASL_HANDSHAKE, 1, struct.pack(">h", len(mechanism)) + mechanism)
    if struct.unpack(">h", handshake[:2])[0] != 0:
        raise StackError("kafka: the broker does not offer SCRAM-SHA-512")
    client = ScramClient(["SCRAM-SHA-512"], user, password)
    try:
        server_first = _sasl_authenticate(sock, client.get_client_first().encode())
        client.set_server_first(server_first.decode())
        server_final = _sasl_authenticate(sock, client.get_client_final().encode())
        client.set_server_final(server_final.decode())
    except ScramException:
        raise StackError("kafka: the broker's SCRAM answer did not verify") from None


def _sasl_authenticate(sock: socket.socket, token: bytes) -> bytes:
    response = _round_trip(sock, _SASL_AUTHENTICATE, 1, struct.pack(">i", len(token)) + token)
    error = struct.unpack(">h", response[:2])[0]
    (message_len,) = struct.unpack(">h", response[2:4])
    offset = 4 + max(message_len, 0)
    if error != 0:
        raise StackError(f"kafka: SCRAM login refused (error code {error})")
    (token_len,) = struct.unpack(">i", response[offset : offset + 4])
    return response[offset + 4 : offset + 4 + token_len]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return bytes(data)
