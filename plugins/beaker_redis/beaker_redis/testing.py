"""Test servers of this plugin: redis-server, a Redis Cluster and a Redis Sentinel setup on loopback ports.

Helpers, usable without pytest fixtures (e.g. from benchmarks)::

    server = start_redis()                   # RedisServer: .url, .port, .command(), .stop(), .kill(), .restart()
    cluster = start_redis_cluster(masters=3) # RedisClusterProcess: .url ("redis+cluster://h:p,h:p,h:p"), .nodes
    group = start_redis_sentinel()           # RedisSentinelGroup: .url, .sentinel_addresses, .primary, .replica

They are built on beaker-core's generic helper (:mod:`beaker_core.testing.servers`): every process listens on
127.0.0.1 only, keeps its files in a temporary directory, is stopped (and its directory removed) by ``stop()``, and a
server that cannot start raises :class:`~beaker_core.testing.servers.ServerUnavailable` with the reason and the
tail of its log. Persistence is off: a restarted server starts empty.

Pytest fixtures (a ``conftest.py`` or test module imports those it uses)::

    from beaker_redis.testing import redis_server, redis_cluster, server_factory, redis_sentinel, redis_sentinel_factory

``redis_server``, ``redis_cluster`` and ``redis_sentinel`` are session scoped and shared by every test of the run, so
tests isolate themselves with key prefixes, never by flushing, and never stop their servers. ``server_factory`` is
function scoped: a :class:`RedisServerFactory` whose ``redis(password=..., extra_args=...)`` and
``redis_cluster(masters)`` start private servers that a test may stop or kill, all stopped when the test ends (a
project that also uses another plugin's ``server_factory`` defines one fixture yielding a subclass of both
factories). ``redis_sentinel_factory()`` starts a private sentinel group that a test may break (kill the primary).

Environment:

``BEAKER_TEST_NO_REDIS=1``
    redis is known to be absent: tests that need it are skipped. Without it, a missing binary or a server that does
    not start makes the test **fail**.
``BEAKER_TEST_REDIS_URL`` / ``BEAKER_TEST_REDIS_CLUSTER_URL``
    use a server that is already running instead of starting one (the session fixtures ``redis_server`` and
    ``redis_cluster`` only; the factories always start their own processes).
``BEAKER_TEST_REDIS_SERVER`` / ``BEAKER_TEST_REDIS_CLI``
    path of the binary to run; otherwise ``PATH``, then ``/usr/bin``, ``/usr/sbin`` and ``/usr/local/bin`` are
    searched.

The sentinels take a server as down after ``down_after_ms`` (1000) and start a failover at once, so a killed
primary is replaced within a few seconds.
"""
from __future__ import annotations

import os
import random
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest

from beaker_core.testing.servers import (HOST, START_TIMEOUT, ExternalServer, ServerFactory, ServerProcess,
                                         ServerUnavailable, find_binary, free_port, port_is_free, session_server,
                                         start_on_free_port)

SERVICE = "redis"  # BEAKER_TEST_NO_REDIS declares it absent
SERVICE_NAME = "mymaster"
READY_TIMEOUT = 20.0
_BINARY_ENV = {"redis-server": "BEAKER_TEST_REDIS_SERVER", "redis-cli": "BEAKER_TEST_REDIS_CLI"}

__all__ = [
    "RedisServer", "RedisClusterProcess", "RedisServerFactory", "RedisSentinelGroup", "SentinelServer",
    "redis_binary", "redis_command", "free_cluster_port", "start_redis", "start_redis_cluster",
    "start_redis_sentinel", "redis_server", "redis_cluster", "server_factory", "redis_sentinel",
    "redis_sentinel_factory", "SERVICE_NAME",
]


def redis_binary(name: str = "redis-server") -> str:
    """The path of ``redis-server`` or ``redis-cli`` (``$BEAKER_TEST_REDIS_SERVER`` / ``$BEAKER_TEST_REDIS_CLI``,
    else PATH and the system directories)."""
    return find_binary(name, override_env=_BINARY_ENV.get(name))


def free_cluster_port() -> int:
    """A free port for a cluster node, whose bus listens on port + 10000: at most 55535, both ports free."""
    for _ in range(200):
        port = random.randint(20000, 55535)
        if port_is_free(port) and port_is_free(port + 10000):
            return port
    raise ServerUnavailable("no free pair of ports (port, port + 10000) for a redis cluster node")


# -- the protocol, without a client library ------------------------------------------------------------------------

def _recv_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def redis_command(port: int, *args: str, host: str = HOST, password: str | None = None,
                  timeout: float = 2.0) -> Any:
    """Send one command to a redis server over a plain socket (no client library) and return its reply.

    Errors come back as :class:`ConnectionError` (network) or as ``("error", message)``.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        commands = ([("AUTH", password)] if password else []) + [args]
        payload = b""
        for command in commands:
            payload += b"*%d\r\n" % len(command)
            for arg in command:
                data = str(arg).encode()
                payload += b"$%d\r\n%s\r\n" % (len(data), data)
        sock.sendall(payload)
        buffer = bytearray()
        reply: Any = None
        for _ in commands:
            reply = _read_reply(sock, buffer)
        return reply


def _read_reply(sock: socket.socket, buffer: bytearray) -> Any:
    line = _recv_line(sock, buffer)
    kind, body = line[:1], line[1:]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        return ("error", body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        while len(buffer) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            buffer += chunk
        data = bytes(buffer[:size])
        buffer[:] = buffer[size + 2:]
        return data.decode(errors="replace")
    if kind == b"*":
        return [_read_reply(sock, buffer) for _ in range(max(int(body), 0))]
    raise ConnectionError(f"unexpected reply {line!r}")


# -- redis-server and the cluster ------------------------------------------------------------------------------------

class RedisServer(ServerProcess):
    """A redis-server process; ``command(...)`` sends it one command (with its password)."""

    kind = "redis-server"

    def __init__(self, argv: list[str], port: int, directory: str | None = None, password: str | None = None):
        super().__init__(argv, port, directory)
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def ping(self) -> bool:
        try:
            redis_command(self.port, "PING", timeout=0.5)
        except OSError:
            return False
        return True

    def command(self, *args: str) -> Any:
        return redis_command(self.port, *args, password=self.password)


class RedisClusterProcess:
    """Several cluster-enabled redis-server processes joined into one cluster."""

    def __init__(self, nodes: list[RedisServer]):
        self.nodes = nodes

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]

    def state(self) -> dict[str, str]:
        reply = redis_command(self.nodes[0].port, "CLUSTER", "INFO")
        if isinstance(reply, tuple):
            raise ServerUnavailable(f"CLUSTER INFO failed: {reply[1]}")
        return dict(line.split(":", 1) for line in reply.splitlines() if ":" in line)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "RedisClusterProcess":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def start_redis(*, password: str | None = None, extra_args: tuple[str, ...] = ()) -> RedisServer:
    """Start a redis-server on a free loopback port (no persistence); ``password`` sets ``requirepass``."""
    binary = redis_binary("redis-server")

    def make(port: int) -> RedisServer:
        directory = tempfile.mkdtemp(prefix=f"beaker-redis-{port}-")
        argv = [binary, "--port", str(port), "--bind", HOST, "--dir", directory, "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        if password:
            argv += ["--requirepass", password]
        return RedisServer(argv + list(extra_args), port, directory, password)

    cluster_node = "--cluster-enabled" in extra_args
    return start_on_free_port(make, port=free_cluster_port if cluster_node else free_port)


def start_redis_cluster(masters: int = 3) -> RedisClusterProcess:
    """Start ``masters`` cluster-enabled redis-servers, join them with ``redis-cli --cluster create`` and wait
    until every node reports ``cluster_state:ok``."""
    if masters < 3:
        raise ValueError("a redis cluster needs at least 3 masters")
    cli = redis_binary("redis-cli")
    nodes: list[RedisServer] = []
    try:
        for _ in range(masters):
            nodes.append(start_redis(extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                                 "--cluster-node-timeout", "5000")))
        argv = [cli, "--cluster", "create", *(node.address for node in nodes), "--cluster-yes"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ServerUnavailable(f"redis-cli --cluster create failed ({result.returncode}): "
                                    f"{(result.stdout + result.stderr).strip()[-2000:]}")
        cluster = RedisClusterProcess(nodes)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            states = [redis_command(node.port, "CLUSTER", "INFO") for node in nodes]
            if all(isinstance(state, str) and "cluster_state:ok" in state for state in states):
                return cluster
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"the redis cluster did not reach cluster_state:ok: {states[0]!r}")
            time.sleep(0.05)
    except BaseException:
        for node in nodes:
            node.stop()
        raise


class RedisServerFactory(ServerFactory):
    """Starts private redis servers and clusters for one test (the ``server_factory`` fixture)."""

    def redis(self, **options: Any) -> RedisServer:
        """``start_redis(**options)``: ``password``, ``extra_args``."""
        return self.start(SERVICE, start_redis, **options)

    def redis_cluster(self, masters: int = 3) -> RedisClusterProcess:
        return self.start(SERVICE, start_redis_cluster, masters)


# -- sentinel --------------------------------------------------------------------------------------------------------

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
    binary = redis_binary("redis-server")

    def make(port: int) -> SentinelServer:
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
        return SentinelServer([binary, config, "--sentinel"], port, directory, sentinel_password)

    return start_on_free_port(make)


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


# -- pytest fixtures -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | ExternalServer]:
    """A redis-server shared by the whole test session (or ``$BEAKER_TEST_REDIS_URL``)."""
    server = session_server(SERVICE, start_redis, url_env="BEAKER_TEST_REDIS_URL")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcess | ExternalServer]:
    """A three-master Redis Cluster shared by the test session (or ``$BEAKER_TEST_REDIS_CLUSTER_URL``)."""
    cluster = session_server(SERVICE, start_redis_cluster, 3, url_env="BEAKER_TEST_REDIS_CLUSTER_URL")
    yield cluster
    cluster.stop()


@pytest.fixture
def server_factory() -> Iterator[RedisServerFactory]:
    """Start private redis servers and clusters in a test (``server_factory.redis(password=...)``); all are stopped
    at the end of the test, whatever it did to them."""
    factory = RedisServerFactory()
    yield factory
    factory.stop_all()


def _start_or_fail(factory: RedisServerFactory, **options: Any) -> RedisSentinelGroup:
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
            factory = RedisServerFactory()
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
    factory = RedisServerFactory()
    groups: list[RedisSentinelGroup] = []

    def start(**options: Any) -> RedisSentinelGroup:
        groups.append(_start_or_fail(factory, **options))
        return groups[-1]

    yield start
    for group in groups:
        group.stop()
    factory.stop_all()
