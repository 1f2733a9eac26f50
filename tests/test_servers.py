"""The test-server helpers and fixtures of beaker_core.testing.servers, with the real binaries."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from beaker_core.testing import servers
from beaker_core.testing.servers import (ServerUnavailable, find_binary, free_port, memcached_command,
                                         redis_command, start_memcached, start_redis, start_redis_cluster)


def _absent(service):
    return os.environ.get(f"BEAKER_TEST_NO_{service.upper()}", "").strip().lower() not in ("", "0", "false", "no")


needs_redis = pytest.mark.skipif(_absent("redis"), reason="redis declared absent (BEAKER_TEST_NO_REDIS)")
needs_memcached = pytest.mark.skipif(_absent("memcached"),
                                     reason="memcached declared absent (BEAKER_TEST_NO_MEMCACHED)")


def _listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- helpers ---------------------------------------------------------------------------------------------------------

def test_free_port_is_bindable_and_cluster_ports_leave_room_for_the_bus():
    port = free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
    for _ in range(20):
        port = free_port(cluster_bus=True)
        assert port <= 55535
        for candidate in (port, port + 10000):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", candidate))


def test_find_binary_honours_the_override_and_the_system_directories(monkeypatch, tmp_path):
    monkeypatch.setenv("BEAKER_TEST_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(ServerUnavailable, match="BEAKER_TEST_REDIS_SERVER"):
        find_binary("redis-server")
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BEAKER_TEST_REDIS_SERVER", str(fake))
    assert find_binary("redis-server") == str(fake)
    monkeypatch.delenv("BEAKER_TEST_REDIS_SERVER")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(servers, "_SEARCH_DIRS", (str(tmp_path),))
    assert find_binary("redis-server") == str(fake)  # found outside PATH
    monkeypatch.setattr(servers, "_SEARCH_DIRS", ())
    with pytest.raises(ServerUnavailable, match="redis-server was not found"):
        find_binary("redis-server")


def test_a_binary_that_does_not_start_is_reported_with_its_log(monkeypatch, tmp_path):
    broken = tmp_path / "memcached"
    broken.write_text("#!/bin/sh\necho 'cannot bind: broken on purpose' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("BEAKER_TEST_MEMCACHED", str(broken))
    with pytest.raises(ServerUnavailable, match="exited with status 3: .*broken on purpose"):
        start_memcached()


# -- real processes ------------------------------------------------------------------------------------------------

@needs_redis
def test_redis_server_starts_answers_and_stops_cleanly():
    server = start_redis(password="pw")
    try:
        assert server.url == f"redis://:pw@127.0.0.1:{server.port}/0"
        assert redis_command(server.port, "PING")[0] == "error"  # NOAUTH: the password is required
        assert server.command("PING") == "PONG"
        assert server.command("CONFIG", "GET", "bind") == ["bind", "127.0.0.1"]
        directory = server.directory
        assert os.path.isdir(directory)
    finally:
        server.stop()
    assert not server.running
    assert not os.path.exists(directory)
    assert not _listening(server.port)


@needs_redis
def test_redis_server_can_be_killed_and_restarted_on_its_port():
    with start_redis() as server:
        server.command("SET", "k", "v")
        server.kill()
        assert not _listening(server.port)
        server.restart()
        assert server.command("PING") == "PONG"
        assert server.command("GET", "k") is None  # no persistence: a restart starts empty


@needs_memcached
def test_memcached_starts_with_its_item_size_and_stops():
    with start_memcached(max_item_size="2m") as server:
        assert server.url == f"127.0.0.1:{server.port}"
        assert memcached_command(server.port, "version").startswith("VERSION ")
        assert server.stats("settings")["item_size_max"] == str(2 * 1024 * 1024)
        assert server.stats()["pid"] == str(server.process.pid)
        server.kill()
        assert not server.ping()
        server.restart()
        assert server.ping()
    assert not _listening(server.port)


@needs_redis
def test_redis_cluster_of_three_masters():
    with start_redis_cluster(3) as cluster:
        state = cluster.state()
        assert state["cluster_state"] == "ok"
        assert state["cluster_size"] == "3" and state["cluster_known_nodes"] == "3"
        assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for _, port in
                                                            cluster.startup_nodes)
        directories = [node.directory for node in cluster.nodes]
    assert not any(os.path.exists(directory) for directory in directories)
    with pytest.raises(ValueError):
        start_redis_cluster(2)


# -- the fixtures, as another test suite uses them -------------------------------------------------------------------

PLUGIN_TESTS = textwrap.dedent("""
    from beaker_core.testing.servers import memcached_server, redis_cluster, redis_server, server_factory

    def test_redis(redis_server):
        print("REDIS", redis_server.url)

    def test_memcached(memcached_server):
        print("MEMCACHED", memcached_server.url)

    def test_factory(server_factory):
        print("FACTORY", server_factory.memcached().url)
""")


def run_plugin_tests(tmp_path, **environment):
    (tmp_path / "test_plugin.py").write_text(PLUGIN_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BEAKER_TEST_", "PYTEST_"))}
    env.update(environment)
    result = subprocess.run([sys.executable, "-m", "pytest", "-rfEs", "-s", "-p", "no:cacheprovider",
                             "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
                             str(tmp_path / "test_plugin.py")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_fixture_fails_when_the_binary_is_missing(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_REDIS_SERVER=str(tmp_path / "no-redis"),
                                    BEAKER_TEST_MEMCACHED=str(tmp_path / "no-memcached"))
    assert code != 0
    assert "1 failed, 2 errors" in output, output  # the factory fails in the test, the fixtures at setup
    assert "cannot start redis for the tests" in output and "BEAKER_TEST_NO_REDIS=1" in output
    assert "cannot start memcached for the tests" in output
    assert "skipped" not in output


def test_fixture_skips_when_the_server_is_declared_absent(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_NO_REDIS="1", BEAKER_TEST_NO_MEMCACHED="1",
                                    BEAKER_TEST_REDIS_SERVER=str(tmp_path / "no-redis"))
    assert code == 0, output
    assert "3 skipped" in output
    assert "redis declared absent (BEAKER_TEST_NO_REDIS=1)" in output
    assert "memcached declared absent (BEAKER_TEST_NO_MEMCACHED=1)" in output


@needs_redis
@needs_memcached
def test_fixtures_start_servers_or_use_the_given_urls(tmp_path):
    code, output = run_plugin_tests(tmp_path)
    assert code == 0, output
    assert "REDIS redis://127.0.0.1:" in output and "MEMCACHED 127.0.0.1:" in output
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_REDIS_URL="redis://10.9.8.7:6390/2",
                                    BEAKER_TEST_MEMCACHED_URL="10.9.8.7:11299",
                                    BEAKER_TEST_REDIS_SERVER=str(tmp_path / "no-redis"))
    assert code == 0, output
    assert "REDIS redis://10.9.8.7:6390/2" in output and "MEMCACHED 10.9.8.7:11299" in output
    assert "FACTORY 127.0.0.1:" in output  # the factory always starts its own processes
