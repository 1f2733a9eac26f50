"""Real server processes for tests, on free loopback ports: the generic part that every plugin builds on.

The core knows processes and ports, never a particular server: each plugin's ``testing`` module says how to start its
own (``beaker_redis.testing``, ``beaker_memcached.testing``) with these pieces:

``free_port()`` / ``port_is_free(port)``
    a TCP port on 127.0.0.1 that nothing listens on.
``find_binary(name, override_env=...)``
    the server's executable: the environment override, else ``PATH``, else :data:`SEARCH_DIRS`.
``ServerProcess(argv, port, kind=..., env=..., user=..., ready=...)``
    one process in its own temporary directory, its output in ``server.log`` there. ``start()`` waits until
    ``ready(server)`` answers (by default: the port accepts a connection) and raises :class:`ServerUnavailable` with
    the tail of the log if the process exits or never answers; ``stop()`` terminates it (then kills it) and removes
    the directory; ``kill()`` and ``restart()`` play a crash and a restart on the same port. ``user`` runs the process
    as another user (a root test run starting PostgreSQL as ``postgres``); subclass it for a server's own commands.
``start_on_free_port(make)``
    starts ``make(port)`` on a fresh free port, again on another one when something else took the port first.
``answers_http(url)`` / ``accepts_connections(host, port)``
    readiness checks for an HTTP server (an S3 emulator) or any TCP server.
``stopped(server)`` / ``timed(call)`` / :class:`SilentServer`
    for hung-server tests: a server SIGSTOPped for a block, the duration and outcome of a call, a listener that never
    answers.

The policy every plugin follows, so that a test never passes because its server was missing: a test that needs a
server **fails** when the server cannot start, unless the run declared the server absent with
``BEAKER_TEST_NO_<SERVICE>=1`` (then it is skipped). :func:`start_or_fail` applies it in a test or fixture,
:func:`session_server` in a session fixture (which also takes a running server from a ``BEAKER_TEST_<...>_URL``
variable as an :class:`ExternalServer`), and :class:`ServerFactory` in a function-scoped fixture whose servers a test
may break; a plugin subclasses it with one method per server kind (``server_factory.redis()``).

On Linux a process also ends when the thread that started it ends (so a killed test run leaves no server behind):
start servers from a thread that outlives their use, such as the main thread. pytest is imported only by the
policy functions, so the rest works outside a test run (benchmarks).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterator, Mapping

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
#: where :func:`find_binary` looks after ``PATH`` (Debian puts some servers outside a user's PATH)
SEARCH_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")


class ServerUnavailable(RuntimeError):
    """A test server binary is missing or the server did not start."""


# -- ports and binaries ----------------------------------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    """Whether a TCP socket can bind ``port`` on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (another process may take it before the server
    binds it: :func:`start_on_free_port` tries again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def find_binary(name: str, override_env: str | None = None, search_dirs: tuple[str, ...] = ()) -> str:
    """The path of the executable ``name``: ``$override_env`` when set, else PATH, else ``search_dirs`` and
    :data:`SEARCH_DIRS`. Raises :class:`ServerUnavailable` saying where it looked."""
    override = os.environ.get(override_env) if override_env else None
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise ServerUnavailable(f"{override_env}={override!r} is not an executable file")
    found = shutil.which(name)
    if found:
        return found
    directories = (*search_dirs, *SEARCH_DIRS)
    for directory in directories:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    hint = f" or set {override_env}" if override_env else ""
    raise ServerUnavailable(f"{name} was not found on PATH nor in {', '.join(directories)} (install it{hint})")


# -- readiness checks --------------------------------------------------------------------------------------------

def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def answers_http(url: str, timeout: float = 0.5) -> bool:
    """Whether an HTTP server answers a GET of ``url`` (any status: an error page is an answer)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


# -- processes -------------------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child, before exec (after it became ``user``, which would clear the setting): ask Linux to end the
    server when the thread that started it dies, so a test run that is killed leaves no server behind holding its
    port (PR_SET_PDEATHSIG; elsewhere, nothing happens)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except Exception:
        pass


class ServerProcess:
    """One server process we started, in its own directory; ``stop()`` ends it and removes the directory.

    :param argv: the command line.
    :param port: the TCP port it listens on (on :data:`HOST`).
    :param directory: its working directory, which belongs to the server (``stop()`` removes it); by default a new
        temporary directory.
    :param kind: its name in messages (a subclass sets the class attribute instead).
    :param env: variables added to this process's environment for it; a value of None removes the variable.
    :param user: run it as this user (which needs root, unless it is the current user); its directory is given to
        that user.
    :param ready: ``ready(server) -> bool``: whether it answers yet (an ``OSError`` counts as no); by default, whether
        its port accepts connections. A subclass may override :meth:`ping` instead.
    :param start_timeout: seconds ``start()`` waits for it to answer.
    """

    kind = "server"
    #: seconds ``terminate()`` gives the process after SIGTERM before it sends SIGKILL
    stop_timeout = 10.0

    def __init__(self, argv: list[str], port: int, directory: str | None = None, *, kind: str | None = None,
                 env: Mapping[str, str | None] | None = None, user: str | None = None,
                 ready: Callable[["ServerProcess"], bool] | None = None, start_timeout: float = START_TIMEOUT):
        if kind is not None:
            self.kind = kind
        self.argv = list(argv)
        self.host = HOST
        self.port = port
        self.directory = directory or tempfile.mkdtemp(prefix=f"beaker-{self.kind}-{port}-")
        self.env = dict(env or {})
        self.user = user
        self.ready = ready
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.log_path = os.path.join(self.directory, "server.log")
        if user is not None:
            self._give_directory_to(user)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _give_directory_to(self, user: str) -> None:
        import pwd
        entry = pwd.getpwnam(user)
        if os.stat(self.directory).st_uid != entry.pw_uid:
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)

    def _environment(self) -> dict[str, str] | None:
        if not self.env:
            return None
        environment = dict(os.environ)
        for name, value in self.env.items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        return environment

    def _identity(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            import pwd
            entry = pwd.getpwnam(self.user)
            return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}  # no group of root's kept
        return {"user": self.user}

    def start(self) -> "ServerProcess":
        """Start the process and wait until it answers; :class:`ServerUnavailable` (with the tail of its output) if
        it exits first or does not answer within ``start_timeout`` seconds (it is then killed)."""
        with open(self.log_path, "ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory,
                    env=self._environment(), **self._identity(),
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
            except (OSError, subprocess.SubprocessError) as exc:
                raise ServerUnavailable(f"{self.kind} on port {self.port} could not be started: {exc}") from exc
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(f"{self.kind} on port {self.port} exited with status "
                                        f"{self.process.returncode}: {self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise ServerUnavailable(f"{self.kind} on port {self.port} did not answer within {self.start_timeout} "
                                f"seconds: {self.log_tail()}")

    def ping(self) -> bool:
        """Whether the server answers: ``ready(self)``, or whether its port accepts connections."""
        if self.ready is None:
            return accepts_connections(self.host, self.port)
        try:
            return bool(self.ready(self))
        except OSError:
            return False

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the process's output, on one line."""
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
        """End the process (SIGTERM, then SIGKILL after ``stop_timeout`` seconds); the directory stays."""
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
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


def start_on_free_port(make: Callable[[int], ServerProcess], attempts: int = 3,
                       port: Callable[[], int] = free_port) -> ServerProcess:
    """``make(port).start()`` on a free port, on another one when the server reports its port in use (another
    process took it in between). A server that fails is stopped; the last error is raised."""
    error: ServerUnavailable | None = None
    for _ in range(attempts):
        server = make(port())
        try:
            return server.start()
        except ServerUnavailable as exc:
            server.stop()
            error = exc
            if "in use" not in str(exc).lower():
                break
    assert error is not None
    raise error


# -- hung servers ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def stopped(server: ServerProcess) -> Iterator[None]:
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


class ExternalServer:
    """A server that was already running (``BEAKER_TEST_*_URL``); ``stop()`` leaves it alone."""

    def __init__(self, url: str):
        self.url = url

    def stop(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<ExternalServer {self.url}>"


# -- the policy: fail when a server is missing, unless it was declared absent ------------------------------------------

def absent_variable(service: str) -> str:
    """The variable that declares ``service`` absent: ``BEAKER_TEST_NO_REDIS`` for ``redis``."""
    return "BEAKER_TEST_NO_" + "".join(char if char.isalnum() else "_" for char in service.upper())


def declared_absent(service: str) -> bool:
    """Whether the run declared ``service`` absent (its variable set to anything but empty, 0, false or no)."""
    return os.environ.get(absent_variable(service), "").strip().lower() not in ("", "0", "false", "no")


def skip_if_declared_absent(service: str) -> None:
    """Skip the test when the run declared ``service`` absent."""
    if declared_absent(service):
        import pytest
        env = absent_variable(service)
        pytest.skip(f"{service} declared absent ({env}={os.environ[env]})")


def start_or_fail(service: str, start: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``start(*args, **kwargs)`` for a test: skipped when ``service`` is declared absent, failed (not skipped)
    when the server cannot start."""
    import pytest
    skip_if_declared_absent(service)
    try:
        return start(*args, **kwargs)
    except ServerUnavailable as exc:
        reason = str(exc)
    pytest.fail(f"cannot start {service} for the tests: {reason} "
                f"(set {absent_variable(service)}=1 to skip the tests that need it)", pytrace=False)


def session_server(service: str, start: Callable[..., Any], *args: Any, url_env: str | None = None,
                   **kwargs: Any) -> Any:
    """The server of a session fixture: an :class:`ExternalServer` for ``$url_env`` when it is set, else
    ``start_or_fail(service, start, ...)``; skipped when ``service`` is declared absent either way."""
    skip_if_declared_absent(service)
    url = os.environ.get(url_env) if url_env else None
    return ExternalServer(url) if url else start_or_fail(service, start, *args, **kwargs)


def run_test_module(directory: Any, source: str, environment: Mapping[str, str] | None = None,
                    timeout: float = 120) -> tuple[int, str]:
    """Run ``source`` as a pytest module of its own, in a fresh interpreter working in ``directory``, the way another
    project's test suite would run a plugin's fixtures: with this process's environment minus every ``BEAKER_TEST_``
    and ``PYTEST_`` variable, plus ``environment``. Returns pytest's exit status and its output (``-rfEs -s``: the
    reasons of failures, errors and skips, and what the tests print)."""
    directory = os.fspath(directory)
    module = os.path.join(directory, "test_module.py")
    with open(module, "w", encoding="utf-8") as handle:
        handle.write(source)
    with open(os.path.join(directory, "pytest.ini"), "w", encoding="utf-8") as handle:
        handle.write("[pytest]\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BEAKER_TEST_", "PYTEST_"))}
    env.update(environment or {})
    result = subprocess.run([sys.executable, "-m", "pytest", "-rfEs", "-s", "-p", "no:cacheprovider",
                             "-c", os.path.join(directory, "pytest.ini"), "--rootdir", directory, module],
                            capture_output=True, text=True, cwd=directory, env=env, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


class ServerFactory:
    """Starts private servers for one test (through :func:`start_or_fail`) and stops them all at the end.

    A plugin subclasses it with one method per kind of server, and yields one from its ``server_factory`` fixture::

        class RedisServerFactory(ServerFactory):
            def redis(self, **options):
                return self.start("redis", start_redis, **options)

    A project that uses several plugins' servers in one test combines their classes by inheritance.
    """

    def __init__(self) -> None:
        self.started: list[Any] = []

    def start(self, service: str, start: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        server = start_or_fail(service, start, *args, **kwargs)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


__all__ = [
    "HOST", "START_TIMEOUT", "SEARCH_DIRS", "ServerUnavailable", "ServerProcess", "ExternalServer", "SilentServer",
    "ServerFactory", "port_is_free", "free_port", "find_binary", "accepts_connections", "answers_http",
    "start_on_free_port", "stopped", "timed", "absent_variable", "declared_absent", "skip_if_declared_absent",
    "start_or_fail", "session_server", "run_test_module",
]
