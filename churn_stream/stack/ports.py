"""Ports of the local stack: endpoint parsing, SeaweedFS's port layout, free-port probing."""

from __future__ import annotations

import contextlib
import random
import socket
from urllib.parse import urlsplit

import psutil

from churn_stream.stack.errors import StackError

#: Internal SeaweedFS HTTP ports besides the S3 API. ``weed mini`` opens each of them plus a
#: gRPC port at HTTP port + :data:`GRPC_OFFSET`; all are set explicitly so two stacks can
#: coexist on one host. The offset is not a free choice: the embedded maintenance worker
#: dials the admin server at admin port + 10000 whatever ``-admin.port.grpc`` says.
WEED_PORT_NAMES: tuple[str, ...] = ("master", "volume", "filer", "admin")

#: SeaweedFS's gRPC port = HTTP port + this.
GRPC_OFFSET = 10000


def split_host_port(endpoint: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``host:port``, ``scheme://host:port[/path]`` or the first entry of a comma list.

    Parameters
    ----------
    endpoint : str
        The endpoint as written in the settings.
    default_port : int, optional
        Port to use when ``endpoint`` names none.

    Returns
    -------
    tuple of (str, int)
        Host and port.

    Raises
    ------
    ValueError
        If no port can be found and ``default_port`` is ``None``.
    """
    first = endpoint.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"//{first}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"endpoint: expected host:port, got {endpoint!r}") from None
    if port is None:
        if default_port is None:
            raise ValueError(f"endpoint: expected host:port, got {endpoint!r}")
        port = default_port
    if not parts.hostname:
        raise ValueError(f"endpoint: expected host:port, got {endpoint!r}")
    return parts.hostname, port


def derive_weed_ports(s3_port: int) -> dict[str, int]:
    """Internal SeaweedFS HTTP ports for a stack whose S3 API listens on ``s3_port``.

    Master, volume, filer and admin take ``s3_port + 1 .. + 4``; each gRPC port is its
    HTTP port + :data:`GRPC_OFFSET`.

    Parameters
    ----------
    s3_port : int
        Port of the S3 API.

    Returns
    -------
    dict of str to int
        One entry per name in :data:`WEED_PORT_NAMES`.
    """
    return {name: s3_port + i for i, name in enumerate(WEED_PORT_NAMES, start=1)}


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (TIME_WAIT leftovers do not count).

    Parameters
    ----------
    host : str
        Address to bind, e.g. ``"127.0.0.1"``.
    port : int

    Returns
    -------
    bool
        False when a socket with ``SO_REUSEADDR`` can bind ``(host, port)``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def listener_of(port: int) -> str:
    """``pid N (name)`` of the process listening on ``port``, or a hint when there is none.

    Parameters
    ----------
    port : int

    Returns
    -------
    str
    """
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another socket (no listener found: maybe a closed connection in TIME_WAIT; retry in a minute)"


def free_ports(n: int, host: str = "127.0.0.1", paired_offset: int | None = None) -> list[int]:
    """``n`` distinct TCP ports that are free on ``host`` right now.

    Parameters
    ----------
    n : int
        How many ports.
    host : str, default "127.0.0.1"
    paired_offset : int, optional
        Also require ``port + paired_offset`` to be free (and distinct from every other
        port returned), as SeaweedFS needs for its gRPC ports.

    Returns
    -------
    list of int

    Raises
    ------
    StackError
        If not enough free port pairs are found.
    ValueError
        If ``paired_offset`` leaves no room below the ephemeral range.

    Notes
    -----
    The ports are only probed, not reserved: another process may take one before the
    caller binds it.
    """
    if paired_offset is None:
        sockets = []
        try:
            for _ in range(n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((host, 0))
                sockets.append(sock)
            return [sock.getsockname()[1] for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
    rng = random.SystemRandom()
    # Both ports of a pair stay below Linux's ephemeral range (32768+): the kernel hands
    # those to outgoing connections, whose TIME_WAIT leftovers then block a listener.
    low, high = 10000, 32767 - paired_offset
    if high < low:
        raise ValueError(f"paired_offset: expected at most {32767 - low}, got {paired_offset}")
    taken: set[int] = set()
    ports: list[int] = []
    for _ in range(200 * n):
        if len(ports) == n:
            break
        port = rng.randint(low, high)
        pair = port + paired_offset
        if {port, pair} & taken or port_in_use(host, port) or port_in_use(host, pair):
            continue
        ports.append(port)
        taken.update((port, pair))
    if len(ports) < n:
        raise StackError(f"found only {len(ports)} of {n} free port pairs on {host}")
    return ports
