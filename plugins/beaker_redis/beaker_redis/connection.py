"""Redis URLs, connection options, one shared client (one connection pool) per URL and options, and the down mark
of each client's server.

Descriptions used in messages are rebuilt from the parsed URL, so they never contain a password; error texts
coming from redis-py are scrubbed of the password as well, in case a library message ever quotes it.
"""
from __future__ import annotations

import os
import sys
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from beaker_core.backends.health import PROBE_TIMEOUT, DownMark, describe_error, waited
from beaker_core.exceptions import ConfigurationError
from beaker_core.util import coerce_bool, coerce_float, coerce_int, set_socket_io_timeout

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
            if not set_socket_io_timeout(sock, timeout):
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
    commands = _direct_by_client.get(client)
    if commands is not None:
        commands.close()
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

class DirectCommands:
    """``commands(*args)``: one command of the hot paths on a connection of a small set kept for them, and the reply
    as the connection parses it (no response callback: ``HGETALL`` gives RESP2's flat list).

    redis-py's ``execute_command`` costs about 5 us per command on top of the connection's own work (its retry
    wrapper, the observability hooks and the response callbacks), and taking a connection from its pool and giving
    it back costs about 9 us more (two process id checks and a poll of the socket, each a system call, and two
    lock round trips): together more than the round trip itself on loopback. The commands of a cache hit and of a
    session load and save are sent here instead. Idle connections wait in a list (``pop`` and ``append`` are
    atomic): a thread takes one, sends its command, reads the whole reply and puts it back, so the set never holds
    more connections than there were commands in flight at once, and at most the client's ``max_connections``
    (beyond that, commands go through the pool). A forked child forgets the connections it inherited.

    A connection that failed (the server restarted, or closed an idle connection) is disconnected by redis-py and
    connects again when next used; the failed command is sent once more through ``execute_command``, which applies
    the client's retry policy. A reply timeout is raised as it is, not waited for twice.
    """

    def __init__(self, client: Any):
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = pool.connection_kwargs
        self._limit = pool.max_connections
        self._execute = client.execute_command
        self._idle: list[Any] = []
        self._opened = 0
        self._guard = threading.Lock()
        _live_direct.add(self)

    def __call__(self, *args: Any) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._open()
            if connection is None:  # max_connections reached here: the pool decides (waits or refuses)
                return self._execute(*args)
        try:
            connection.send_packed_command(connection.pack_command(*args))
            return connection.read_response()
        except _connection_error() as exc:
            if isinstance(exc.__context__, (BlockingIOError, TimeoutError)):  # a kernel reply timeout
                raise
        finally:
            # back to the set: its reply was read whole (an error reply too), or redis-py disconnected it after a
            # failure or an interruption, and it connects again when next used
            self._idle.append(connection)
        return self._execute(*args)

    def _open(self) -> Any:
        with self._guard:
            if self._opened >= self._limit:
                return None
            self._opened += 1
        return self._connection_class(**self._connection_kwargs)

    def forget(self) -> None:
        """Drop the idle connections without closing them (a forked child: their sockets are the parent's)."""
        with self._guard:
            self._opened -= len(self._idle)
            self._idle = []

    def close(self) -> None:
        idle, self._idle = self._idle, []
        with self._guard:
            self._opened -= len(idle)
        for connection in idle:
            try:
                connection.disconnect()
            except Exception:  # closing is best effort
                pass


_connection_error_class: Any = None


def _connection_error() -> Any:
    global _connection_error_class
    if _connection_error_class is None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        _connection_error_class = RedisConnectionError
    return _connection_error_class


_live_direct: "weakref.WeakSet[DirectCommands]" = weakref.WeakSet()
_direct_by_client: "weakref.WeakKeyDictionary[Any, DirectCommands]" = weakref.WeakKeyDictionary()
_direct_guard = threading.Lock()


def direct_commands(client: Any) -> Any:
    """The :class:`DirectCommands` of a ``redis.Redis`` client (one per client, shared by its backends); the
    client's own ``execute_command`` when its pool keeps a client-side cache, which only that path consults."""
    if getattr(client.connection_pool, "cache", None) is not None:
        return client.execute_command
    with _direct_guard:
        commands = _direct_by_client.get(client)
        if commands is None:
            commands = _direct_by_client[client] = DirectCommands(client)
        return commands


# -- down marks ---------------------------------------------------------------------------------------------------

def is_connection_failure(error: BaseException) -> bool:
    """Whether a redis-py error says the server could not be reached or did not answer in time (which marks it
    down), rather than that it answered: a refused password or permission, or this process's own pool limit."""
    from redis.exceptions import (AuthenticationError, AuthorizationError, ConnectionError as RedisConnectionError,
                                  MaxConnectionsError, TimeoutError as RedisTimeoutError)

    return isinstance(error, (RedisConnectionError, RedisTimeoutError)) and not isinstance(
        error, (AuthenticationError, AuthorizationError, MaxConnectionsError))


def redis_timeouts() -> tuple[type[BaseException], ...]:
    from redis.exceptions import TimeoutError as RedisTimeoutError
    return (RedisTimeoutError,)


class ServerProbe:
    """``PING`` on a connection of its own, made like the client's pool makes its connections but with the probe's
    short timeout (see :mod:`beaker_core.backends.health`), then closed. Errors that do not say the server is
    unreachable (a refused password, a pool of a kind this cannot copy) let the calls through: they find out."""

    def __init__(self, client: Any, password: str | None):
        self.pool = pool = client.connection_pool  # not the client: the marks are kept while the client lives
        self.password = password
        connection_class = pool.connection_class
        kernel_timeout = getattr(connection_class, "io_timeout", None)
        if kernel_timeout is not None:  # this module's kernel timeout class: the probe sets its own timeout
            connection_class = connection_class.__bases__[0]
        self.connection_class = connection_class
        timeouts = [seconds for seconds in (kernel_timeout, pool.connection_kwargs.get("socket_timeout"),
                                            pool.connection_kwargs.get("socket_connect_timeout")) if seconds]
        self.timeout = min([PROBE_TIMEOUT, *timeouts])

    def __call__(self) -> None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs = {**self.pool.connection_kwargs, "socket_timeout": self.timeout,
                  "socket_connect_timeout": self.timeout, "retry": Retry(NoBackoff(), 0)}
        try:
            connection = self.connection_class(**kwargs)
            try:
                connection.connect()
                connection.send_command("PING")
                connection.read_response()
            finally:
                connection.disconnect()
        except Exception as exc:
            if is_connection_failure(exc):
                raise

    def describe(self, error: BaseException) -> str:
        if waited(error, redis_timeouts()):
            return f"no answer to a PING within {self.timeout} seconds"
        return scrub(describe_error(error), self.password)


_marks_by_client: "weakref.WeakKeyDictionary[Any, dict[float, DownMark]]" = weakref.WeakKeyDictionary()
_marks_guard = threading.Lock()


def down_mark(client: Any, dead_retry: float, password: str | None) -> DownMark:
    """The down mark of a ``redis.Redis`` client's server, shared by every backend on that client with the same
    ``dead_retry``: a hung server costs one timeout to all of them, not one each."""
    with _marks_guard:
        marks = _marks_by_client.setdefault(client, {})
        mark = marks.get(dead_retry)
        if mark is None:
            probe = ServerProbe(client, password)
            mark = marks[dead_retry] = DownMark(probe, dead_retry, probe_timeout=probe.timeout,
                                                timeouts=redis_timeouts(), describe=probe.describe)
        return mark


def _after_fork_in_child() -> None:
    for commands in list(_live_direct):
        commands.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
