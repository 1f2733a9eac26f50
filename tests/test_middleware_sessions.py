"""The WSGI SessionMiddleware: environ keys, when it saves, what it sends, and Beaker's module surface."""
import pytest

import beaker_core.middleware as middleware_module
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.session import Session, SessionObject
from beaker_core.testing.sessions import WSGIClient, session_app, set_cookies


def make(app, **config):
    config.setdefault("session.type", "memory")
    return SessionMiddleware(app, config, registry=Registry())


def test_cache_middleware_is_there_as_in_beaker():
    from beaker_core.middleware import CacheMiddleware
    assert middleware_module.CacheMiddleware is CacheMiddleware
    assert "CacheMiddleware" in middleware_module.__all__
    with pytest.raises(AttributeError):
        middleware_module.NoSuchThing


def test_environ_holds_a_lazy_session_and_a_session_factory():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    WSGIClient(make(app)).request("/")
    assert isinstance(seen["beaker.session"], SessionObject) and not seen["beaker.session"].accessed()
    assert isinstance(seen["beaker.get_session"](), Session)


def test_custom_environ_key_and_webtest_variable():
    seen = {}

    def app(environ, start_response):
        environ["my.session"]["a"] = 1
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    client = WSGIClient(SessionMiddleware(app, {"session.webtest_varname": "session"}, "my.session",
                                          registry=Registry()))
    _, headers, _ = client.request("/")
    assert "beaker.session" not in seen and set_cookies(headers)
    assert seen["paste.testing_variables"]["session"] is seen["my.session"]


def test_the_session_is_saved_before_start_response_passes_the_headers_on():
    events = []

    def app(environ, start_response):
        environ["beaker.session"]["a"] = 1
        start_response("200 OK", [("X-App", "1")])
        return [b""]

    def start_response(status, headers, exc_info=None):
        events.append(list(headers))
        return lambda data: None

    wrapped = make(app)
    wrapped({"PATH_INFO": "/"}, start_response)
    assert events[0][0] == ("X-App", "1") and events[0][1][0] == "Set-Cookie"


def test_an_application_error_saves_nothing():
    def failing(environ, start_response):
        environ["beaker.session"]["a"] = 1
        raise RuntimeError("boom")

    failing_app = SessionMiddleware(failing, {"session.type": "memory"}, registry=Registry())
    with pytest.raises(RuntimeError):
        WSGIClient(failing_app).request("/")
    assert len(failing_app.session_manager.backend._data) == 0


def test_error_page_with_exc_info_still_saves_the_session():
    def app(environ, start_response):
        environ["beaker.session"]["seen_error"] = True
        try:
            raise ValueError("x")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"error"]

    client = WSGIClient(make(app))
    status, headers, _ = client.request("/")
    assert status.startswith("500") and set_cookies(headers)


def test_the_application_iterable_is_returned_unchanged():
    class Body:
        closed = False

        def __iter__(self):
            return iter([b"a", b"b"])

        def close(self):
            Body.closed = True

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    status, _, body = WSGIClient(make(app)).request("/")
    assert body == b"ab" and Body.closed


def test_key_prefix_forms_configure_the_same_thing():
    for config in ({"session.key": "sid"}, {"beaker.session.key": "sid"}):
        app = SessionMiddleware(session_app, {"session.type": "memory", **config}, registry=Registry())
        _, headers, _ = WSGIClient(app).request("/incr")
        assert set_cookies(headers)[0].startswith("sid=")
    app = SessionMiddleware(session_app, type="memory", key="sid", registry=Registry())
    _, headers, _ = WSGIClient(app).request("/incr")
    assert set_cookies(headers)[0].startswith("sid=")


def test_other_cookies_do_not_disturb_the_session():
    client = WSGIClient(make(session_app))
    client.json("/incr")
    cookie = f"tracker=\"bad value\"; beaker.session.id={client.cookies['beaker.session.id']}; theme=dark"
    assert WSGIClient(make(session_app)).json("/get", cookie=cookie) == {}  # another middleware: another store
    assert client.json("/incr", cookie=cookie) == 2


def test_secure_and_domain_attributes_reach_the_cookie():
    app = make(session_app, **{"session.secure": "true", "session.cookie_domain": "example.org",
                               "session.cookie_path": "/app", "session.httponly": "false",
                               "session.samesite": "Strict"})
    _, headers, _ = WSGIClient(app).request("/incr")
    cookie = set_cookies(headers)[0]
    assert "; Secure" in cookie and "Domain=example.org" in cookie and "Path=/app" in cookie
    assert "HttpOnly" not in cookie and "SameSite=Strict" in cookie
