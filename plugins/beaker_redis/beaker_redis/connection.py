"""Redis URLs, connection options, and one shared client (one connection pool) per URL and options.

Descriptions used in messages are rebuilt from the parsed URL, so they never contain a password; error texts
coming from redis-py are scrubbed of the password as well, in case a library message ever quotes it.
"""
from __future__ import annotations

import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from beaker_core.exceptions import ConfigurationError
from beaker_core.util import coerce_bool, coerce_float, coerce_int

SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
DEFAULT_PORT = 6379


@dataclass
class Target:
    """Where a backend connects: a parsed URL (or a client given as it is), and how to show it."""

    url: str | None
    display: str
    cluster: bool
    password: str | None = None
    nodes: list[tuple[str, int]] = field(default_factory=list)  # cluster startup nodes
    node_options: dict[str, Any] = field(default_factory=dict)  # cluster: username, password, ssl


def _scheme_hint(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else url[:0]
    return f"a URL with scheme {scheme!r}" if scheme else "a URL without a scheme"


def parse_single_url(url: str, owner: str) -> Target:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL, as redis-py reads it."""
    from redis.connection import parse_url

    if not url.startswith(SINGLE_SCHEMES):
        raise ConfigurationError(
            f"{owner}: url must start with redis://, rediss:// or unix:// "
            f"(or redis+cluster:// for a cluster), not {_scheme_hint(url)}")
    try:
        parts = parse_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"{owner}: invalid url ({exc})") from None
    user = f"{parts['username']}@" if parts.get("username") else ""
    db = parts.get("db", 0)
    if url.startswith("unix://"):
        display = f"unix://{user}{parts.get('path', '')}?db={db}"
    else:
        scheme = "rediss" if url.startswith("rediss://") else "redis"
        host = parts.get("host", "localhost")
        if ":" in host:
            host = f"[{host}]"
        display = f"{scheme}://{user}{host}:{parts.get('port', DEFAULT_PORT)}/{db}"
    return Target(url=url, display=display, cluster=False, password=parts.get("password"))


def describe_client(client: Any) -> Target:
    """A target for a client instance passed in (its password is never shown)."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        names = sorted(node.name for node in client.get_nodes())
        return Target(url=None, display="redis+cluster://" + ",".join(names), cluster=True)
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        display = f"unix://{kwargs['path']}?db={db}"
    else:
        display = f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', DEFAULT_PORT)}/{db}"
    return Target(url=None, display=display, cluster=False, password=kwargs.get("password"))


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (and its percent-encoded form) replaced by ``***``."""
    if secret:
        from urllib.parse import quote
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, "***")
    return text


# -- options -----------------------------------------------------------------------------------------------------

def client_options(owner: str, *, socket_timeout: Any, socket_connect_timeout: Any, max_connections: Any,
                   health_check_interval: Any, retry_on_timeout: Any, username: Any, password: Any, db: Any,
                   ssl_ca_certs: Any, ssl_cert_reqs: Any, connection_options: Any) -> dict[str, Any]:
    """Keyword arguments for redis-py, coerced from configuration strings; None values left out."""
    options: dict[str, Any] = {}
    for name, value in (("socket_timeout", socket_timeout), ("socket_connect_timeout", socket_connect_timeout),
                        ("health_check_interval", health_check_interval)):
        if value is not None:
            options[name] = coerce_float(f"{owner} option {name}", value, minimum=0.0)
    if max_connections is not None:
        options["max_connections"] = coerce_int(f"{owner} option max_connections", max_connections, minimum=1)
    if retry_on_timeout is not None:
        options["retry_on_timeout"] = coerce_bool(f"{owner} option retry_on_timeout", retry_on_timeout)
    if db is not None:
        options["db"] = coerce_int(f"{owner} option db", db, minimum=0)
    for name, value in (("username", username), ("password", password), ("ssl_ca_certs", ssl_ca_certs),
                        ("ssl_cert_reqs", ssl_cert_reqs)):
        if value is not None:
            if not isinstance(value, str):
                raise ConfigurationError(f"{owner} option {name} must be a string")
            options[name] = value
    if connection_options is not None:
        if not isinstance(connection_options, dict) or not all(isinstance(key, str) for key in connection_options):
            raise ConfigurationError(f"{owner} option connection_options must be a dict of keyword arguments "
                                     f"for redis-py")
        options.update(connection_options)
    return options


# -- reply timeouts ---------------------------------------------------------------------------------------------

def set_io_timeout(sock: socket.socket, seconds: float) -> bool:
    """Make reads and writes on the blocking socket ``sock`` fail after ``seconds`` (an OSError with EAGAIN);
    False where the platform does not support it."""
    if not sys.platform.startswith("linux"):
        return False
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:
        return False
    return True


_timeout_classes: dict[Any, Any] = {}


def use_kernel_timeouts(kwargs: dict[str, Any]) -> None:
    """Move ``socket_timeout`` into the kernel for plain TCP and unix connections (in place).

    A Python socket timeout polls the socket before every read: one more system call on every command.
    ``SO_RCVTIMEO``/``SO_SNDTIMEO`` on a blocking socket protect against a server that stops answering just the
    same, for free. TLS connections and cluster nodes keep the Python timeout.
    """
    from redis.connection import Connection, UnixDomainSocketConnection

    timeout = kwargs.get("socket_timeout")
    base = kwargs.get("connection_class", Connection)
    if not timeout or kwargs.get("ssl") or base not in (Connection, UnixDomainSocketConnection) \
            or not sys.platform.startswith("linux"):
        return
    key = (base, timeout)
    connection_class = _timeout_classes.get(key)
    if connection_class is None:
        def _connect(self):
            sock = base._connect(self)
            if not set_io_timeout(sock, timeout):
                sock.settimeout(timeout)
            return sock
        connection_class = _timeout_classes[key] = type(f"KernelTimeout{base.__name__}", (base,),
                                                        {"_connect": _connect, "io_timeout": timeout})
    kwargs["connection_class"] = connection_class
    kwargs["socket_timeout"] = None
    kwargs.setdefault("socket_connect_timeout", timeout)


# -- shared clients ----------------------------------------------------------------------------------------------

class SharedClients:
    """One client per (kind, url, options), counted: the last user to let go closes its connections."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[Any, list] = {}  # key -> [client, users]

    def checkout(self, key: Any, create) -> Any:
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [create(), 0]
            entry[1] += 1
            return entry[0]

    def checkin(self, key: Any) -> None:
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._entries[key]
        close_client(entry[0])

    def __len__(self) -> int:
        return len(self._entries)


def close_client(client: Any) -> None:
    try:
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()
        else:
            client.close()
    except Exception:  # closing is best effort: the connections go away with the process anyway
        pass


shared_clients = SharedClients()


def freeze(options: dict[str, Any]) -> tuple:
    return tuple(sorted((key, repr(value)) for key, value in options.items()))


# -- the commands of the hot paths -------------------------------------------------------------------------------

def direct_command(client: Any) -> Any:
    """``command(*args)`` for a ``redis.Redis`` client: one command on a connection of the client's pool, and the
    reply as the connection parses it (no response callback: ``HGETALL`` gives RESP2's flat list).

    redis-py's ``execute_command`` costs about 5 us per command on top of the connection's own work (its retry
    wrapper, the observability hooks and the response callbacks), as much as a cache hit's whole decoding, so the
    commands of a cache hit and of a session load and save are sent here instead. A command whose connection
    failed (the server restarted, or closed an idle connection) is sent once more through ``execute_command``,
    which connects again and applies the client's retry policy; a reply timeout is raised as it is, not waited for
    twice.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError

    pool = client.connection_pool
    get_connection = pool.get_connection
    release = pool.release
    execute = client.execute_command

    def command(*args: Any) -> Any:
        connection = get_connection()
        try:
            connection.send_command(*args)
            reply = connection.read_response()
        except RedisConnectionError as exc:
            release(connection)  # redis-py disconnected it: the next user connects again
            if isinstance(exc.__context__, (BlockingIOError, TimeoutError)):  # a kernel reply timeout
                raise
            return execute(*args)
        except BaseException:
            release(connection)
            raise
        release(connection)
        return reply

    return command
