"""WSGI sessions: beaker-core's SessionMiddleware side by side with Beaker 1.14.1's, called in-process.

Run through ``bench/run session``, or ``bench/.venv/bin/python bench/bench_session.py [--only TEXT] ...``.

Every request is a real WSGI call: a fresh environ dict, a ``start_response`` that keeps the headers, the body
joined and the iterable closed, and the session cookie of the last ``Set-Cookie`` sent back on the next request, as
a browser would. The client code is the same for every contender; so is the application: a counter that does
``session['counter'] = session.get('counter', 0) + 1`` then ``session.save()`` (Beaker 1.14.1 loses the change
without ``save()`` unless ``session.auto`` is set; beaker-core saves it either way and is also shown without the
call). Every check proves the counter goes 1, 2, 3 across requests before anything is timed.
"""
from __future__ import annotations

import shutil
import sys
from importlib.metadata import version

from beaker.middleware import SessionMiddleware as BeakerSessionMiddleware

from beaker_core.middleware import SessionMiddleware
from harness import SUBJECT, Contender, Scenario, Session, Target, data_roots, print_header

BEAKER = f"Beaker {version('Beaker')}"
BARE = "bare application"
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
VALIDATE_KEY = "bench-validate-0123456789abcdef0123456789"
BASE_ENVIRON = {
    "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "localhost",
    "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "localhost", "wsgi.url_scheme": "http",
    "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
}
HEADERS = [("Content-Type", "text/plain")]


def counter_with_save(environ, start_response):
    session = environ["beaker.session"]
    session["counter"] = count = session.get("counter", 0) + 1
    session.save()
    start_response("200 OK", list(HEADERS))
    return [str(count).encode()]


def counter_without_save(environ, start_response):
    session = environ["beaker.session"]
    session["counter"] = count = session.get("counter", 0) + 1
    start_response("200 OK", list(HEADERS))
    return [str(count).encode()]


def untouched(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [b"hello"]


class Client:
    """A browser with one cookie: calls the WSGI application and keeps the session cookie it is sent."""

    def __init__(self, app):
        self.app = app
        self.cookie = None
        self.set_cookies = 0

    def request(self) -> bytes:
        environ = dict(BASE_ENVIRON)
        if self.cookie is not None:
            environ["HTTP_COOKIE"] = self.cookie
        sent = []

        def start_response(status, headers, exc_info=None):
            sent.append(headers)
            return sent.append

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        for name, value in sent[0]:
            if name.lower() == "set-cookie":
                self.cookie = value.split(";", 1)[0]
                self.set_cookies += 1
        return body


def counting_check(make_app):
    """The check of a counter contender: a new client's counter goes 1, 2, 3."""
    def check():
        client = Client(make_app())
        bodies = [client.request() for _ in range(3)]
        if bodies != [b"1", b"2", b"3"]:
            raise AssertionError(f"the counter went {bodies!r}, not 1, 2, 3")
    return check


def counter_contender(label: str, what: str, make_app) -> Contender:
    client = Client(make_app())
    client.request()
    return Contender(label, what, "request()", {"request": client.request}, check=counting_check(make_app))


def scenarios(roots: list[tuple[str, str]]) -> list[Scenario]:
    out = []
    for kind in ("memory", "file", "cookie"):
        for where, root in (roots if kind == "file" else [("", "")]):
            out.append(counter_scenario(kind, where, root))
    out.append(untouched_scenario())
    return out


def counter_scenario(kind: str, where: str, root: str) -> Scenario:
    core_options = {
        "memory": {"session.type": "memory"},
        "file": {"session.type": "file", "session.data_dir": f"{root}/core-file"},
        "cookie": {"session.type": "cookie", "session.secret": SECRET},
    }
    # Beaker serializes its records with pickle unless told otherwise; json is beaker-core's default, so Beaker is
    # given json too (its memory sessions are serialized as well, beaker-core's memory sessions are not)
    beaker_options = {
        "memory": {"session.type": "memory", "session.data_serializer": "json"},
        "file": {"session.type": "file", "session.data_dir": f"{root}/beaker-file",
                 "session.lock_dir": f"{root}/beaker-file-locks", "session.data_serializer": "json"},
        "cookie": {"session.type": "cookie", "session.validate_key": VALIDATE_KEY, "session.encrypt_key": SECRET,
                   "session.data_serializer": "json"},
    }
    notes = {
        "memory": "Beaker serializes (json + base64) even in memory; beaker-core's memory backend keeps objects",
        "file": "one file per session on both sides; Beaker writes a new temporary file and renames it over the old "
                "one under a separate lock file, beaker-core rewrites the file in place under a flock on it",
        "cookie": "beaker-core: AES-GCM, JSON; Beaker: AES-CTR (cryptography) + HMAC-SHA1 signature, JSON, "
                  "a PBKDF2 (1 iteration) key derivation per cookie",
    }
    core, old = core_options[kind], beaker_options[kind]
    title = f"session counter, {kind}" + (f" ({where})" if where else "")
    contenders = [
        counter_contender(SUBJECT, "counter + save()", lambda: SessionMiddleware(counter_with_save, core)),
        counter_contender(BEAKER, "counter + save()", lambda: BeakerSessionMiddleware(counter_with_save, old)),
        counter_contender(f"{SUBJECT} (no save call)", "counter",
                          lambda: SessionMiddleware(counter_without_save, core)),
    ]
    if kind == "file":
        contenders.append(backend_step(SessionMiddleware(counter_with_save, core)))
    return Scenario(title, contenders, [Target("faster", BEAKER, 3)], note=notes[kind])


def backend_step(app: SessionMiddleware) -> Contender:
    """No target: the backend alone reading and writing a record of the same size (one ``get`` and one ``set``,
    the least a modified server-side session needs), to tell the backend's cost from the session layer's."""
    from beaker_core.session import KEY_PREFIX

    client = Client(app)
    client.request()
    backend = app.session_manager.backend
    record = backend.get(KEY_PREFIX + client.cookie.split("=", 1)[1])
    if record is None:
        raise SystemExit("the session record was not found under the key its cookie names")
    backend.set("bench-record", record)
    return Contender("step: file backend", "get + set of the record",
                     "get('bench-record'); set('bench-record', RECORD)",
                     {"get": backend.get, "set": backend.set, "RECORD": record})


def untouched_scenario() -> Scenario:
    def untouched_contender(label, app):
        client = Client(app)

        def check():
            for _ in range(2):
                if client.request() != b"hello":
                    raise AssertionError("the application did not answer")
            if client.set_cookies:
                raise AssertionError(f"{label}: an untouched session sent Set-Cookie")
        return Contender(label, "untouched session", "request()", {"request": client.request}, check=check)

    return Scenario("request that never touches its session (memory)", [
        untouched_contender(SUBJECT, SessionMiddleware(untouched, {"session.type": "memory"})),
        Contender(BARE, "no middleware", "request()", {"request": Client(untouched).request}),
        untouched_contender(BEAKER, BeakerSessionMiddleware(untouched, {"session.type": "memory"})),
    ], [Target("within_us", BARE, 2)], note="the same client code and application, with and without middleware")


def main() -> int:
    session = Session("bench_session", __doc__.splitlines()[0])
    print_header("session middleware benchmark", ("beaker-core", "Beaker", "cryptography"))
    roots = data_roots("beaker-bench-session-")
    try:
        for scenario in scenarios(roots):
            session.run(scenario)
    finally:
        for _, root in roots:
            shutil.rmtree(root, ignore_errors=True)
    return session.finish()


if __name__ == "__main__":
    sys.exit(main())
