"""Test servers of this plugin: a Redis Sentinel setup (a primary, a replica and three sentinels) on loopback ports.

Helper, usable without pytest::

    group = start_redis_sentinel()   # RedisSentinelGroup: .url, .sentinel_addresses, .primary, .replica, .stop()

Pytest fixtures (a test module imports those it uses)::

    from beaker_redis.testing import redis_sentinel, redis_sentinel_factory

``redis_sentinel`` is one group shared by the test session: its tests isolate themselves with key prefixes and never
stop a server. ``redis_sentinel_factory()`` starts a private group that a test may break (kill the primary); it is
stopped when the test ends. Both go through beaker-core's ``ServerFactory`` for the data servers, so a missing
``redis-server`` fails the test, unless ``BEAKER_TEST_NO_REDIS=1`` declares redis absent (then it is skipped).

Every process listens on 127.0.0.1 only. The sentinels take a server as down after ``down_after_ms`` (1000) and
start a failover at once, so a killed primary is replaced within a few seconds.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest

from beaker_core.testing.servers import (HOST, RedisServer, ServerFactory, ServerUnavailable, find_binary, free_port,
                                         start_redis)

SERVICE_NAME = "mymaster"
READY_TIMEOUT = 20.0

__all__ = ["RedisSentinelGroup", "SentinelServer", "start_redis_sentinel", "redis_sentinel",
           "redis_sentinel_factory", "SERVICE_NAME"]


class SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` process (its configuration file, which it rewrites, is in its directory)."""

    kind = "redis-sentinel"

    def master(self, service_name: str = SERVICE_NAME) -> dict[str, str]:
        """What this sentinel knows of the service's primary (``SENTINEL MASTER``), as a dict of strings."""
        reply = self.command("SENTINEL", "MASTER", service_name)
        if not isinstance(reply, list):
            return {}
        return dict(zip(reply[::2], reply[1::2]))


def _start_sentinel(monitored_port: int, down_after_ms: int, failover_timeout_ms: int, password: str | None,
                    sentinel_password: str | None) -> SentinelServer:
    binary = find_binary("redis-server")
    error: ServerUnavailable | None = None
    for _ in range(3):  # another process may take the free port before the sentinel binds it
        port = free_port()
        directory = tempfile.mkdtemp(prefix=f"beaker-sentinel-{port}-")
        config = os.path.join(directory, "sentinel.conf")
        with open(config, "w") as file:
            file.write(f"port {port}\nbind {HOST}\ndir {directory}\ndaemonize no\nlogfile \"\"\n"
                       f"sentinel monitor {SERVICE_NAME} {HOST} {monitored_port} 2\n"
                       f"sentinel down-after-milliseconds {SERVICE_NAME} {down_after_ms}\n"
                       f"sentinel failover-timeout {SERVICE_NAME} {failover_timeout_ms}\n"
                       f"sentinel parallel-syncs {SERVICE_NAME} 1\n")
            if password:
                file.write(f"sentinel auth-pass {SERVICE_NAME} {password}\n")
            if sentinel_password:  # asked of clients, and given to the other sentinels
                file.write(f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n")
        sentinel = SentinelServer([binary, config, "--sentinel"], port, directory, sentinel_password)
        try:
            return sentinel.start()
        except ServerUnavailable as exc:
            sentinel.stop()
            error = exc
            if "in use" not in str(exc).lower():
                break
    assert error is not None
    raise error


class RedisSentinelGroup:
    """A primary, its replica and three sentinels monitoring them as :data:`SERVICE_NAME`."""

    def __init__(self, primary: RedisServer, replica: RedisServer, sentinels: list[SentinelServer],
                 service_name: str = SERVICE_NAME):
        self.primary = primary
        self.replica = replica
        self.sentinels = sentinels
        self.service_name = service_name

    @property
    def sentinel_addresses(self) -> str:
        """``127.0.0.1:p1, 127.0.0.1:p2, 127.0.0.1:p3``: the value of the ``sentinels`` option."""
        return ", ".join(sentinel.address for sentinel in self.sentinels)

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/mymaster/0``, with the data servers' password
        and ``?sentinel_password=`` when the group has them."""
        auth = f":{quote(self.primary.password, safe='')}@" if self.primary.password else ""
        query = f"?sentinel_password={quote(self.sentinel_password, safe='')}" if self.sentinel_password else ""
        addresses = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{auth}{addresses}/{self.service_name}/0{query}"

    @property
    def sentinel_password(self) -> str | None:
        return self.sentinels[0].password

    def master_address(self) -> str | None:
        """The primary's ``host:port`` as the running sentinels agree on it, or None while they do not agree."""
        addresses = set()
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
            if not isinstance(reply, list) or len(reply) != 2:
                return None
            addresses.add(f"{reply[0]}:{reply[1]}")
        return addresses.pop() if len(addresses) == 1 else None

    def server_at(self, address: str | None) -> RedisServer | None:
        return next((server for server in (self.primary, self.replica) if server.address == address), None)

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the replica is in sync and every sentinel sees the primary, the replica and the two other
        sentinels (they find each other through the primary, every two seconds)."""
        def ready() -> bool:
            info = self.replica.command("INFO", "replication")
            if not isinstance(info, str) or "master_link_status:up" not in info:
                return False
            for sentinel in self.sentinels:
                state = sentinel.master(self.service_name)
                if (state.get("flags") != "master" or state.get("num-other-sentinels") != "2"
                        or state.get("num-slaves") != "1"):
                    return False
            return self.master_address() == self.primary.address
        _wait(ready, timeout, "the sentinels did not agree on the primary, its replica and each other",
              self.describe)

    def wait_for_replication(self, timeout: float = 10.0) -> None:
        """Wait until the replica has applied every write the primary took so far."""
        def offset(server: RedisServer, field: str) -> int:
            info = server.command("INFO", "replication")
            for line in info.splitlines() if isinstance(info, str) else ():
                if line.startswith(field + ":"):
                    return int(line.split(":", 1)[1])
            return -1
        target = offset(self.primary, "master_repl_offset")
        _wait(lambda: offset(self.replica, "slave_repl_offset") >= target, timeout,
              f"the replica did not reach the primary's replication offset {target}", self.describe)

    def wait_for_failover(self, old_primary: str, timeout: float = 30.0) -> str:
        """Wait until the sentinels agree on a primary other than ``old_primary``; return its ``host:port``."""
        result: list[str] = []

        def switched() -> bool:
            address = self.master_address()
            if address and address != old_primary:
                result.append(address)
                return True
            return False
        _wait(switched, timeout, f"the sentinels did not replace the primary {old_primary}", self.describe)
        return result[0]

    def describe(self) -> str:
        parts = [f"primary {self.primary!r}", f"replica {self.replica!r}"]
        for sentinel in self.sentinels:
            if sentinel.running:
                state = sentinel.master(self.service_name)
                parts.append(f"sentinel {sentinel.port}: {state.get('ip')}:{state.get('port')} "
                             f"{state.get('flags')} others={state.get('num-other-sentinels')}")
        return "; ".join(parts)

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            server.stop()

    def __enter__(self) -> "RedisSentinelGroup":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _wait(condition: Callable[[], bool], timeout: float, failure: str, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:  # a server restarting or just killed: ask again
            pass
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"{failure} within {timeout} seconds: {describe()}")
        time.sleep(0.05)


def start_redis_sentinel(*, down_after_ms: int = 1000, failover_timeout_ms: int = 3000, password: str | None = None,
                         sentinel_password: str | None = None,
                         start_server: Callable[..., RedisServer] = start_redis) -> RedisSentinelGroup:
    """Start a primary, a replica of it and three sentinels (quorum 2), and wait until they agree.

    ``password`` is required by the primary and the replica, ``sentinel_password`` by the sentinels.
    ``start_server(password=..., extra_args=...)`` starts a data server (``start_redis``, or a ``ServerFactory``'s
    ``redis``)."""
    started: list[Any] = []
    try:
        primary = start_server(password=password)
        started.append(primary)
        replica_args = ("--replicaof", HOST, str(primary.port)) + (("--masterauth", password) if password else ())
        replica = start_server(password=password, extra_args=replica_args)
        started.append(replica)
        sentinels = []
        for _ in range(3):
            sentinels.append(_start_sentinel(primary.port, down_after_ms, failover_timeout_ms, password,
                                             sentinel_password))
            started.append(sentinels[-1])
        group = RedisSentinelGroup(primary, replica, sentinels)
        group.wait_until_ready()
        return group
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise


def _start_or_fail(factory: ServerFactory, **options: Any) -> RedisSentinelGroup:
    try:
        return start_redis_sentinel(start_server=factory.redis, **options)
    except ServerUnavailable as exc:
        reason = str(exc)
    pytest.fail(f"cannot start the redis sentinel group for the tests: {reason} (set BEAKER_TEST_NO_REDIS=1 to skip "
                f"the tests that need redis)", pytrace=False)


_shared: list[Any] = []  # [group, users]: one group however many test modules import the fixture
_shared_guard = threading.Lock()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelGroup]:
    """A primary, a replica and three sentinels shared by the test session; tests must not stop its servers."""
    with _shared_guard:
        if not _shared:
            factory = ServerFactory()
            _shared[:] = [_start_or_fail(factory), 0, factory]
        _shared[1] += 1
    yield _shared[0]
    with _shared_guard:
        _shared[1] -= 1
        if _shared[1] == 0:
            group, _, factory = _shared
            _shared.clear()
            group.stop()
            factory.stop_all()


@pytest.fixture
def redis_sentinel_factory() -> Iterator[Callable[..., RedisSentinelGroup]]:
    """``redis_sentinel_factory(down_after_ms=1000, failover_timeout_ms=3000, password=None, sentinel_password=None)``
    starts a private group, which the test may break; every group it started is stopped when the test ends."""
    factory = ServerFactory()
    groups: list[RedisSentinelGroup] = []

    def start(**options: Any) -> RedisSentinelGroup:
        groups.append(_start_or_fail(factory, **options))
        return groups[-1]

    yield start
    for group in groups:
        group.stop()
    factory.stop_all()
