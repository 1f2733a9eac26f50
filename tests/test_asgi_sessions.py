"""The ASGI middleware under Starlette: request.session, cookies, and no backend call on the event loop."""
import asyncio
import collections
import socket
import threading
import time
import warnings

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from beaker_core.asgi import SessionMiddleware
from beaker_core.backends.file import FileBackend
from beaker_core.registry import Registry

SECRET = "asgi-cookie-secret-0123456789"


class ThreadRecordingFile(FileBackend):
    """The real file backend, noting which thread made each call."""

    def __init__(self, **options):
        super().__init__(**options)
        self.calls = collections.Counter()
        self.threads = set()

    def _note(self, name):
        self.calls[name] += 1
        self.threads.add(threading.get_ident())

    def get(self, key):
        self._note("get")
        return super().get(key)

    def set(self, key, value, ttl=None):
        self._note("set")
        return super().set(key, value, ttl)

    def touch(self, key, ttl):
        self._note("touch")
        return super().touch(key, ttl)

    def update(self, key, change, ttl=None):
        self._note("update")
        return super().update(key, change, ttl)

    def delete(self, key):
        self._note("delete")
        return super().delete(key)


loop_threads = set()


async def incr(request):
    loop_threads.add(threading.get_ident())
    request.session["counter"] = request.session.get("counter", 0) + 1
    return JSONResponse(request.session["counter"])


async def read(request):
    loop_threads.add(threading.get_ident())
    return JSONResponse(dict(request.session))


async def noop(request):
    loop_threads.add(threading.get_ident())
    return PlainTextResponse("untouched")


async def logout(request):
    request.session.invalidate()
    return PlainTextResponse("bye")


async def socket_endpoint(websocket):
    await websocket.accept()
    await websocket.send_json(websocket.session.get("counter"))
    websocket.session["from_socket"] = True
    await websocket.close()


def starlette_app(config, registry=None):
    routes = [Route("/incr", incr), Route("/read", read), Route("/noop", noop), Route("/logout", logout),
              WebSocketRoute("/ws", socket_endpoint)]
    return Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, config=config, registry=registry)])


def configs(tmp_path):
    return {
        "memory": {"session.type": "memory"},
        "file": {"session.type": "file", "session.data_dir": str(tmp_path / "data")},
        "cookie": {"session.type": "cookie", "session.secret": SECRET},
    }


@pytest.fixture
def recording_registry():
    registry = Registry(load_entrypoints=False)
    registry.register("backend", "recording-file", ThreadRecordingFile)
    return registry


@pytest.mark.parametrize("kind", ["memory", "file", "cookie"])
def test_starlette_counter(tmp_path, kind):
    with TestClient(starlette_app(configs(tmp_path)[kind], Registry())) as client:
        assert [client.get("/incr").json() for _ in range(3)] == [1, 2, 3]
        response = client.get("/noop")
        assert response.text == "untouched" and "set-cookie" not in response.headers
        assert client.get("/read").json() == {"counter": 3}


@pytest.mark.parametrize("kind", ["memory", "file", "cookie"])
def test_cookie_attributes_and_bad_cookies(tmp_path, kind):
    with TestClient(starlette_app(configs(tmp_path)[kind], Registry())) as client:
        response = client.get("/incr")
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    for bad in ("../../x", "garbage", "A" * 200):
        with TestClient(starlette_app(configs(tmp_path)[kind], Registry())) as client:
            response = client.get("/incr", headers={"Cookie": f"beaker.session.id={bad}"})
            assert response.status_code == 200 and response.json() == 1


def test_backend_calls_run_off_the_event_loop(tmp_path, recording_registry):
    config = {"session.type": "recording-file", "session.data_dir": str(tmp_path)}
    app = starlette_app(config, recording_registry)
    loop_threads.clear()
    with TestClient(app) as client:
        assert [client.get("/incr").json() for _ in range(3)] == [1, 2, 3]
        assert client.get("/read").json() == {"counter": 3}
    backend = recording_registry.open_backend("recording-file", data_dir=str(tmp_path))
    assert backend.calls["get"] >= 3 and backend.calls["set"] == 1 and backend.calls["update"] == 2
    assert loop_threads and backend.threads and not (backend.threads & loop_threads)


def test_untouched_request_costs_no_write_and_no_cookie(tmp_path, recording_registry):
    config = {"session.type": "recording-file", "session.data_dir": str(tmp_path)}
    app = starlette_app(config, recording_registry)
    backend = recording_registry.open_backend("recording-file", data_dir=str(tmp_path))
    with TestClient(app) as client:
        response = client.get("/noop")
        assert "set-cookie" not in response.headers and backend.calls == {}
        client.get("/incr")
        backend.calls.clear()
        response = client.get("/noop")
        # the cookie's session is read ahead in a worker thread; nothing is written
        assert "set-cookie" not in response.headers and dict(backend.calls) == {"get": 1}


def test_invalidate_through_request_session(tmp_path):
    with TestClient(starlette_app(configs(tmp_path)["file"], Registry())) as client:
        client.get("/incr")
        client.get("/incr")
        response = client.get("/logout")
        assert "Max-Age=0" in response.headers["set-cookie"]
        assert client.get("/incr").json() == 1


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_websocket_sees_and_saves_the_session(tmp_path, kind):
    with TestClient(starlette_app(configs(tmp_path)[kind], Registry())) as client:
        client.get("/incr")
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == 1
        assert client.get("/read").json() == {"counter": 1, "from_socket": True}


def test_raw_asgi_application_uses_scope_session(tmp_path):
    async def raw(scope, receive, send):
        session = scope["session"]
        session["hits"] = session.get("hits", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(session["hits"]).encode()})

    app = SessionMiddleware(raw, configs(tmp_path)["file"], registry=Registry())
    client = TestClient(app)  # used without `with`: the raw application does not speak lifespan
    assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]


def test_lifespan_passes_through():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])
        assert "session" not in scope

    app = SessionMiddleware(inner, {"session.type": "memory"}, registry=Registry())
    asyncio.run(app({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["file", "cookie"])
def test_counter_under_uvicorn(tmp_path, kind):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(starlette_app(configs(tmp_path)[kind], Registry()), host="127.0.0.1",
                                           port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 10
        while not server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert [client.get("/incr").json() for _ in range(3)] == [1, 2, 3]
            assert "set-cookie" not in client.get("/noop").headers
    finally:
        server.should_exit = True
        thread.join(10)
