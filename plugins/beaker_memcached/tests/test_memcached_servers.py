"""The test servers of beaker_memcached.testing and their fixtures, with the real binary."""
import socket
import textwrap

import pytest

from beaker_core.testing.servers import ServerUnavailable, declared_absent, run_test_module
from beaker_memcached.testing import memcached_binary, memcached_command, start_memcached

needs_memcached = pytest.mark.skipif(declared_absent("memcached"),
                                     reason="memcached declared absent (BEAKER_TEST_NO_MEMCACHED)")


def _listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_memcached_binary_honours_its_override(monkeypatch, tmp_path):
    monkeypatch.setenv("BEAKER_TEST_MEMCACHED", str(tmp_path / "missing"))
    with pytest.raises(ServerUnavailable, match="BEAKER_TEST_MEMCACHED="):
        memcached_binary()


def test_a_binary_that_does_not_start_is_reported_with_its_log(monkeypatch, tmp_path):
    broken = tmp_path / "memcached"
    broken.write_text("#!/bin/sh\necho 'cannot bind: broken on purpose' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("BEAKER_TEST_MEMCACHED", str(broken))
    with pytest.raises(ServerUnavailable, match="exited with status 3: .*broken on purpose"):
        start_memcached()


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


# -- the fixtures, as another test suite uses them -------------------------------------------------------------------

PLUGIN_TESTS = textwrap.dedent("""
    from beaker_memcached.testing import memcached_server, server_factory

    def test_memcached(memcached_server):
        print("MEMCACHED", memcached_server.url)

    def test_factory(server_factory):
        print("FACTORY", server_factory.memcached().url)
""")


def run_plugin_tests(tmp_path, **environment):
    return run_test_module(tmp_path, PLUGIN_TESTS, environment)


def test_fixture_fails_when_the_binary_is_missing(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_MEMCACHED=str(tmp_path / "no-memcached"))
    assert code != 0
    assert "1 failed, 1 error" in output, output  # the factory fails in the test, the fixture at setup
    assert "cannot start memcached for the tests" in output and "BEAKER_TEST_NO_MEMCACHED=1" in output
    assert "skipped" not in output


def test_fixture_skips_when_the_server_is_declared_absent(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_NO_MEMCACHED="1",
                                    BEAKER_TEST_MEMCACHED=str(tmp_path / "no-memcached"))
    assert code == 0, output
    assert "2 skipped" in output
    assert "memcached declared absent (BEAKER_TEST_NO_MEMCACHED=1)" in output


@needs_memcached
def test_fixtures_start_servers_or_use_the_given_urls(tmp_path):
    code, output = run_plugin_tests(tmp_path)
    assert code == 0, output
    assert "MEMCACHED 127.0.0.1:" in output
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_MEMCACHED_URL="10.9.8.7:11299")
    assert code == 0, output
    assert "MEMCACHED 10.9.8.7:11299" in output
    assert "FACTORY 127.0.0.1:" in output  # the factory always starts its own processes
