"""The test servers of beaker_sqla.testing (PostgreSQL and MariaDB) and their fixtures, with the real binaries."""
import os
import pwd
import socket
import textwrap

import pytest
import sqlalchemy

from beaker_core.testing.servers import ServerUnavailable, declared_absent, run_test_module
from beaker_sqla.testing import (DATABASE, mariadb_binary, postgresql_binary, start_mariadb,
                                 start_postgresql)

needs_postgresql = pytest.mark.skipif(declared_absent("postgresql"),
                                      reason="postgresql declared absent (BEAKER_TEST_NO_POSTGRESQL)")
needs_mariadb = pytest.mark.skipif(declared_absent("mariadb"),
                                   reason="mariadb declared absent (BEAKER_TEST_NO_MARIADB)")


def _listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _select(url, statement):
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(statement)).scalar()
    finally:
        engine.dispose()


def _owner(path):
    return pwd.getpwuid(os.stat(path).st_uid).pw_name


def test_binaries_honour_their_overrides(monkeypatch, tmp_path):
    for variable, find in (("BEAKER_TEST_POSTGRES", postgresql_binary), ("BEAKER_TEST_MARIADBD", mariadb_binary)):
        monkeypatch.setenv(variable, str(tmp_path / "missing"))
        with pytest.raises(ServerUnavailable, match=variable):
            find()
    fake = tmp_path / "initdb"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BEAKER_TEST_INITDB", str(fake))
    assert postgresql_binary("initdb") == str(fake)
    monkeypatch.setenv("BEAKER_TEST_MARIADB_INSTALL_DB", str(fake))
    assert mariadb_binary("mariadb-install-db") == str(fake)


@needs_postgresql
def test_postgresql_binaries_are_found_outside_path(monkeypatch, tmp_path):
    """Debian keeps them in /usr/lib/postgresql/<version>/bin, which is not on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert os.access(postgresql_binary("postgres"), os.X_OK)
    assert os.access(postgresql_binary("initdb"), os.X_OK)


@needs_postgresql
def test_postgresql_starts_answers_and_stops_cleanly():
    server = start_postgresql()
    try:
        assert server.url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{DATABASE}"
        assert _select(server.url, "SELECT current_database()") == DATABASE
        assert _select(server.url, "SHOW listen_addresses") == "127.0.0.1"
        assert _select(server.url, "SHOW fsync") == "off"
        assert _select(server.url, "SHOW unix_socket_directories") == server.directory
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            assert _owner(server.data_dir) == "postgres"
        directory = server.directory
    finally:
        server.stop()
    assert not server.running
    assert not os.path.exists(directory)
    assert not _listening(server.port)


@needs_postgresql
def test_postgresql_can_be_killed_and_restarted_on_its_port_with_its_data():
    with start_postgresql() as server:
        with server.connect() as connection:
            connection.execute("CREATE TABLE kept (k integer)")
            connection.execute("INSERT INTO kept VALUES (7)")
        old = server.connect()
        server.kill()
        assert not _listening(server.port)
        server.restart()
        with pytest.raises(Exception):
            old.execute("SELECT 1")  # its session died with the server
        old.close()
        assert _select(server.url, "SELECT k FROM kept") == 7
        with server.connect() as connection:
            server.terminate()  # with a session open: a fast shutdown, not one that waits for it
            assert not server.running
        server.start()
        assert _select(server.url, "SELECT count(*) FROM kept") == 1


@needs_mariadb
def test_mariadb_starts_answers_and_stops_cleanly():
    server = start_mariadb()
    try:
        assert server.url == f"mysql+pymysql://root@127.0.0.1:{server.port}/{DATABASE}"
        assert _select(server.url, "SELECT DATABASE()") == DATABASE
        assert _select(server.url, "SELECT @@bind_address") == "127.0.0.1"
        assert _select(server.url, "SELECT @@port") == server.port
        assert _select(server.url, "SELECT @@log_bin") == 0
        assert _select(server.url, "SELECT @@socket") == os.path.join(server.directory, "mariadbd.sock")
        assert _select(server.url, "SELECT @@character_set_server") == "utf8mb4"
        if os.geteuid() == 0:  # mariadbd refuses to run as root unless told to
            assert _owner(server.data_dir) == "mysql"
        directory = server.directory
    finally:
        server.stop()
    assert not server.running
    assert not os.path.exists(directory)
    assert not _listening(server.port)


@needs_mariadb
def test_mariadb_can_be_killed_and_restarted_on_its_port_with_its_data():
    with start_mariadb() as server:
        connection = server.connect()
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE kept (k integer) ENGINE=InnoDB")
            cursor.execute("INSERT INTO kept VALUES (7)")
        server.kill()
        assert not _listening(server.port)
        server.restart()
        with pytest.raises(Exception):
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # its session died with the server
        connection.close()
        assert _select(server.url, "SELECT k FROM kept") == 7
        connection = server.connect()
        server.terminate()
        assert not server.running
        connection.close()
        server.start()
        assert _select(server.url, "SELECT count(*) FROM kept") == 1


# -- the fixtures, as another test suite uses them -------------------------------------------------------------------

PLUGIN_TESTS = textwrap.dedent("""
    from beaker_sqla.testing import mariadb_server, postgresql_server, server_factory

    def test_postgresql(postgresql_server):
        print("POSTGRESQL", postgresql_server.url)

    def test_mariadb(mariadb_server):
        print("MARIADB", mariadb_server.url)

    def test_factory_postgresql(server_factory):
        print("FACTORY", server_factory.postgresql().url)

    def test_factory_mariadb(server_factory):
        print("FACTORY", server_factory.mariadb().url)
""")


def run_plugin_tests(tmp_path, **environment):
    return run_test_module(tmp_path, PLUGIN_TESTS, environment)


def test_fixtures_fail_when_the_binaries_are_missing(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_POSTGRES=str(tmp_path / "no-postgres"),
                                    BEAKER_TEST_MARIADBD=str(tmp_path / "no-mariadbd"))
    assert code != 0
    assert "2 failed, 2 errors" in output, output  # the factory fails in the test, the fixtures at setup
    assert "cannot start postgresql for the tests" in output and "BEAKER_TEST_NO_POSTGRESQL=1" in output
    assert "cannot start mariadb for the tests" in output and "BEAKER_TEST_NO_MARIADB=1" in output
    assert "skipped" not in output


def test_fixtures_skip_the_servers_declared_absent(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_NO_POSTGRESQL="1", BEAKER_TEST_NO_MARIADB="1",
                                    BEAKER_TEST_POSTGRES=str(tmp_path / "no-postgres"),
                                    BEAKER_TEST_MARIADBD=str(tmp_path / "no-mariadbd"))
    assert code == 0, output
    assert "4 skipped" in output
    assert "postgresql declared absent (BEAKER_TEST_NO_POSTGRESQL=1)" in output
    assert "mariadb declared absent (BEAKER_TEST_NO_MARIADB=1)" in output


def test_one_server_declared_absent_leaves_the_other_required(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_NO_POSTGRESQL="1",
                                    BEAKER_TEST_MARIADBD=str(tmp_path / "no-mariadbd"))
    assert code != 0
    assert "1 failed, 2 skipped, 1 error" in output, output
    assert "cannot start mariadb for the tests" in output


@needs_postgresql
@needs_mariadb
def test_fixtures_start_servers_or_use_the_given_urls(tmp_path):
    code, output = run_plugin_tests(tmp_path)
    assert code == 0, output
    assert "POSTGRESQL postgresql+psycopg://postgres@127.0.0.1:" in output
    assert "MARIADB mysql+pymysql://root@127.0.0.1:" in output
    given = {"BEAKER_TEST_POSTGRESQL_URL": "postgresql+psycopg://app:pw@10.9.8.7:5433/sessions",
             "BEAKER_TEST_MARIADB_URL": "mysql+pymysql://app:pw@10.9.8.7:3307/sessions"}
    code, output = run_plugin_tests(tmp_path, **given)
    assert code == 0, output
    assert "POSTGRESQL postgresql+psycopg://app:pw@10.9.8.7:5433/sessions" in output
    assert "MARIADB mysql+pymysql://app:pw@10.9.8.7:3307/sessions" in output
    assert output.count("FACTORY postgresql+psycopg://postgres@127.0.0.1:") == 1  # the factory starts its own
    assert output.count("FACTORY mysql+pymysql://root@127.0.0.1:") == 1
