"""A self-contained tour: ``python -m beaker_core.demo``.

A small WSGI application with file-backed sessions and a cached function, driven in this process by a client that
keeps cookies, as a browser would. No server, no network; everything lives in a temporary directory that is removed
at the end.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from typing import Any, Callable, TextIO

from .cache import CacheManager
from .middleware import SessionMiddleware
from .registry import Registry
from .util import parse_cache_config_options


class Browser:
    """Calls the application in-process (a WSGI environ from wsgiref) and keeps its cookies."""

    def __init__(self, app: Callable):
        self.app = app
        self.cookies: dict[str, str] = {}

    def get(self, path: str) -> tuple[str, list[str], str]:
        from wsgiref.util import setup_testing_defaults
        environ: dict[str, Any] = {"PATH_INFO": path}
        setup_testing_defaults(environ)
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            response["status"], response["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, start_response)).decode("utf-8")
        set_cookies = [value for name, value in response["headers"] if name.lower() == "set-cookie"]
        for header in set_cookies:
            name, _, value = header.split(";", 1)[0].partition("=")
            if "Max-Age=0" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response["status"], set_cookies, body


def build_app(data_dir: str, registry: Registry | None = None) -> tuple[Callable, dict]:
    """The demo application and a dict counting how often the cached function really ran."""
    stats = {"computed": 0}
    cache = CacheManager(**parse_cache_config_options({"cache.type": "memory", "cache.expire": "60"}))

    @cache.cache("greeting", expire=60)
    def greeting(name: str) -> str:
        stats["computed"] += 1
        return f"Hello, {name}!"

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/health":
            body = "ok"                                   # never touches the session
        elif path == "/logout":
            environ["beaker.session"].invalidate()
            body = "logged out"
        else:
            session = environ["beaker.session"]
            session["visits"] = session.get("visits", 0) + 1   # saved without an explicit save()
            body = f"{greeting('visitor')} This is visit {session['visits']}."
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode("utf-8")]

    config = {"session.type": "file", "session.data_dir": data_dir, "session.timeout": "1800"}
    return SessionMiddleware(app, config, registry=registry), stats


def run(out: TextIO = sys.stdout) -> int:
    data_dir = tempfile.mkdtemp(prefix="beaker-core-demo-")
    try:
        app, stats = build_app(data_dir, Registry())
        browser = Browser(app)

        def visit(path: str) -> None:
            status, cookies, body = browser.get(path)
            if not cookies:
                note = "no Set-Cookie"
            elif "Max-Age=0" in cookies[0]:
                note = "clears the cookie"
            else:
                note = f"sets cookie {cookies[0].split(';')[0][:36]}..."
            print(f"GET {path:8} -> {status}: {body}  [{note}]", file=out)

        print(f"sessions are stored as files under {data_dir}", file=out)
        for path in ("/", "/", "/health", "/", "/logout", "/"):
            visit(path)
        print(f"the cached greeting was computed {stats['computed']} time(s) for 5 pages that used it", file=out)
        if stats["computed"] != 1:
            print("unexpected: the cache did not hold the greeting", file=out)
            return 1
        print("done", file=out)
        return 0
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: Any = None) -> int:
    return run()


if __name__ == "__main__":
    sys.exit(main())
