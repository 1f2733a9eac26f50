"""Beaker's quickstart (a counter in environ['beaker.session']) on redis, served over real HTTP to a client that
keeps cookies."""
import http.cookiejar
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

from beaker_core.middleware import SessionMiddleware


def counter_app(environ, start_response):
    session = environ["beaker.session"]
    session["counter"] = session.get("counter", 0) + 1  # no save(): beaker-core saves changes by itself
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["counter"]).encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_quickstart_counter_over_http(redis_server):
    app = SessionMiddleware(counter_app, {"session.type": "redis", "session.url": redis_server.url,
                                          "session.timeout": "60"})
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
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
