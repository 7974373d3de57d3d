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
broker accepts, and only two integers of the responses are read.
"""

from __future__ import annotations

import socket
import struct

from churn_stream.stack.errors import StackError

_API_VERSIONS = 18
_METADATA = 3
_CORRELATION_ID = 0x43534B  # arbitrary, checked on the way back
_CLIENT_ID = b"churn-stack"


def kafka_answers(host: str, port: int, timeout: float) -> bool:
    """True when the broker at ``host:port`` answers ApiVersions and lists a broker in Metadata.

    Parameters
    ----------
    host : str
    port : int
    timeout : float
        Seconds for the connection and for each response.

    Returns
    -------
    bool
        False when ApiVersions returns an error code or Metadata lists no broker (a
        durable Tansu answers ApiVersions before its storage engine is ready).

    Raises
    ------
    OSError
        If the connection fails, times out or closes mid-response.
    StackError
        If a response does not carry the request's correlation id.
    """
    api_versions = kafka_request(host, port, _API_VERSIONS, 0, b"", timeout)
    if struct.unpack(">h", api_versions[:2])[0] != 0:
        return False
    # Metadata v1 with a null topic array: all topics; needs the storage engine.
    metadata = kafka_request(host, port, _METADATA, 1, struct.pack(">i", -1), timeout)
    return bool(struct.unpack(">i", metadata[:4])[0] >= 1)


def kafka_request(host: str, port: int, api_key: int, api_version: int, body: bytes, timeout: float) -> bytes:
    """One raw Kafka request/response round trip.

    Parameters
    ----------
    host : str
    port : int
    api_key, api_version : int
        Kafka protocol request type and version.
    body : bytes
        The request body after the header.
    timeout : float
        Seconds for the connection and for the response.

    Returns
    -------
    bytes
        The response after its correlation id.

    Raises
    ------
    OSError
        If the connection fails, times out or closes mid-response.
    StackError
        If the response's correlation id is not the request's.
    """
    header = struct.pack(">hhih", api_key, api_version, _CORRELATION_ID, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        response = _recv_exactly(sock, size)
    if struct.unpack(">i", response[:4])[0] != _CORRELATION_ID:
        raise StackError("kafka: response correlation id does not match the request")
    return response[4:]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return bytes(data)
