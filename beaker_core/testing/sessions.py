"""Sessions through the WSGI middleware, on the backend a conformance subclass names.

:class:`SessionConformance` builds ``SessionMiddleware`` with ``{'session.type': backend, 'session.<option>': ...}``
from the subclass's ``backend`` and ``make_options(tmp_path)``, drives a small WSGI application in-process with a
client that keeps cookies (:class:`WSGIClient`), and checks what every backend must give sessions: the counter that
counts without ``save()``, no store access and no cookie for an untouched session, no lost update between
concurrent requests, no adopted or malformed ids, invalidation, id regeneration, idle timeout, and the serializer's
types. The cross-process test exists only for a shared backend (``@requires("shared")``).
"""
from __future__ import annotations

import datetime
import json
import threading
import uuid
from typing import Any, Callable
from urllib.parse import parse_qsl

import pytest

from ..locks import Lock
from ..middleware import SessionMiddleware
from ..session import KEY_PREFIX
from . import _workers
from .backend import ConformanceBase, requires
from .concurrency import run_in_threads


class WSGIClient:
    """Calls a WSGI application in-process and keeps the cookies it sets, as a browser would (minus domains)."""

    def __init__(self, app: Callable):
        self.app = app
        self.cookies: dict[str, str] = {}

    def request(self, path: str = "/", cookie: str | None = None) -> tuple[str, list, bytes]:
        path, _, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": None,
            "wsgi.errors": None, "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        header = cookie if cookie is not None else "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if header:
            environ["HTTP_COOKIE"] = header
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        for name, value in captured["headers"]:
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                cookie_name, _, cookie_value = pair.partition("=")
                if "Max-Age=0" in value:
                    self.cookies.pop(cookie_name, None)
                else:
                    self.cookies[cookie_name] = cookie_value
        return captured["status"], captured["headers"], body

    def json(self, path: str = "/", cookie: str | None = None) -> Any:
        status, _, body = self.request(path, cookie)
        assert status.startswith("200"), (status, body)
        return json.loads(body)


class RefusedLock(Lock):
    """A lock type that fails the test when it is taken: register it (``registry.register("lock", "refused",
    RefusedLock)``) and configure ``session.lock_type = refused`` to prove that a save path takes no lock."""

    kind = "refused"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        raise AssertionError(f"the lock {self.name!r} was taken, but this save should not need a lock")

    def release(self) -> None:
        pass


def set_cookies(headers: list) -> list[str]:
    return [value for name, value in headers if name.lower() == "set-cookie"]


def session_app(environ: dict, start_response: Callable) -> list[bytes]:
    """The application the suite drives: one path per session operation, answers JSON."""
    path = environ["PATH_INFO"]
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    answer: Any = None
    if path == "/noop":
        answer = "untouched"
    else:
        session = environ["beaker.session"]
        if path == "/incr":
            session["counter"] = session.get("counter", 0) + 1
            answer = session["counter"]
        elif path == "/set":
            for key, value in query.items():
                session[key] = value
            answer = dict(session)
        elif path == "/get":
            answer = dict(session)
        elif path == "/del":
            for key in query:
                session.pop(key, None)
            answer = dict(session)
        elif path == "/id":
            answer = session.id
        elif path == "/invalidate":
            session.invalidate()
            answer = session.id
        elif path == "/delete":
            session.delete()
            answer = None
        elif path == "/regenerate":
            session.regenerate_id()
            answer = session.id
        elif path == "/append":
            session.setdefault("items", [])
            session["items"].append(query.get("item", "x"))
            if "mark" in query:
                session.changed("items")
            answer = session["items"]
        elif path == "/types":
            session["when"] = datetime.datetime(2024, 5, 6, 7, 8, 9)
            session["raw"] = b"\x00\xff"
            session["pair"] = (1, "two")
            session["ids"] = {3, 1, 2}
            answer = "stored"
        elif path == "/check-types":
            answer = [session["when"] == datetime.datetime(2024, 5, 6, 7, 8, 9), session["raw"] == b"\x00\xff",
                      session["pair"] == (1, "two"), session["ids"] == {1, 2, 3}]
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]


class SessionConformance(ConformanceBase):
    """Sessions through the WSGI middleware, on ``backend`` with ``make_options(tmp_path)``."""

    #: extra ``session.*`` options for every session test (without the prefix)
    session_options: dict[str, Any] = {}

    def session_config(self, tmp_path, **extra: Any) -> dict[str, Any]:
        config = {"session.type": self.backend}
        config.update({f"session.{key}": value for key, value in self.make_options(tmp_path).items()})
        config.update({f"session.{key}": value for key, value in self.session_options.items()})
        config.update({f"session.{key}": value for key, value in extra.items()})
        return config

    @pytest.fixture
    def make_app(self, tmp_path, registry):
        if not self.backend:
            pytest.fail(f"{type(self).__name__} must set the class attribute `backend` to a backend name")

        def make(**extra: Any) -> SessionMiddleware:
            return SessionMiddleware(session_app, self.session_config(tmp_path, **extra), registry=registry)
        return make

    @pytest.fixture
    def client(self, make_app) -> WSGIClient:
        return WSGIClient(make_app())

    def stored(self, app: SessionMiddleware, session_id: str) -> Any:
        return app.session_manager.backend.get(KEY_PREFIX + session_id) if not app.session_manager.atomic_records \
            else app.session_manager.backend.get_record(KEY_PREFIX + session_id)

    # -- the quickstart ------------------------------------------------------------------------------------------

    def test_session_counter_counts_without_save(self, client):
        assert [client.json("/incr") for _ in range(4)] == [1, 2, 3, 4]

    def test_session_cookie_is_sent_once_then_only_when_needed(self, client):
        _, headers, _ = client.request("/incr")
        cookies = set_cookies(headers)
        assert len(cookies) == 1
        assert "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0] and "Path=/" in cookies[0]
        _, headers, _ = client.request("/incr")
        assert set_cookies(headers) == []

    def test_session_two_clients_have_separate_sessions(self, make_app):
        app = make_app()
        first, second = WSGIClient(app), WSGIClient(app)
        assert [first.json("/incr"), first.json("/incr"), second.json("/incr")] == [1, 2, 1]

    # -- per-request cost ----------------------------------------------------------------------------------------

    def test_session_untouched_request_sends_no_cookie_and_stores_nothing(self, make_app, client):
        status, headers, _ = client.request("/noop")
        assert status.startswith("200") and set_cookies(headers) == []
        assert client.cookies == {}

    def test_session_read_of_new_session_stores_nothing(self, make_app):
        app = make_app()
        client = WSGIClient(app)
        status, headers, _ = client.request("/get")
        assert set_cookies(headers) == []
        session_id = client.json("/id")
        assert self.stored(app, session_id) is None

    def test_session_read_only_request_sends_no_cookie(self, client):
        client.json("/set?name=ada")
        _, headers, body = client.request("/get")
        assert json.loads(body) == {"name": "ada"} and set_cookies(headers) == []

    # -- safety --------------------------------------------------------------------------------------------------

    def test_session_unknown_id_is_not_adopted(self, make_app):
        app = make_app()
        client = WSGIClient(app)
        forged = uuid.uuid4().hex
        client.cookies["beaker.session.id"] = forged
        assert client.json("/set?a=1") == {"a": "1"}
        assert client.cookies["beaker.session.id"] != forged
        assert self.stored(app, forged) is None

    @pytest.mark.parametrize("bad", ["../../x", "", "..", "a" * 500, "%00", "\u00e9t\u00e9" * 8, "x" * 21,
                                     "/etc/passwd", "a;b", "\"quoted\""])
    def test_session_malformed_id_gets_a_fresh_session(self, make_app, bad):
        client = WSGIClient(make_app())
        status, _, body = client.request("/incr", cookie=f"beaker.session.id={bad}")
        assert status.startswith("200") and json.loads(body) == 1
        assert client.cookies["beaker.session.id"] != bad

    def test_session_concurrent_requests_keep_every_key(self, make_app):
        app = make_app()
        client = WSGIClient(app)
        client.json("/set?start=1")
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        run_in_threads(lambda index: WSGIClient(app).json(f"/set?key{index}={index}", cookie=cookie), 8, timeout=30)
        assert client.json("/get") == {"start": "1", **{f"key{i}": str(i) for i in range(8)}}

    @pytest.mark.slow
    @requires("shared")
    def test_session_concurrent_processes_keep_every_key(self, make_app, tmp_path, registry):
        app = make_app()
        client = WSGIClient(app)
        client.json("/set?start=1")
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        config = self.session_config(tmp_path)
        with _workers.context().Pool(self.processes) as pool:  # leaving the block ends the workers, even hung ones
            answers = pool.starmap_async(request_in_process, [(config, f"/set?proc{index}={index}", cookie)
                                                              for index in range(self.processes)]).get(120)
        assert all(f"proc{index}" in answer for index, answer in enumerate(answers))
        assert client.json("/get") == {"start": "1", **{f"proc{i}": str(i) for i in range(self.processes)}}

    def test_session_concurrent_deletes_and_sets_of_different_keys(self, make_app):
        app = make_app()
        client = WSGIClient(app)
        client.json("/set?a=1&b=2")
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        WSGIClient(app).json("/del?a", cookie=cookie)
        WSGIClient(app).json("/set?c=3", cookie=cookie)
        assert client.json("/get") == {"b": "2", "c": "3"}

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def test_session_invalidate_removes_the_old_record(self, make_app):
        app = make_app()
        client = WSGIClient(app)
        client.json("/set?user=ada")
        old = client.json("/id")
        assert self.stored(app, old) is not None
        new = client.json("/invalidate")
        assert new != old and self.stored(app, old) is None
        assert client.json("/get") == {}

    def test_session_regenerate_id_keeps_data_and_removes_the_old_record(self, make_app):
        app = make_app()
        client = WSGIClient(app)
        client.json("/set?user=ada")
        old = client.json("/id")
        new = client.json("/regenerate")
        assert new != old and self.stored(app, old) is None
        assert client.cookies["beaker.session.id"] == new
        assert client.json("/get") == {"user": "ada"}
        # the old id is dead: presenting it gives a fresh session
        assert WSGIClient(app).json("/get", cookie=f"beaker.session.id={old}") == {}

    def test_session_delete_clears_the_cookie_and_the_record(self, make_app):
        app = make_app()
        client = WSGIClient(app)
        client.json("/set?user=ada")
        old = client.json("/id")
        _, headers, _ = client.request("/delete")
        assert any("Max-Age=0" in cookie for cookie in set_cookies(headers))
        assert self.stored(app, old) is None and client.cookies == {}

    def test_session_nested_change_needs_reassignment_or_changed(self, client):
        client.json("/append?item=a")
        client.json("/append?item=b")            # an append inside the stored list is not seen...
        assert client.json("/get")["items"] == ["a"]
        client.json("/append?item=c&mark=1")     # ...unless the key is marked changed
        assert client.json("/get")["items"] == ["a", "c"]

    def test_session_auto_saves_nested_changes(self, make_app):
        client = WSGIClient(make_app(auto="true"))
        client.json("/append?item=a")
        client.json("/append?item=b")
        assert client.json("/get")["items"] == ["a", "b"]

    def test_session_serializer_types_round_trip(self, client):
        client.json("/types")
        assert client.json("/check-types") == [True, True, True, True]

    def test_session_idle_timeout_ends_the_session(self, make_app):
        timeout = self.short_ttl + 0.5
        client = WSGIClient(make_app(timeout=timeout))
        assert client.json("/incr") == 1
        assert client.json("/incr") == 2
        self.wait_past(timeout)
        assert client.json("/incr") == 1

    def test_session_secret_signs_the_id(self, make_app):
        app = make_app(secret="a-secret-of-sufficient-length")
        client = WSGIClient(app)
        assert client.json("/incr") == 1
        signed = client.cookies["beaker.session.id"]
        session_id, _, signature = signed.rpartition(".")
        assert len(signature) == 43
        assert WSGIClient(app).json("/incr", cookie=f"beaker.session.id={signed}") == 2
        # the bare id, or the id with another signature, is refused
        assert WSGIClient(app).json("/incr", cookie=f"beaker.session.id={session_id}") == 1
        assert WSGIClient(app).json("/incr", cookie=f"beaker.session.id={session_id}.{'A' * 43}") == 1


def request_in_process(config: dict, path: str, cookie: str) -> Any:
    """Run one request through a fresh middleware in this process and return its JSON answer (for worker
    processes: the session config must be picklable)."""
    return WSGIClient(SessionMiddleware(session_app, config)).json(path, cookie=cookie)


def assert_quickstart_counts_over_http(config: dict) -> None:
    """Beaker's quickstart served by a real HTTP server to a client that keeps cookies: the counter goes 1, 2, 3
    without ``save()``, and a client without the cookie gets a session of its own."""
    import http.cookiejar
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    def counter_app(environ, start_response):
        session = environ["beaker.session"]
        session["counter"] = session.get("counter", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(session["counter"]).encode()]

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, SessionMiddleware(counter_app, config), handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        url = f"http://127.0.0.1:{server.server_port}/"
        assert [browser.open(url, timeout=10).read() for _ in range(3)] == [b"1", b"2", b"3"]
        stranger = urllib.request.build_opener()  # no cookies: a session of its own
        assert stranger.open(url, timeout=10).read() == b"1"
        assert browser.open(url, timeout=10).read() == b"4"
    finally:
        server.shutdown()
        server.server_close()
