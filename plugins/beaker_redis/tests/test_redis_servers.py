"""The test servers of beaker_redis.testing (redis-server and the cluster) and their fixtures, with the real binaries.

The sentinel group is exercised by test_redis_sentinel.py.
"""
import os
import socket
import textwrap

import pytest

from beaker_core.testing.servers import ServerUnavailable, declared_absent, run_test_module
from beaker_redis.testing import redis_binary, redis_command, start_redis, start_redis_cluster

needs_redis = pytest.mark.skipif(declared_absent("redis"), reason="redis declared absent (BEAKER_TEST_NO_REDIS)")


def _listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_redis_binary_honours_its_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("BEAKER_TEST_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(ServerUnavailable, match="BEAKER_TEST_REDIS_SERVER"):
        redis_binary()
    fake = tmp_path / "redis-cli"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BEAKER_TEST_REDIS_CLI", str(fake))
    assert redis_binary("redis-cli") == str(fake)


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


@needs_redis
def test_redis_cluster_of_three_masters():
    with start_redis_cluster(3) as cluster:
        state = cluster.state()
        assert state["cluster_state"] == "ok"
        assert state["cluster_size"] == "3" and state["cluster_known_nodes"] == "3"
        assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for _, port in
                                                            cluster.startup_nodes)
        assert all(port <= 55535 for _, port in cluster.startup_nodes)  # room for the cluster bus at port + 10000
        directories = [node.directory for node in cluster.nodes]
    assert not any(os.path.exists(directory) for directory in directories)
    with pytest.raises(ValueError):
        start_redis_cluster(2)


# -- the fixtures, as another test suite uses them -------------------------------------------------------------------

PLUGIN_TESTS = textwrap.dedent("""
    from beaker_redis.testing import redis_server, server_factory

    def test_redis(redis_server):
        print("REDIS", redis_server.url)

    def test_factory(server_factory):
        print("FACTORY", server_factory.redis().url)
""")


def run_plugin_tests(tmp_path, **environment):
    return run_test_module(tmp_path, PLUGIN_TESTS, environment)


def test_fixture_fails_when_the_binary_is_missing(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_REDIS_SERVER=str(tmp_path / "no-redis"))
    assert code != 0
    assert "1 failed, 1 error" in output, output  # the factory fails in the test, the fixture at setup
    assert "cannot start redis for the tests" in output and "BEAKER_TEST_NO_REDIS=1" in output
    assert "skipped" not in output


def test_fixture_skips_when_the_server_is_declared_absent(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_NO_REDIS="1",
                                    BEAKER_TEST_REDIS_SERVER=str(tmp_path / "no-redis"))
    assert code == 0, output
    assert "2 skipped" in output
    assert "redis declared absent (BEAKER_TEST_NO_REDIS=1)" in output


@needs_redis
def test_fixtures_start_servers_or_use_the_given_urls(tmp_path):
    code, output = run_plugin_tests(tmp_path)
    assert code == 0, output
    assert "REDIS redis://127.0.0.1:" in output
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_REDIS_URL="redis://10.9.8.7:6390/2")
    assert code == 0, output
    assert "REDIS redis://10.9.8.7:6390/2" in output
    assert "FACTORY redis://127.0.0.1:" in output  # the factory always starts its own processes
