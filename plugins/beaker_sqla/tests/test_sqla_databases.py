"""The ``sqla`` backend on real PostgreSQL and MariaDB servers: the conformance suite on each, and a database
killed or restarted mid-run."""
import pytest

from beaker_core.exceptions import BackendError
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing import BackendConformance
from beaker_core.testing.sessions import WSGIClient, session_app
from beaker_sqla.backend import SqlaBackend

#: each server kind, and the dialect names SQLAlchemy gives it
DIALECTS = {"postgresql": ("postgresql",), "mariadb": ("mysql", "mariadb")}


class TestSqlaPostgresqlConformance(BackendConformance):
    backend = "sqla"

    @pytest.fixture(autouse=True)
    def _server(self, postgresql_server):
        self.url = postgresql_server.url

    def make_options(self, tmp_path):
        return {"url": self.url}


class TestSqlaMariadbConformance(BackendConformance):
    backend = "sqla"

    @pytest.fixture(autouse=True)
    def _server(self, mariadb_server):
        self.url = mariadb_server.url

    def make_options(self, tmp_path):
        return {"url": self.url}


@pytest.fixture(params=sorted(DIALECTS))
def kind(request):
    """Each database server kind in turn."""
    return request.param


def test_the_backend_uses_the_servers_dialect(kind, request):
    backend = SqlaBackend(url=request.getfixturevalue(f"{kind}_server").url)
    try:
        assert backend.dialect in DIALECTS[kind]
        backend.set("dialect-check", b"v")
        assert backend.get("dialect-check") == b"v"
    finally:
        backend.delete("dialect-check")
        backend.close()


def test_a_database_killed_mid_run_gives_backend_errors_then_recovers(server_factory, kind):
    server = getattr(server_factory, kind)()
    backend = SqlaBackend(url=server.url)
    try:
        backend.set("k", b"v")
        backend.set("n", b"1")
        server.kill()
        for operation in (lambda: backend.get("k"), lambda: backend.get_many(["k", "n"]),
                          lambda: backend.set("k", b"w"), lambda: backend.add("new", b"v"),
                          lambda: backend.incr("n"), lambda: backend.delete("k")):
            with pytest.raises(BackendError, match=f"127.0.0.1:{server.port}"):
                operation()
        server.restart()
        assert backend.get("k") == b"v"  # the committed data survived the crash
        assert backend.incr("n") == 2
        backend.set("k", b"again")
        assert backend.get("k") == b"again"
    finally:
        backend.close()


def test_a_database_restarted_between_two_calls_is_not_noticed(server_factory, kind):
    server = getattr(server_factory, kind)()
    backend = SqlaBackend(url=server.url)
    try:
        backend.set("k", b"v")  # the pool holds a connection, which the restart ends
        server.restart()
        assert backend.get("k") == b"v"
    finally:
        backend.close()


def test_an_application_keeps_its_sessions_across_a_database_restart(server_factory, kind):
    server = getattr(server_factory, kind)()
    app = SessionMiddleware(session_app, {"session.type": "ext:database", "session.url": server.url,
                                          "session.timeout": "300"}, registry=Registry())
    client = WSGIClient(app)
    assert [client.json("/incr") for _ in range(2)] == [1, 2]
    server.kill()
    with pytest.raises(BackendError, match=f"127.0.0.1:{server.port}"):
        client.request("/incr")
    server.restart()
    assert client.json("/incr") == 3  # the same application, its session as it was before the failed request
