"""Redis URLs, connection options, one shared client (one connection pool) per URL and options, and the down mark
of each client's server.

Descriptions used in messages are rebuilt from the parsed URL, so they never contain a password; error texts
coming from redis-py are scrubbed of the password as well, in case a library message ever quotes it.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from beaker_core.backends.health import PROBE_TIMEOUT, DownMark, describe_error, waited
from beaker_core.exceptions import ConfigurationError
from beaker_core.pool import InstancePool
from beaker_core.util import coerce_bool, coerce_float, coerce_int

from .fastpath import close_direct_commands, plain_connection_class

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


# -- shared clients ----------------------------------------------------------------------------------------------

def close_client(client: Any) -> None:
    close_direct_commands(client)
    try:
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()
        else:
            client.close()
    except Exception:  # closing is best effort: the connections go away with the process anyway
        pass


#: one client per (kind, url, options), counted: the last backend to close closes its connections
shared_clients = InstancePool(close=close_client)


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
        # a connection class with kernel reply timeouts gives way to redis-py's own: the probe sets its own timeout
        self.connection_class, kernel_timeout = plain_connection_class(pool.connection_class)
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
