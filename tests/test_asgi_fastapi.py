"""FastAPI behind the ASGI middleware: ``request.session`` is the beaker-core session."""
import warnings

import pytest
from fastapi import FastAPI, Request

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from beaker_core.asgi import SessionMiddleware
from beaker_core.registry import Registry


def fastapi_app(config):
    app = FastAPI()
    app.add_middleware(SessionMiddleware, config=config, registry=Registry())

    @app.get("/incr")
    async def incr(request: Request):
        request.session["counter"] = request.session.get("counter", 0) + 1
        return {"counter": request.session["counter"]}

    @app.get("/cart/add/{item}")
    def add_to_cart(item: str, request: Request):  # a sync endpoint, run in FastAPI's thread pool
        cart = request.session.get("cart", [])
        request.session["cart"] = [*cart, item]
        return request.session["cart"]

    @app.get("/whoami")
    async def whoami(request: Request):
        return {"id": request.session.id, "keys": sorted(request.session.keys())}

    return app


@pytest.mark.parametrize("kind", ["memory", "file", "cookie"])
def test_fastapi_keeps_a_counter_and_a_cart(tmp_path, kind):
    config = {
        "memory": {"session.type": "memory"},
        "file": {"session.type": "file", "session.data_dir": str(tmp_path / "data")},
        "cookie": {"session.type": "cookie", "session.secret": "fastapi-secret-0123456789abcdef"},
    }[kind]
    with TestClient(fastapi_app(config)) as client:
        assert [client.get("/incr").json()["counter"] for _ in range(3)] == [1, 2, 3]
        assert client.get("/cart/add/apple").json() == ["apple"]
        assert client.get("/cart/add/pear").json() == ["apple", "pear"]
        assert client.get("/whoami").json()["keys"] == ["cart", "counter"]
    with TestClient(fastapi_app(config)) as stranger:  # no cookie: a session of its own
        assert stranger.get("/incr").json()["counter"] == 1


def test_fastapi_tampered_cookie_gets_a_fresh_session(tmp_path):
    config = {"session.type": "file", "session.data_dir": str(tmp_path / "data")}
    app = fastapi_app(config)
    with TestClient(app) as client:
        client.get("/incr")
        client.get("/incr")
        cookie_name = next(iter(client.cookies.keys()))
    for bad in ("../../etc/passwd", "", "x" * 5000, "\x01\xff"):
        with TestClient(app) as attacker:
            raw_cookie = f"{cookie_name}={bad}".encode("latin-1")
            response = attacker.get("/incr", headers=[(b"cookie", raw_cookie)])
            assert response.status_code == 200
            assert response.json()["counter"] == 1
            issued = response.headers["set-cookie"]  # a new id was issued, not the one sent
            assert issued.startswith(f"{cookie_name}=") and not issued.startswith(f"{cookie_name}={bad};")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]
