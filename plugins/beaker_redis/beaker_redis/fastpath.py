"""The fast paths that rely on redis-py's internals, and the public API they fall back to.

Two things here go below redis-py's public API, for speed on the hot paths:

* **kernel reply timeouts**: a subclass of redis-py's ``Connection`` (or ``UnixDomainSocketConnection``) whose
  ``_connect`` sets ``SO_RCVTIMEO``/``SO_SNDTIMEO`` on the new socket instead of a Python socket timeout, which
  polls the socket before every read (one more system call per command);
* **direct commands** (:class:`DirectCommands`): the commands of a cache hit and of a session load and save are
  sent on connections made like the pool's (its ``connection_class``, ``connection_kwargs`` and
  ``max_connections``) with the connection's ``pack_command``/``send_packed_command``/``read_response``, without
  ``execute_command`` and without taking a connection from the pool.

Whether redis-py's internals are what these expect is checked once, on first use (:func:`check`), and the answer
kept in :data:`enabled` (and logged at debug level). When they are not, backends use the public API instead:
redis-py's own ``socket_timeout`` and the client's ``execute_command``, with the same results and the same failures
(a reply timeout is then redis-py's ``TimeoutError`` rather than a ``ConnectionError`` from the kernel's EAGAIN;
:func:`reply_timed_out` recognises both).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from typing import Any

from beaker_core.util import set_socket_io_timeout

log = logging.getLogger(__name__)

#: None until :func:`check` runs; then True when the fast paths are used, False when the public API is
enabled: bool | None = None
#: why the fast paths are not used ("" while they are)
disabled_because = ""

_CONNECTION_METHODS = ("_connect", "connect", "disconnect", "pack_command", "send_packed_command", "read_response")
_POOL_ATTRIBUTES = ("connection_class", "connection_kwargs", "max_connections")


def check() -> bool:
    """Whether the fast paths are used: redis-py's connection classes and pools have what they rely on. Checked on
    the first call, then :data:`enabled` is returned as it is (a test may set it to False to force the fallback)."""
    global enabled, disabled_because
    if enabled is None:
        disabled_because = _missing_internals()
        enabled = not disabled_because
        from redis import __version__ as version
        if enabled:
            log.debug("redis-py %s: kernel reply timeouts and direct commands in use", version)
        else:
            log.debug("redis-py %s: the fast paths are off (%s); redis-py's public API is used", version,
                      disabled_because)
    return enabled


def _missing_internals() -> str:
    """What the fast paths need and redis-py lacks ("" when nothing is missing)."""
    try:
        import redis
        from redis.connection import Connection, UnixDomainSocketConnection
    except ImportError as exc:
        return f"cannot import redis-py's connection classes: {exc}"
    for connection_class in (Connection, UnixDomainSocketConnection):
        for name in _CONNECTION_METHODS:
            if not callable(getattr(connection_class, name, None)):
                return f"{connection_class.__name__} has no {name}()"
    try:
        pool = redis.ConnectionPool()  # connects nothing
    except Exception as exc:  # a constructor that changed
        return f"ConnectionPool() failed: {type(exc).__name__}: {exc}"
    for name in _POOL_ATTRIBUTES:
        if not hasattr(pool, name):
            return f"ConnectionPool has no {name} attribute"
    if not isinstance(pool.connection_kwargs, dict) or not isinstance(pool.max_connections, int):
        return "ConnectionPool's connection_kwargs or max_connections is not of the expected type"
    return ""


# -- kernel reply timeouts ------------------------------------------------------------------------------------

_timeout_classes: dict[Any, Any] = {}


def use_kernel_timeouts(kwargs: dict[str, Any]) -> None:
    """Move ``socket_timeout`` into the kernel for plain TCP and unix connections (``kwargs`` of a connection pool,
    changed in place). TLS connections, other connection classes, platforms other than Linux and the fallback keep
    redis-py's Python timeout."""
    from redis.connection import Connection, UnixDomainSocketConnection

    timeout = kwargs.get("socket_timeout")
    base = kwargs.get("connection_class", Connection)
    if not timeout or kwargs.get("ssl") or base not in (Connection, UnixDomainSocketConnection) \
            or not sys.platform.startswith("linux") or not check():
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


def plain_connection_class(connection_class: Any) -> tuple[Any, float | None]:
    """redis-py's own class behind a connection class :func:`use_kernel_timeouts` made, and its reply timeout
    (``connection_class`` and None for any other class)."""
    io_timeout = getattr(connection_class, "io_timeout", None)
    if io_timeout is not None and connection_class in _timeout_classes.values():
        return connection_class.__bases__[0], io_timeout
    return connection_class, None


def reply_timed_out(error: BaseException) -> bool:
    """Whether a redis-py error says a reply did not come in time on a connection of a single server: with kernel
    timeouts, redis-py reports the EAGAIN of the blocking read as a ``ConnectionError``; without them (the fallback),
    its own ``TimeoutError``."""
    if isinstance(error.__context__, BlockingIOError):
        return True
    if enabled is False:
        from redis.exceptions import TimeoutError as RedisTimeoutError
        return isinstance(error, RedisTimeoutError)
    return False


# -- direct commands ----------------------------------------------------------------------------------------------

class DirectCommands:
    """``commands(*args)``: one command of the hot paths on a connection of a small set kept for them, and the reply
    as the connection parses it (no response callback: ``HGETALL`` gives RESP2's flat list).

    redis-py's ``execute_command`` adds its retry wrapper, its observability hooks and the response callbacks to
    every command, and taking a connection from its pool and giving it back costs two process id checks and a poll
    of the socket (each a system call) and two lock round trips: together more than the round trip itself on
    loopback (figures in bench/RESULTS.md). Idle connections wait in a list (``pop`` and ``append`` are atomic):
    a thread takes one, sends its command, reads the whole reply and puts it back, so the set never holds more
    connections than there were commands in flight at once, and at most the client's ``max_connections`` (beyond
    that, commands go through the pool). A forked child forgets the connections it inherited.

    A connection that failed (the server restarted, or closed an idle connection) is disconnected by redis-py and
    connects again when next used; the failed command is sent once more through ``execute_command``, which applies
    the client's retry policy. A reply timeout is raised as it is, not waited for twice.
    """

    def __init__(self, client: Any):
        from redis.exceptions import ConnectionError as RedisConnectionError

        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = pool.connection_kwargs
        self._limit = pool.max_connections
        self._execute = client.execute_command
        self._connection_error = RedisConnectionError
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
        except self._connection_error as exc:
            if isinstance(exc.__context__, (BlockingIOError, TimeoutError)):  # a kernel reply timeout
                raise
        finally:
            # back to the set: its reply was read whole (an error reply too), or redis-py disconnected it after a
            # failure or an interruption, and it connects again when next used
            self._idle.append(connection)
        return self._execute(*args)

    @property
    def idle(self) -> int:
        """Connections waiting in the set."""
        return len(self._idle)

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


_live_direct: "weakref.WeakSet[DirectCommands]" = weakref.WeakSet()
_direct_by_client: "weakref.WeakKeyDictionary[Any, DirectCommands]" = weakref.WeakKeyDictionary()
_direct_guard = threading.Lock()


def direct_commands(client: Any) -> Any:
    """How a backend sends the commands of its hot paths on a ``redis.Redis`` client: the client's
    :class:`DirectCommands` (one per client, shared by its backends), or the client's own ``execute_command`` when
    its pool keeps a client-side cache (which only that path consults) or when the fast paths are off."""
    if getattr(client.connection_pool, "cache", None) is not None or not check():
        return client.execute_command
    with _direct_guard:
        commands = _direct_by_client.get(client)
        if commands is None:
            commands = _direct_by_client[client] = DirectCommands(client)
        return commands


def close_direct_commands(client: Any) -> None:
    """Disconnect the idle connections of the client's :class:`DirectCommands`, if it has one."""
    commands = _direct_by_client.get(client)
    if commands is not None:
        commands.close()


def _after_fork_in_child() -> None:
    for commands in list(_live_direct):
        commands.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
