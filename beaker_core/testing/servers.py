"""Real redis-server and memcached processes for tests, on free loopback ports.

Helpers (usable without pytest fixtures, e.g. from benchmarks)::

    server = start_redis()                 # RedisServer: .url, .host, .port, .stop(), .kill(), .restart()
    server = start_memcached()             # MemcachedServer: .url ("127.0.0.1:PORT"), ...
    cluster = start_redis_cluster(masters=3)  # RedisClusterProcess: .url ("redis+cluster://h:p,h:p,h:p"), .nodes

Every process listens on 127.0.0.1 only, keeps its files in a temporary directory, and is stopped (and its directory
removed) by ``stop()``. On Linux a server also ends when the thread that started it ends (so a killed test run leaves
no server behind): start servers from a thread that outlives their use, such as the main thread. A server that
cannot start raises :class:`ServerUnavailable` with the reason and the tail of its log.

Pytest fixtures (a plugin's ``conftest.py`` imports the ones it uses)::

    from beaker_core.testing.servers import redis_server, redis_cluster, memcached_server, server_factory

``redis_server``, ``redis_cluster`` and ``memcached_server`` are session scoped and shared by every test of the run,
so tests isolate themselves with key prefixes, never by flushing. ``server_factory`` is function scoped: it starts
private servers (``server_factory.redis(password=...)``, ``server_factory.memcached(max_item_size="2m")``) that a
test may stop or kill, and stops them when the test ends.

Environment:

``BEAKER_TEST_NO_REDIS=1`` / ``BEAKER_TEST_NO_MEMCACHED=1``
    the server is known to be absent: tests that need it are skipped. Without these, a missing binary or a server
    that does not start makes the test **fail**.
``BEAKER_TEST_REDIS_URL`` / ``BEAKER_TEST_REDIS_CLUSTER_URL`` / ``BEAKER_TEST_MEMCACHED_URL``
    use a server that is already running instead of starting one (the session fixtures only; ``server_factory``
    always starts its own processes).
``BEAKER_TEST_REDIS_SERVER`` / ``BEAKER_TEST_REDIS_CLI`` / ``BEAKER_TEST_MEMCACHED``
    path of the binary to run; otherwise ``PATH``, then ``/usr/bin``, ``/usr/sbin`` and ``/usr/local/bin`` are
    searched.
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Iterator

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
_SEARCH_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
_BINARY_ENV = {"redis-server": "BEAKER_TEST_REDIS_SERVER", "redis-cli": "BEAKER_TEST_REDIS_CLI",
               "memcached": "BEAKER_TEST_MEMCACHED"}
_ABSENT_ENV = {"redis": "BEAKER_TEST_NO_REDIS", "memcached": "BEAKER_TEST_NO_MEMCACHED"}


class ServerUnavailable(RuntimeError):
    """A test server binary is missing or the server did not start."""


# -- helpers -----------------------------------------------------------------------------------------------------

def find_binary(name: str) -> str:
    """The path of ``name``: its environment override, else PATH, else the usual system directories."""
    override_env = _BINARY_ENV.get(name)
    override = os.environ.get(override_env) if override_env else None
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise ServerUnavailable(f"{override_env}={override!r} is not an executable file")
    found = shutil.which(name)
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    hint = f" or set {override_env}" if override_env else ""
    raise ServerUnavailable(f"{name} was not found on PATH nor in {', '.join(_SEARCH_DIRS)} "
                            f"(install it{hint})")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    ``cluster_bus``: the port is for a redis cluster node, whose bus listens on port + 10000, so the port must be
    at most 55535 and both ports free.
    """
    if not cluster_bus:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            return probe.getsockname()[1]
    for _ in range(200):
        port = random.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise ServerUnavailable("no free pair of ports (port, port + 10000) for a redis cluster node")


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


def memcached_command(port: int, command: str, host: str = HOST, timeout: float = 2.0) -> str:
    """Send one text-protocol command (``stats``, ``version``...) to memcached; return the reply text."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command.encode() + b"\r\n")
        multiline = command.split()[0].lower() == "stats"
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
            if reply.endswith(b"\r\n") and (not multiline or reply.endswith((b"END\r\n", b"ERROR\r\n"))):
                break
        return reply.decode(errors="replace")


@contextlib.contextmanager
def stopped(server: "ServerProcess") -> Iterator[None]:
    """The server's process stopped (SIGSTOP: the kernel still accepts its connections, and nothing answers them),
    continued on leaving the block: a hung server."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def timed(call: Any) -> tuple[float, Any]:
    """``(seconds, result)`` of ``call()``; an exception it raises is its result."""
    started = time.monotonic()
    try:
        result = call()
    except Exception as exc:
        result = exc
    return time.monotonic() - started, result


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to end the server when the process that started it dies, so a test run
    that is killed leaves no server behind holding its port (PR_SET_PDEATHSIG; elsewhere, nothing happens)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except Exception:
        pass


# -- processes ---------------------------------------------------------------------------------------------------

class ServerProcess:
    """One server process we started; ``stop()`` ends it and removes its directory."""

    kind = "server"

    def __init__(self, argv: list[str], port: int, directory: str):
        self.argv = argv
        self.host = HOST
        self.port = port
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.log_path = os.path.join(directory, "server.log")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "ServerProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
                                            stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(f"{self.kind} on port {self.port} exited with status "
                                        f"{self.process.returncode}: {self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise ServerUnavailable(f"{self.kind} on port {self.port} did not answer within {START_TIMEOUT} seconds: "
                                f"{self.log_tail()}")

    def ping(self) -> bool:
        raise NotImplementedError

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as log:
                text = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """End the process at once (SIGKILL), as a crash would; the directory stays for a restart."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> "ServerProcess":
        """Start the process again on the same port (after ``kill`` or ``terminate``)."""
        self.terminate()
        return self.start()

    def stop(self) -> None:
        self.terminate()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} {'running' if self.running else 'stopped'}>"


class RedisServer(ServerProcess):
    kind = "redis-server"

    def __init__(self, argv: list[str], port: int, directory: str, password: str | None = None):
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


class MemcachedServer(ServerProcess):
    kind = "memcached"

    @property
    def url(self) -> str:
        return self.address

    def ping(self) -> bool:
        try:
            return memcached_command(self.port, "version", timeout=0.5).startswith("VERSION")
        except OSError:
            return False

    def stats(self, group: str = "") -> dict[str, str]:
        reply = memcached_command(self.port, f"stats {group}".strip())
        return {parts[1]: parts[2] for parts in (line.split(" ", 2) for line in reply.splitlines())
                if len(parts) == 3 and parts[0] == "STAT"}


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


def _start_with_retries(make, attempts: int = 3, cluster_bus: bool = False):
    """Start a server on a fresh free port, retrying when another process grabbed the port first."""
    error: ServerUnavailable | None = None
    for _ in range(attempts):
        server = make(free_port(cluster_bus=cluster_bus))
        try:
            return server.start()
        except ServerUnavailable as exc:
            server.stop()
            error = exc
            if "in use" not in str(exc).lower():
                break
    assert error is not None
    raise error


def start_redis(*, password: str | None = None, extra_args: tuple[str, ...] = ()) -> RedisServer:
    """Start a redis-server on a free loopback port (no persistence); ``password`` sets ``requirepass``."""
    binary = find_binary("redis-server")

    def make(port: int) -> RedisServer:
        directory = tempfile.mkdtemp(prefix=f"beaker-redis-{port}-")
        argv = [binary, "--port", str(port), "--bind", HOST, "--dir", directory, "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        if password:
            argv += ["--requirepass", password]
        return RedisServer(argv + list(extra_args), port, directory, password)

    return _start_with_retries(make, cluster_bus="--cluster-enabled" in extra_args)


def start_memcached(*, memory_mb: int = 64, max_item_size: str | None = None,
                    extra_args: tuple[str, ...] = ()) -> MemcachedServer:
    """Start memcached on a free loopback port (TCP only); ``max_item_size`` is its ``-I`` (e.g. ``"2m"``)."""
    binary = find_binary("memcached")

    def make(port: int) -> MemcachedServer:
        directory = tempfile.mkdtemp(prefix=f"beaker-memcached-{port}-")
        argv = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", str(memory_mb), "-t", "2"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without naming the user
        if max_item_size:
            argv += ["-I", str(max_item_size)]
        return MemcachedServer(argv + list(extra_args), port, directory)

    return _start_with_retries(make)


def start_redis_cluster(masters: int = 3) -> RedisClusterProcess:
    """Start ``masters`` cluster-enabled redis-servers, join them with ``redis-cli --cluster create`` and wait
    until every node reports ``cluster_state:ok``."""
    if masters < 3:
        raise ValueError("a redis cluster needs at least 3 masters")
    cli = find_binary("redis-cli")
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


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers: a hung server, for timeout tests.

    ``with SilentServer() as silent: ... silent.address`` (``127.0.0.1:PORT``).
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.address = f"{HOST}:{self.port}"
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._accepted.append(connection)  # kept open, never read from nor written to

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for connection in self._accepted:
            connection.close()
        self._thread.join(5)

    def __enter__(self) -> "SilentServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# -- external servers --------------------------------------------------------------------------------------------

class ExternalServer:
    """A server that was already running (``BEAKER_TEST_*_URL``); ``stop()`` leaves it alone."""

    def __init__(self, url: str):
        self.url = url

    def stop(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<ExternalServer {self.url}>"


# -- pytest fixtures ---------------------------------------------------------------------------------------------

def _skip_if_declared_absent(service: str) -> None:
    env = _ABSENT_ENV[service]
    if os.environ.get(env, "").strip().lower() not in ("", "0", "false", "no"):
        pytest.skip(f"{service} declared absent ({env}={os.environ[env]})")


def _start_or_fail(service: str, start, *args: Any, **kwargs: Any):
    _skip_if_declared_absent(service)
    try:
        return start(*args, **kwargs)
    except ServerUnavailable as exc:
        reason = str(exc)
    pytest.fail(f"cannot start {service} for the tests: {reason} "
                f"(set {_ABSENT_ENV[service]}=1 to skip the tests that need it)", pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | ExternalServer]:
    """A redis-server shared by the whole test session (or ``$BEAKER_TEST_REDIS_URL``)."""
    _skip_if_declared_absent("redis")
    url = os.environ.get("BEAKER_TEST_REDIS_URL")
    server = ExternalServer(url) if url else _start_or_fail("redis", start_redis)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcess | ExternalServer]:
    """A three-master Redis Cluster shared by the test session (or ``$BEAKER_TEST_REDIS_CLUSTER_URL``)."""
    _skip_if_declared_absent("redis")
    url = os.environ.get("BEAKER_TEST_REDIS_CLUSTER_URL")
    cluster = ExternalServer(url) if url else _start_or_fail("redis", start_redis_cluster, 3)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer | ExternalServer]:
    """A memcached shared by the test session (or ``$BEAKER_TEST_MEMCACHED_URL``)."""
    _skip_if_declared_absent("memcached")
    url = os.environ.get("BEAKER_TEST_MEMCACHED_URL")
    server = ExternalServer(url) if url else _start_or_fail("memcached", start_memcached)
    yield server
    server.stop()


class ServerFactory:
    """Starts private servers for one test and stops them all when it ends."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def redis(self, **options: Any) -> RedisServer:
        server = _start_or_fail("redis", start_redis, **options)
        self.started.append(server)
        return server

    def redis_cluster(self, masters: int = 3) -> RedisClusterProcess:
        cluster = _start_or_fail("redis", start_redis_cluster, masters)
        self.started.append(cluster)
        return cluster

    def memcached(self, **options: Any) -> MemcachedServer:
        server = _start_or_fail("memcached", start_memcached, **options)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    """Start private redis / memcached processes in a test (``server_factory.memcached()``); all are stopped
    at the end of the test, whatever it did to them."""
    factory = ServerFactory()
    yield factory
    factory.stop_all()


__all__ = [
    "ServerUnavailable", "RedisServer", "MemcachedServer", "RedisClusterProcess", "ExternalServer", "SilentServer",
    "ServerFactory", "find_binary", "free_port", "redis_command", "memcached_command",
    "start_redis", "start_memcached", "start_redis_cluster",
    "redis_server", "redis_cluster", "memcached_server", "server_factory",
]
