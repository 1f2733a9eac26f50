"""Test servers of this plugin: PostgreSQL and MariaDB on loopback ports, each with a database ready to use.

Helpers, usable without pytest fixtures (e.g. from benchmarks)::

    server = start_postgresql()   # PostgresServer: .url, .port, .connect(), .stop(), .kill(), .restart()
    server = start_mariadb()      # MariadbServer: the same

``url`` is a SQLAlchemy URL of the server's test database (:data:`DATABASE`):
``postgresql+psycopg://postgres@127.0.0.1:PORT/beaker_test`` and ``mysql+pymysql://root@127.0.0.1:PORT/beaker_test``;
the server trusts every loopback connection, so there is no password. ``connect()`` opens a connection of the driver
(psycopg, PyMySQL) to that database, in autocommit mode.

They are built on beaker-core's generic helper (:mod:`beaker_core.testing.servers`): every server listens on
127.0.0.1 only (its Unix socket is in its own temporary directory), keeps its data in that directory, is stopped (and
its directory removed) by ``stop()``, and a server that cannot start raises
:class:`~beaker_core.testing.servers.ServerUnavailable` with the reason and the tail of its log. A server is ready when
a real client connects to it and runs ``SELECT 1``. They are tuned to start fast and to be thrown away: no fsync, small
buffers, no binary log; a server killed or stopped keeps its data (``restart()`` starts it again on the same port and
the same data). Neither runs as root: when this process is root, PostgreSQL runs as the ``postgres`` user and MariaDB
as the ``mysql`` user (their packages create them).

Pytest fixtures (a ``conftest.py`` or test module imports those it uses)::

    from beaker_sqla.testing import postgresql_server, mariadb_server, server_factory

``postgresql_server`` and ``mariadb_server`` are session scoped and shared by every test of the run, so tests isolate
themselves with table names of their own and never stop their servers. ``server_factory`` is function scoped: a
:class:`SqlaServerFactory` whose ``postgresql()`` and ``mariadb()`` start private servers that a test may stop, kill
or restart, all stopped when the test ends (a project that also uses another plugin's ``server_factory`` defines one
fixture yielding a subclass of both factories).

Environment:

``BEAKER_TEST_NO_POSTGRESQL=1`` / ``BEAKER_TEST_NO_MARIADB=1``
    the server is known to be absent: tests that need it are skipped. Without it, a missing binary or a server that
    does not start makes the test **fail**.
``BEAKER_TEST_POSTGRESQL_URL`` / ``BEAKER_TEST_MARIADB_URL``
    the SQLAlchemy URL of a database on a server that is already running, used instead of starting one (the session
    fixtures only; the factory always starts its own processes).
``BEAKER_TEST_POSTGRES`` / ``BEAKER_TEST_INITDB`` / ``BEAKER_TEST_MARIADBD`` / ``BEAKER_TEST_MARIADB_INSTALL_DB``
    path of the binary to run; otherwise ``PATH``, then the newest ``/usr/lib/postgresql/<version>/bin`` (where
    Debian keeps PostgreSQL's server binaries; ``initdb`` is looked for next to ``postgres`` first) and the system
    directories are searched.
"""
from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import tempfile
from typing import Any, Iterator

import pytest

from beaker_core.testing.servers import (ExternalServer, ServerFactory, ServerProcess, ServerUnavailable,
                                         find_binary, session_server, start_on_free_port)

POSTGRESQL = "postgresql"  # BEAKER_TEST_NO_POSTGRESQL declares it absent
MARIADB = "mariadb"  # BEAKER_TEST_NO_MARIADB declares it absent
#: the database every test server creates for the tests
DATABASE = "beaker_test"
#: seconds initdb / mariadb-install-db may take
INIT_TIMEOUT = 60.0

__all__ = [
    "POSTGRESQL", "MARIADB", "DATABASE", "PostgresServer", "MariadbServer", "SqlaServerFactory",
    "postgresql_binary", "mariadb_binary", "start_postgresql", "start_mariadb", "postgresql_server",
    "mariadb_server", "server_factory",
]

_BINARY_ENV = {"postgres": "BEAKER_TEST_POSTGRES", "initdb": "BEAKER_TEST_INITDB",
               "mariadbd": "BEAKER_TEST_MARIADBD", "mariadb-install-db": "BEAKER_TEST_MARIADB_INSTALL_DB"}
# older names of MariaDB's programs, looked for when the new ones are missing
_MARIADB_ALIASES = {"mariadbd": "mysqld", "mariadb-install-db": "mysql_install_db"}


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def _postgresql_dirs() -> tuple[str, ...]:
    """Debian's versioned directories of PostgreSQL's server binaries, newest first."""
    return tuple(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True))


def postgresql_binary(name: str = "postgres") -> str:
    """The path of ``postgres`` or ``initdb`` (``$BEAKER_TEST_POSTGRES`` / ``$BEAKER_TEST_INITDB``, else PATH, the
    newest ``/usr/lib/postgresql/<version>/bin`` and the system directories)."""
    return find_binary(name, override_env=_BINARY_ENV.get(name), search_dirs=_postgresql_dirs())


def mariadb_binary(name: str = "mariadbd") -> str:
    """The path of ``mariadbd`` or ``mariadb-install-db`` (``$BEAKER_TEST_MARIADBD`` /
    ``$BEAKER_TEST_MARIADB_INSTALL_DB``, else PATH and the system directories; then their older names ``mysqld``
    and ``mysql_install_db``)."""
    try:
        return find_binary(name, override_env=_BINARY_ENV.get(name))
    except ServerUnavailable:
        alias = _MARIADB_ALIASES.get(name)
        if alias is None or os.environ.get(_BINARY_ENV.get(name, "")):
            raise
        try:
            return find_binary(alias)
        except ServerUnavailable:
            pass
        raise


def _server_user(name: str) -> str | None:
    """The user a database server runs as: ``name`` when this process is root (neither server runs as root), else
    this process's own user (None)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise ServerUnavailable(f"this process is root and there is no {name!r} user to run the server as "
                                    f"(the server's package creates it)") from None
        return name
    return None


class _DatabaseServer(ServerProcess):
    """A database server that needs its data directory initialised (``initialise()``, once, before its first
    start) and a database created for the tests (after its first start)."""

    scheme = ""
    admin_user = ""

    def __init__(self, argv: list[str], port: int, directory: str, *, user: str | None, init_argv: list[str]):
        super().__init__(argv, port, directory, user=user)
        self.init_argv = init_argv
        self.data_dir = os.path.join(self.directory, "data")
        self.database = DATABASE

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the test database."""
        return f"{self.scheme}://{self.admin_user}@{self.host}:{self.port}/{self.database}"

    def _run_as_server_user(self, argv: list[str], what: str) -> None:
        identity: dict[str, Any] = {}
        if self.user is not None and os.geteuid() == 0:
            import pwd
            entry = pwd.getpwnam(self.user)
            identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            result = subprocess.run(argv, cwd=self.directory, stdin=subprocess.DEVNULL, capture_output=True,
                                    text=True, timeout=INIT_TIMEOUT, env=self._child_environment(), **identity)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerUnavailable(f"{what} failed to run: {exc}") from exc
        if result.returncode != 0:
            output = " | ".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ServerUnavailable(f"{what} exited with status {result.returncode}: {output}")

    def _child_environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        environment.update({"LC_ALL": "C", "LANG": "C"})
        if self.user is not None:
            environment["HOME"] = self.directory  # not root's home, which the server's user may not read
            environment["USER"] = environment["LOGNAME"] = self.user
        return environment

    def start(self) -> "_DatabaseServer":
        if not os.path.isdir(self.data_dir):
            self._run_as_server_user(self.init_argv, f"{self.init_argv[0]} for {self.kind} on port {self.port}")
        super().start()
        try:
            self.create_database()
        except Exception as exc:
            self.kill()
            raise ServerUnavailable(f"{self.kind} on port {self.port} started but creating the database "
                                    f"{self.database!r} failed: {exc}") from exc
        return self

    def create_database(self) -> None:
        raise NotImplementedError

    def connect(self, database: str | None = None) -> Any:
        """A driver connection (autocommit) to ``database`` (the test database by default)."""
        raise NotImplementedError


# -- PostgreSQL ------------------------------------------------------------------------------------------------------

class PostgresServer(_DatabaseServer):
    """A ``postgres`` server (its cluster made by ``initdb`` in its directory) with the database :data:`DATABASE`;
    the superuser ``postgres`` connects without a password from loopback."""

    kind = "postgresql"
    scheme = "postgresql+psycopg"
    admin_user = "postgres"

    def connect(self, database: str | None = None, timeout: float = 2.0) -> Any:
        import psycopg
        return psycopg.connect(host=self.host, port=self.port, user=self.admin_user,
                               dbname=database or self.database, connect_timeout=max(1, int(timeout)),
                               autocommit=True)

    def ping(self) -> bool:
        import psycopg
        try:
            with self.connect("postgres") as connection:
                connection.execute("SELECT 1").fetchone()
        except psycopg.Error:
            return False
        return True

    def create_database(self) -> None:
        with self.connect("postgres") as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{self.database}"')

    def terminate(self) -> None:
        """A fast shutdown (SIGINT: open sessions are ended, as a restarted server ends them), then SIGKILL."""
        if self.running:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def start_postgresql() -> PostgresServer:
    """Start a PostgreSQL server on a free loopback port, with the database :data:`DATABASE`."""
    postgres = postgresql_binary("postgres")
    beside = os.path.join(os.path.dirname(postgres), "initdb")  # the initdb of the same version
    if not os.environ.get(_BINARY_ENV["initdb"]) and os.access(beside, os.X_OK):
        initdb = beside
    else:
        initdb = postgresql_binary("initdb")
    user = _server_user("postgres")

    def make(port: int) -> PostgresServer:
        directory = tempfile.mkdtemp(prefix=f"beaker-postgresql-{port}-")
        data = os.path.join(directory, "data")
        init_argv = [initdb, "-D", data, "--username", PostgresServer.admin_user, "--auth", "trust",
                     "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions"]
        argv = [postgres, "-D", data, "-p", str(port), "-k", directory, "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "full_page_writes=off",
                "-c", "shared_buffers=16MB", "-c", "max_connections=200", "-c", "max_wal_size=64MB",
                "-c", "logging_collector=off", "-c", "log_min_messages=warning", "-c", "jit=off"]
        return PostgresServer(argv, port, directory, user=user, init_argv=init_argv)

    return start_on_free_port(make)


# -- MariaDB ---------------------------------------------------------------------------------------------------------

class MariadbServer(_DatabaseServer):
    """A ``mariadbd`` server (its system tables made by ``mariadb-install-db`` in its directory) with the database
    :data:`DATABASE`; ``root`` connects without a password from loopback."""

    kind = "mariadb"
    scheme = "mysql+pymysql"
    admin_user = "root"

    def connect(self, database: str | None = None, timeout: float = 2.0) -> Any:
        import pymysql
        return pymysql.connect(host=self.host, port=self.port, user=self.admin_user,
                               database=database or self.database, connect_timeout=timeout, autocommit=True,
                               charset="utf8mb4")

    def ping(self) -> bool:
        import pymysql
        try:
            connection = pymysql.connect(host=self.host, port=self.port, user=self.admin_user, connect_timeout=1)
        except pymysql.Error:
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except pymysql.Error:
            return False
        finally:
            connection.close()
        return True

    def create_database(self) -> None:
        import pymysql
        connection = pymysql.connect(host=self.host, port=self.port, user=self.admin_user, connect_timeout=5,
                                     autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` "
                               f"CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        finally:
            connection.close()


def start_mariadb() -> MariadbServer:
    """Start a MariaDB server on a free loopback port, with the database :data:`DATABASE`."""
    mariadbd = mariadb_binary("mariadbd")
    install_db = mariadb_binary("mariadb-install-db")
    user = _server_user("mysql")

    def make(port: int) -> MariadbServer:
        directory = tempfile.mkdtemp(prefix=f"beaker-mariadb-{port}-")
        data = os.path.join(directory, "data")
        # the same settings for the bootstrap and the server (the log files' size must agree)
        settings = ["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=16M", "--skip-log-bin",
                    "--performance-schema=OFF", "--skip-name-resolve"]
        init_argv = [install_db, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
                     "--skip-test-db", *settings]
        argv = [mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                f"--socket={os.path.join(directory, 'mariadbd.sock')}",
                f"--pid-file={os.path.join(directory, 'mariadbd.pid')}", f"--tmpdir={directory}", *settings,
                "--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0",
                "--character-set-server=utf8mb4", "--max-connections=200"]
        return MariadbServer(argv, port, directory, user=user, init_argv=init_argv)

    return start_on_free_port(make)


# -- pytest fixtures -------------------------------------------------------------------------------------------------

class SqlaServerFactory(ServerFactory):
    """Starts private database servers for one test (the ``server_factory`` fixture)."""

    def postgresql(self) -> PostgresServer:
        return self.start(POSTGRESQL, start_postgresql)

    def mariadb(self) -> MariadbServer:
        return self.start(MARIADB, start_mariadb)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer | ExternalServer]:
    """A PostgreSQL server shared by the whole test session (or ``$BEAKER_TEST_POSTGRESQL_URL``)."""
    server = session_server(POSTGRESQL, start_postgresql, url_env="BEAKER_TEST_POSTGRESQL_URL")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariadbServer | ExternalServer]:
    """A MariaDB server shared by the whole test session (or ``$BEAKER_TEST_MARIADB_URL``)."""
    server = session_server(MARIADB, start_mariadb, url_env="BEAKER_TEST_MARIADB_URL")
    yield server
    server.stop()


@pytest.fixture
def server_factory() -> Iterator[SqlaServerFactory]:
    """Start private database servers in a test (``server_factory.postgresql()``, ``server_factory.mariadb()``);
    all are stopped at the end of the test, whatever it did to them."""
    factory = SqlaServerFactory()
    yield factory
    factory.stop_all()
