"""Sessions served by a real HTTP server on 127.0.0.1 and driven by a real client that keeps cookies."""
import http.cookiejar
import json
import os
import socketserver
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.sessions import session_app
from beaker_core.testing.concurrency import run_in_threads


def quickstart_app(environ, start_response):
    """Beaker's quickstart, with only the import changed: no save()."""
    session = environ["beaker.session"]
    if "counter" in session:
        session["counter"] += 1
    else:
        session["counter"] = 1
    start_response("200 OK", [("Content-type", "text/plain")])
    return [("Counter value is: %d" % session["counter"]).encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def serve():
    servers = []

    def start(app):
        server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class Browser:
    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, url, cookie=None):
        request = urllib.request.Request(url)
        if cookie is not None:
            request.add_header("Cookie", cookie)
            opener = urllib.request.build_opener()
        else:
            opener = self.opener
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers.get_all("Set-Cookie") or [], response.read()

    def cookie(self, name="beaker.session.id"):
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value
        return None


def configs(tmp_path):
    return {
        "file": {"session.type": "file", "session.data_dir": str(tmp_path / "data")},
        "memory": {"session.type": "memory"},
        "cookie": {"session.type": "cookie", "session.secret": "quickstart-secret-0123456789"},
    }


@pytest.mark.parametrize("kind", ["file", "memory", "cookie"])
def test_quickstart_counter_counts_over_http(serve, tmp_path, kind):
    url = serve(SessionMiddleware(quickstart_app, configs(tmp_path)[kind], registry=Registry()))
    browser = Browser()
    bodies = [browser.get(url)[2] for _ in range(4)]
    assert bodies == [b"Counter value is: %d" % n for n in (1, 2, 3, 4)]
    # a second browser starts its own count
    assert Browser().get(url)[2] == b"Counter value is: 1"


def _files_outside(tmp_path, data_dir):
    found = set()
    for root, _, files in os.walk(tmp_path):
        if not os.path.abspath(root).startswith(os.path.abspath(data_dir)):
            found.update(os.path.join(root, name) for name in files)
    return found


@pytest.mark.parametrize("cookie_value", [
    "../../x", "..%2F..%2Fx", "", "..", "/etc/passwd",
    "\u00bf\u00ff\u0001\u00fe" * 10,          # random bytes, as the server decodes them (latin-1)
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.tampered",
])
@pytest.mark.parametrize("kind", ["file", "cookie"])
def test_bad_cookie_gets_a_fresh_session_and_no_stray_file(serve, tmp_path, kind, cookie_value):
    config = configs(tmp_path)[kind]
    url = serve(SessionMiddleware(quickstart_app, config, registry=Registry()))
    status, cookies, body = Browser().get(url, cookie=f"beaker.session.id={cookie_value}")
    assert status == 200 and body == b"Counter value is: 1"
    assert cookies and not cookies[0].startswith(f"beaker.session.id={cookie_value};")
    assert _files_outside(tmp_path, tmp_path / "data") == set()
    assert not os.path.exists(tmp_path.parent / "x") and not os.path.exists(tmp_path / "x")


@pytest.mark.parametrize("kind", ["file", "memory", "cookie"])
def test_tampered_session_cookie_gets_a_fresh_session(serve, tmp_path, kind):
    url = serve(SessionMiddleware(quickstart_app, configs(tmp_path)[kind], registry=Registry()))
    browser = Browser()
    browser.get(url)
    browser.get(url)
    value = browser.cookie()
    # flip one character in the middle of the value
    middle = len(value) // 2
    tampered = value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1:]
    status, _, body = Browser().get(url, cookie=f"beaker.session.id={tampered}")
    assert status == 200 and body == b"Counter value is: 1"
    # truncated
    status, _, body = Browser().get(url, cookie=f"beaker.session.id={value[:-5]}")
    assert status == 200 and body == b"Counter value is: 1"
    # the genuine cookie still works
    assert browser.get(url)[2] == b"Counter value is: 3"


def test_eight_concurrent_http_requests_on_one_session_keep_every_key(serve, tmp_path):
    config = configs(tmp_path)["file"]
    url = serve(SessionMiddleware(session_app, config, registry=Registry()))
    browser = Browser()
    browser.get(url + "/set?start=1")
    cookie = f"beaker.session.id={browser.cookie()}"
    statuses = run_in_threads(lambda index: Browser().get(url + f"/set?key{index}={index}", cookie=cookie)[0], 8)
    assert statuses == [200] * 8
    stored = json.loads(browser.get(url + "/get")[2])
    assert stored == {"start": "1", **{f"key{i}": str(i) for i in range(8)}}


def test_untouched_request_leaves_the_store_alone_and_sends_no_cookie(serve, tmp_path):
    data_dir = tmp_path / "data"
    url = serve(SessionMiddleware(session_app, configs(tmp_path)["file"], registry=Registry()))
    browser = Browser()

    def snapshot():
        return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
                for root, _, files in os.walk(data_dir) for name in files}

    status, cookies, _ = browser.get(url + "/noop")
    assert status == 200 and cookies == [] and snapshot() == {}
    browser.get(url + "/set?a=1")
    before = snapshot()
    assert before
    status, cookies, _ = browser.get(url + "/noop")
    assert status == 200 and cookies == [] and snapshot() == before
    # a read-only request does not write either
    status, cookies, body = browser.get(url + "/get")
    assert json.loads(body) == {"a": "1"} and cookies == [] and snapshot() == before
