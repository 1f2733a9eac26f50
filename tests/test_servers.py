"""The generic test-server helper of beaker_core.testing.servers, with a tiny Python TCP server as the server.

The servers of the plugins (redis, memcached) are tested in their own test folders.
"""
import os
import pwd
import signal
import socket
import sys
import textwrap

import pytest

from beaker_core.testing import servers
from beaker_core.testing.servers import (ExternalServer, ServerFactory, ServerProcess, ServerUnavailable,
                                         SilentServer, absent_variable, accepts_connections, answers_http,
                                         declared_absent, find_binary, free_port, port_is_free, start_on_free_port,
                                         run_test_module, stopped, timed)

# An upper-casing echo server on the port given as its argument; it says where, as whom and with what it runs.
TINY_SERVER = textwrap.dedent("""
    import os, socket, sys
    print("tiny server in", os.getcwd(), "greeting", os.environ.get("TINY_GREETING"),
          "home", os.environ.get("HOME"), flush=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(16)
    while True:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(connection.recv(1024).upper())
""")


def tiny(port, **options):
    return ServerProcess([sys.executable, "-c", TINY_SERVER, str(port)], port, kind="tiny-server", **options)


def echo(port, text=b"ping", timeout=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(text)
        return sock.recv(1024)


# -- ports and binaries ----------------------------------------------------------------------------------------------

def test_free_port_is_bindable():
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        assert not port_is_free(port)
        assert accepts_connections("127.0.0.1", port)
    assert not accepts_connections("127.0.0.1", port)


def test_find_binary_honours_the_override_and_the_system_directories(monkeypatch, tmp_path):
    monkeypatch.setenv("BEAKER_TEST_TINY_SERVER", str(tmp_path / "missing"))
    with pytest.raises(ServerUnavailable, match="BEAKER_TEST_TINY_SERVER='.*missing' is not an executable file"):
        find_binary("tiny-server", override_env="BEAKER_TEST_TINY_SERVER")
    fake = tmp_path / "tiny-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BEAKER_TEST_TINY_SERVER", str(fake))
    assert find_binary("tiny-server", override_env="BEAKER_TEST_TINY_SERVER") == str(fake)
    monkeypatch.delenv("BEAKER_TEST_TINY_SERVER")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(servers, "SEARCH_DIRS", (str(tmp_path),))
    assert find_binary("tiny-server") == str(fake)  # found outside PATH
    monkeypatch.setattr(servers, "SEARCH_DIRS", ())
    assert find_binary("tiny-server", search_dirs=(str(tmp_path),)) == str(fake)  # a plugin's own directories
    with pytest.raises(ServerUnavailable, match=r"tiny-server was not found on PATH nor in  \(install it or set "
                                                r"BEAKER_TEST_TINY_SERVER\)"):
        find_binary("tiny-server", override_env="BEAKER_TEST_TINY_SERVER")


# -- processes -------------------------------------------------------------------------------------------------------

def test_a_server_starts_in_its_directory_with_its_environment_and_stops_cleanly(monkeypatch):
    monkeypatch.setenv("HOME", "/somewhere")
    server = tiny(free_port(), env={"TINY_GREETING": "hello", "HOME": None}).start()
    try:
        assert server.running and server.address == f"127.0.0.1:{server.port}"
        assert echo(server.port) == b"PING"
        directory = server.directory
        assert os.path.isdir(directory) and os.path.basename(directory).startswith(f"beaker-tiny-server-{server.port}-")
        assert f"tiny server in {directory} greeting hello home None" in server.log_tail()
        assert os.environ["HOME"] == "/somewhere"  # only the child's environment changed
    finally:
        server.stop()
    assert not server.running
    assert not os.path.exists(directory)
    assert not accepts_connections("127.0.0.1", server.port)


def test_a_server_can_be_killed_and_restarted_on_its_port():
    with start_on_free_port(tiny) as server:
        first_pid = server.process.pid
        server.kill()
        assert server.process.returncode == -signal.SIGKILL
        assert not server.ping() and not server.running
        assert os.path.isdir(server.directory)  # kept for the restart
        server.restart()
        assert server.process.pid != first_pid
        assert echo(server.port, b"back") == b"BACK"
    assert not server.running


def test_a_server_that_ignores_sigterm_is_killed():
    ignoring = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + TINY_SERVER
    port = free_port()
    server = ServerProcess([sys.executable, "-c", ignoring, str(port)], port).start()
    server.stop_timeout = 0.3
    server.stop()
    assert server.process.returncode == -signal.SIGKILL


def test_a_server_that_exits_is_reported_with_its_output():
    port = free_port()
    broken = ServerProcess([sys.executable, "-c", "import sys; sys.exit('cannot bind: broken on purpose')"], port,
                           kind="broken-server")
    with pytest.raises(ServerUnavailable, match=f"broken-server on port {port} exited with status 1: "
                                                f".*broken on purpose"):
        broken.start()
    broken.stop()


def test_a_server_that_never_answers_is_killed_after_the_timeout_with_its_output():
    port = free_port()
    silent = ServerProcess([sys.executable, "-c", "print('waiting for nothing', flush=True)\nimport time\n"
                            "time.sleep(60)"], port, start_timeout=0.5)
    with pytest.raises(ServerUnavailable, match=f"server on port {port} did not answer within 0.5 seconds: "
                                                f"waiting for nothing"):
        silent.start()
    assert silent.process.returncode == -signal.SIGKILL
    silent.stop()


def test_a_binary_that_cannot_be_executed_is_a_server_unavailable(tmp_path):
    not_executable = tmp_path / "server"
    not_executable.write_text("")
    server = ServerProcess([str(not_executable)], free_port())
    with pytest.raises(ServerUnavailable, match="could not be started: .*Permission denied"):
        server.start()
    server.stop()


def test_readiness_check_of_an_http_server(tmp_path):
    """As an S3 emulator would be started: an HTTP server, ready when it answers (a 404 is an answer)."""
    assert not answers_http(f"http://127.0.0.1:{free_port()}/")

    def make(port):
        return ServerProcess([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                              str(tmp_path)], port, kind="http-server",
                             ready=lambda server: answers_http(f"http://{server.address}/missing"))

    with start_on_free_port(make) as server:
        assert answers_http(f"http://{server.address}/")


def test_a_server_runs_as_another_user_in_a_directory_given_to_it():
    """PostgreSQL refuses to run as root: a root test run starts it as ``postgres``. Here, ``nobody`` (or, when the
    run is not root, the current user)."""
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    entry = pwd.getpwnam(user)
    server = ServerProcess(["/bin/sh", "-c", "id -un > whoami; id -G > groups; touch ready; exec sleep 60"],
                           free_port(), user=user, ready=lambda server: os.path.exists(f"{server.directory}/ready"))
    with server.start():
        assert os.stat(server.directory).st_uid == entry.pw_uid
        with open(f"{server.directory}/whoami") as whoami:
            assert whoami.read().strip() == user
        if os.geteuid() == 0:
            with open(f"{server.directory}/groups") as groups:
                assert groups.read().split() == [str(entry.pw_gid)]  # none of root's groups kept


def test_start_on_free_port_tries_another_port_when_its_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the port is in use, and nothing answers on it
        ports = [taken.getsockname()[1]]
        made = []

        def make(port):
            made.append(tiny(port))
            return made[-1]

        def next_port():
            return ports.pop(0) if ports else free_port()

        with start_on_free_port(make, port=next_port) as server:
            assert len(made) == 2 and server is made[1]
            assert made[0].port == taken.getsockname()[1] and made[0].process.returncode == 1  # EADDRINUSE
            assert not os.path.exists(made[0].directory)  # the failed one was stopped
            assert echo(server.port) == b"PING"


def test_start_on_free_port_does_not_retry_other_failures():
    made = []

    def make(port):
        made.append(ServerProcess([sys.executable, "-c", "raise SystemExit(3)"], port))
        return made[-1]

    with pytest.raises(ServerUnavailable, match="exited with status 3"):
        start_on_free_port(make)
    assert len(made) == 1 and not os.path.exists(made[0].directory)


# -- hung servers ----------------------------------------------------------------------------------------------------

def test_stopped_server_accepts_connections_and_answers_nothing_until_the_block_ends():
    with start_on_free_port(tiny) as server:
        with stopped(server):
            elapsed, result = timed(lambda: echo(server.port, timeout=0.3))
            assert isinstance(result, socket.timeout)
            assert 0.3 <= elapsed < 2
        assert echo(server.port) == b"PING"
        elapsed, result = timed(lambda: 42)
        assert result == 42 and elapsed < 1


def test_silent_server_never_answers():
    with SilentServer() as silent:
        assert silent.address == f"127.0.0.1:{silent.port}"
        assert isinstance(timed(lambda: echo(silent.port, timeout=0.2))[1], socket.timeout)
    assert not accepts_connections("127.0.0.1", silent.port)


# -- the policy, as a plugin's fixtures apply it -----------------------------------------------------------------------

def test_absent_variable_and_its_values(monkeypatch):
    assert absent_variable("redis") == "BEAKER_TEST_NO_REDIS"
    assert absent_variable("s3-moto") == "BEAKER_TEST_NO_S3_MOTO"
    for value, absent in (("", False), ("0", False), ("false", False), (" No ", False), ("1", True),
                          ("yes", True)):
        monkeypatch.setenv("BEAKER_TEST_NO_TINY", value)
        assert declared_absent("tiny") is absent, value
    monkeypatch.delenv("BEAKER_TEST_NO_TINY")
    assert not declared_absent("tiny")


def test_external_server_is_left_alone():
    server = ExternalServer("tiny://10.9.8.7:1234")
    server.stop()
    assert server.url == "tiny://10.9.8.7:1234" and "10.9.8.7" in repr(server)


def test_server_factory_stops_everything_it_started():
    factory = ServerFactory()
    started = [factory.start("tiny", start_on_free_port, tiny) for _ in range(2)]
    assert all(server.running for server in started)
    factory.stop_all()
    assert not any(server.running for server in started) and factory.started == []


PLUGIN_TESTS = textwrap.dedent("""
    import pytest

    from beaker_core.testing.servers import (ExternalServer, ServerFactory, ServerProcess, find_binary,
                                             session_server, start_on_free_port)


    def start_tiny():
        binary = find_binary("tiny-server", override_env="BEAKER_TEST_TINY_SERVER")
        return start_on_free_port(lambda port: ServerProcess([binary, str(port)], port, kind="tiny-server"))


    class TinyServerFactory(ServerFactory):
        def tiny(self):
            return self.start("tiny", start_tiny)


    @pytest.fixture(scope="session")
    def tiny_server():
        server = session_server("tiny", start_tiny, url_env="BEAKER_TEST_TINY_URL")
        yield server
        server.stop()


    @pytest.fixture
    def server_factory():
        factory = TinyServerFactory()
        yield factory
        factory.stop_all()


    def test_shared(tiny_server):
        print("SHARED", tiny_server.url if isinstance(tiny_server, ExternalServer) else tiny_server.address)


    def test_factory(server_factory):
        print("FACTORY", server_factory.tiny().address)
""")


def run_plugin_tests(tmp_path, **environment):
    binary = tmp_path / "tiny-server"
    binary.write_text(f"#!{sys.executable}\n{TINY_SERVER}")
    binary.chmod(0o755)
    return run_test_module(tmp_path, PLUGIN_TESTS, {"BEAKER_TEST_TINY_SERVER": str(binary), **environment})


def test_fixture_fails_when_the_binary_is_missing(tmp_path):
    missing = str(tmp_path / "no-tiny-server")
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_TINY_SERVER=missing, BEAKER_TEST_NO_TINY="0")
    assert code != 0
    assert "1 failed, 1 error" in output, output  # the factory fails in the test, the session fixture at setup
    assert (f"cannot start tiny for the tests: BEAKER_TEST_TINY_SERVER={missing!r} is not an executable file "
            f"(set BEAKER_TEST_NO_TINY=1 to skip the tests that need it)") in output
    assert "skipped" not in output


def test_fixture_skips_when_the_server_is_declared_absent(tmp_path):
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_NO_TINY="1",
                                    BEAKER_TEST_TINY_SERVER=str(tmp_path / "no-tiny-server"))
    assert code == 0, output
    assert "2 skipped" in output
    assert "tiny declared absent (BEAKER_TEST_NO_TINY=1)" in output


def test_fixtures_start_servers_or_use_the_given_url(tmp_path):
    code, output = run_plugin_tests(tmp_path)
    assert code == 0, output
    assert "SHARED 127.0.0.1:" in output and "FACTORY 127.0.0.1:" in output
    code, output = run_plugin_tests(tmp_path, BEAKER_TEST_TINY_URL="tiny://10.9.8.7:1234")
    assert code == 0, output
    assert "SHARED tiny://10.9.8.7:1234" in output
    assert "FACTORY 127.0.0.1:" in output  # the factory always starts its own processes
