"""Hypothesis drives hostile ``Cookie`` headers through the WSGI and the ASGI session middleware, on every built-in
configuration: memory, file, dbm, file with signed ids, and cookie sessions (the redis variant is
``plugins/beaker_redis/tests/test_redis_fuzz_cookies.py``, which runs :func:`fuzz_cookie_headers` from here).

A header is a list of cookies, most of them of the session's name, whose values are latin-1 text as WSGI delivers
it (bytes 0x80-0xFF included), quoted values, path-like ids (``../../etc/passwd``), ids of valid shape,
signed-looking ``id.signature`` values, base64url tokens (some starting with the cookie-session token version),
very long values, and cookies this test obtained from real responses, exact or altered by one character. For each
header, through both middlewares:

* no exception escapes: the application answers 200;
* the session is new unless the header carried, exactly, a cookie of a real earlier response, and then it is that
  cookie's session;
* no id is adopted: a new session's id is none of the ids the client sent, and the cookie set is its own;
* nothing is written outside the data directory (the data directory sits deep inside a directory that must hold
  nothing else, and the process runs from inside it), and every key the store holds names a session the server
  issued.

Each configuration runs ``BEAKER_FUZZ_EXAMPLES`` examples (default 200) with a fixed seed, so CI sees the same
headers every time; set ``BEAKER_FUZZ_SEED=random`` to explore new ones locally.
"""
from __future__ import annotations

import asyncio
import base64
import os
import string
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beaker_core.asgi import SessionMiddleware as ASGISessionMiddleware
from beaker_core.middleware import SessionMiddleware as WSGISessionMiddleware

SECRET = "fuzz-cookies-secret-0123456789abcdefXYZ"
COOKIE = "beaker.session.id"
EXAMPLES = int(os.environ.get("BEAKER_FUZZ_EXAMPLES", "200"))
DERANDOMIZE = os.environ.get("BEAKER_FUZZ_SEED", "fixed") != "random"
REAL_SESSIONS = 3  # sessions made by real requests before fuzzing, per middleware
B64URL = string.ascii_letters + string.digits + "-_"

# -- the headers ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Real:
    """A cookie value of a real earlier response (``index`` into the pool), unchanged or altered by ``mutation``."""
    index: int
    mutation: str


MUTATIONS = ("exact", "exact", "exact", "exact", "quoted", "spaces", "truncated", "extended", "doubled", "last char",
             "first char", "id only", "other signature")


def mutate(value: str, mutation: str, other: str) -> str:
    """``value`` (a real cookie value) changed as ``mutation`` says; ``other`` is another real value."""
    if mutation == "exact":
        return value
    if mutation == "quoted":
        return f'"{value}"'
    if mutation == "spaces":
        return f"  {value} "
    if mutation == "truncated":
        return value[:-1]
    if mutation == "extended":
        return value + "A"
    if mutation == "doubled":
        return value + value
    if mutation == "last char":
        return value[:-1] + ("B" if value[-1] == "A" else "A")
    if mutation == "first char":
        return ("B" if value[0] == "A" else "A") + value[1:]
    if mutation == "id only":
        return value.rpartition(".")[0] or value[:32]
    if mutation == "other signature":  # this id with another real cookie's signature
        return value.rpartition(".")[0] + "." + other.rpartition(".")[2]
    raise AssertionError(mutation)


latin1_text = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=40)
any_text = st.text(max_size=20) | st.sampled_from(["\ud800", "\udcff", "x\udc80y", "\u2028", "\u3000", "\x85"])
b64url = st.sampled_from(B64URL)
id_shape = st.text(b64url, min_size=22, max_size=128) | st.text(b64url, min_size=32, max_size=32)
near_id_shape = st.text(b64url, min_size=1, max_size=21) | st.text(b64url, min_size=129, max_size=140)
signed_looking = st.builds(lambda session_id, signature: f"{session_id}.{signature}", id_shape,
                           st.text(b64url, min_size=43, max_size=43) | latin1_text.filter(bool).map(
                               lambda text: (text * 43)[:43]))
path_like = st.sampled_from([
    "..", ".", "/", "../../etc/passwd", "/etc/passwd", "..%2f..%2fetc%2fpasswd", "....//....//etc", "~root",
    "..\\..\\windows", "\x00", "a/../../b", "./././", "data/../../x", "\\\\server\\share",
]) | st.builds(lambda depth, tail: "../" * depth + tail, st.integers(1, 8),
               st.sampled_from(["", "etc", "etc/passwd", "tmp/planted", "x" * 22, "jail", "data"]))
base64_token = st.binary(max_size=200).map(lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode())
version_token = st.binary(min_size=28, max_size=200).map(
    lambda raw: base64.urlsafe_b64encode(b"\x01" + raw).rstrip(b"=").decode())
long_value = st.builds(lambda piece, count: piece * count, st.sampled_from(["A", "a.", "%", "\xff", "../", "=;"]),
                       st.integers(129, 9000))
real_value = st.builds(Real, st.integers(0, REAL_SESSIONS - 1), st.sampled_from(MUTATIONS))
cookie_value = st.one_of(latin1_text, id_shape, near_id_shape, signed_looking, path_like, base64_token, version_token,
                         long_value, real_value, st.just(""), latin1_text.map(lambda text: f'"{text}"'))
cookie_name = st.sampled_from([COOKIE] * 6 + [f" {COOKIE}", f"{COOKIE}\t", COOKIE.upper(), COOKIE + "x", "", "other",
                                              "beaker.session", "$Version"]) | latin1_text
part = st.one_of(
    st.tuples(cookie_name, cookie_value),
    latin1_text,  # a part with no "=", or with stray ";" and "=" of its own
    any_text,     # not latin-1: a WSGI server that decoded otherwise (ASGI gets its UTF-8 bytes)
)
separator = st.sampled_from(["; ", ";", " ; ", ";;", "; ;", ",", "\t;"])
# parts with their separators; where the ASGI request splits its header in two; a real cookie of the session's name
# to put at some position (half of the headers), so that a loaded session is tried among the hostile ones
header_plan = st.tuples(st.lists(st.tuples(part, separator), max_size=8), st.integers(0, 8),
                        st.none() | st.tuples(st.integers(0, 8), real_value, separator))


@dataclass
class Pool:
    """The real cookies of one middleware: ``(cookie value, session id)``."""
    cookies: list[tuple[str, str]]

    def value(self, item: Any) -> str:
        if isinstance(item, Real):
            value = self.cookies[item.index][0]
            other = self.cookies[(item.index + 1) % len(self.cookies)][0]
            return mutate(value, item.mutation, other)
        return item


def header_parts(plan: tuple, pool: Pool) -> tuple[list[str], int]:
    """The cookie header's parts, with their separators, and where the ASGI header is split into two."""
    parts, split, real = plan
    if real is not None:
        position, value, sep = real
        parts = parts[:position] + [((COOKIE, value), sep)] + parts[position:]
    texts = []
    for item, sep in parts:
        text = f"{item[0]}={pool.value(item[1])}" if isinstance(item, tuple) else item
        texts.append(text + sep)
    return texts, split


def session_cookie_values(header: str | None) -> list[str]:
    """The values of the session's cookies in ``header``, read as RFC 6265 (with the usual leniency for spaces and
    quotes): the reference against which a loaded session is judged."""
    values = []
    for item in (header or "").split(";"):
        name, eq, value = item.partition("=")
        if eq and name.strip() == COOKIE:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
    return values


# -- the two middlewares ----------------------------------------------------------------------------------------------


def _record(seen: list, session: Any) -> None:
    seen.append((session.is_new, session.id))
    session["hits"] = session.get("hits", 0) + 1


class Driver:
    """One configuration behind both middlewares, each with its own pool of real cookies."""

    def __init__(self, options: dict):
        self.kind = "cookie" if options["session.type"] == "cookie" else "signed" if "session.secret" in options \
            else "plain"
        self.seen: list[tuple[bool, str]] = []

        def wsgi_app(environ, start_response):
            _record(self.seen, environ["beaker.session"])
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        async def asgi_app(scope, receive, send):
            _record(self.seen, scope["session"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        self.wsgi = WSGISessionMiddleware(wsgi_app, options)
        self.asgi = ASGISessionMiddleware(asgi_app, options)
        self.loop = asyncio.new_event_loop()
        self.issued: set[str] = set()  # every id a response gave a client
        self.pools = {name: Pool([self._real(name) for _ in range(REAL_SESSIONS)]) for name in ("wsgi", "asgi")}

    def close(self) -> None:
        self.loop.close()
        for middleware in (self.wsgi, self.asgi):
            if middleware.session_manager.backend is not None:  # cookie sessions have none
                middleware.session_manager.backend.close()

    def _real(self, interface: str) -> tuple[str, str]:
        status, set_cookies, (is_new, session_id) = self.call(interface, [], None)
        assert status == 200 and is_new and len(set_cookies) == 1, (status, set_cookies)
        return set_cookies[0], session_id

    def call(self, interface: str, headers: list[bytes], text: str | None) -> tuple[int, list[str], tuple[bool, str]]:
        """``(status, values of the session's Set-Cookie headers, (is_new, id) the application saw)``.

        ``headers`` are the request's cookie headers; a WSGI call takes ``text`` as ``HTTP_COOKIE`` instead when
        it is given.
        """
        before = len(self.seen)
        if interface == "wsgi":
            status, response_headers = self._wsgi(wsgi_header(headers) if text is None else text)
        else:
            status, response_headers = self.loop.run_until_complete(self._asgi(headers))
        assert len(self.seen) == before + 1, "the application did not run once"
        set_cookies = [value.split(";", 1)[0][len(COOKIE) + 1:] for name, value in response_headers
                       if name.lower() == "set-cookie" and value.startswith(COOKIE + "=")]
        if set_cookies:
            self.issued.add(self.seen[-1][1])
        return status, set_cookies, self.seen[-1]

    def _wsgi(self, header: str) -> tuple[int, list[tuple[str, str]]]:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
                   "wsgi.url_scheme": "http", "wsgi.multithread": True, "wsgi.multiprocess": False}
        if header:
            environ["HTTP_COOKIE"] = header
        captured = {}

        def start_response(status, response_headers, exc_info=None):
            captured["status"], captured["headers"] = status, response_headers

        body = b"".join(self.wsgi(environ, start_response))
        assert body == b"ok"
        return int(captured["status"].split()[0]), captured["headers"]

    async def _asgi(self, headers: list[bytes]) -> tuple[int, list[tuple[str, str]]]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1")] + [(b"cookie", header) for header in headers],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        messages = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            messages.append(message)

        await self.asgi(scope, receive, send)
        start = messages[0]
        assert start["type"] == "http.response.start"
        return start["status"], [(name.decode("latin-1"), value.decode("latin-1"))
                                 for name, value in start.get("headers", ())]


def wsgi_header(headers: list[bytes]) -> str:
    """The ``HTTP_COOKIE`` a WSGI server builds from the request's cookie headers (PEP 3333: latin-1), which is
    also the header the ASGI middleware reads."""
    return "; ".join(header.decode("latin-1") for header in headers)


def encode_headers(texts: list[str], split: int) -> list[bytes]:
    """The request's ``Cookie`` headers: latin-1 bytes (UTF-8 for text beyond it), in one header or split in two."""
    if not texts:
        return []
    encoded = [text.encode("latin-1") if max(map(ord, text), default=0) <= 0xFF
               else text.encode("utf-8", "surrogatepass") for text in texts]
    split = min(split, len(encoded))
    groups = [encoded[:split], encoded[split:]] if 0 < split < len(encoded) else [encoded]
    return [b"".join(group) for group in groups]


def check_response(driver: Driver, interface: str, headers: list[bytes], text: str | None) -> None:
    status, set_cookies, (is_new, session_id) = driver.call(interface, headers, text)
    assert status == 200
    sent = session_cookie_values(wsgi_header(headers) if text is None else text)
    sent_ids = set(sent) | {value.rpartition(".")[0] for value in sent if "." in value}
    real = dict(driver.pools[interface].cookies)
    if is_new:
        assert session_id not in sent_ids, f"adopted the id {session_id!r} that the client sent"
        assert len(set_cookies) == 1, f"a new session that was changed must set one cookie, not {set_cookies}"
        value = set_cookies[0]
        assert value not in sent_ids and value not in real, f"the response sets a cookie the client sent: {value!r}"
        if driver.kind == "plain":
            assert value == session_id
        elif driver.kind == "signed":
            assert value.rpartition(".")[0] == session_id
    else:
        carried = [real[value] for value in sent if value in real]
        assert session_id in carried, f"loaded {session_id!r} from a header that carried no real cookie of it"
        if driver.kind == "cookie":  # the changed session travels in a new token
            assert len(set_cookies) == 1 and set_cookies[0] not in sent, set_cookies
        else:
            assert set_cookies == [], f"a loaded session changes no cookie: {set_cookies}"


# -- running one configuration ----------------------------------------------------------------------------------------


def outside(jail: str, data_dir: str) -> set[str]:
    """The paths under ``jail`` that are not inside ``data_dir``, relative to ``jail``."""
    found = set()
    for directory, subdirectories, files in os.walk(jail):
        if directory == data_dir:
            subdirectories[:] = []
            continue
        for name in subdirectories + files:
            found.add(os.path.relpath(os.path.join(directory, name), jail))
    return found


def fuzz_cookie_headers(options: dict, *, jail: str | None = None, data_dir: str | None = None,
                        stored_ids: Callable[[], set[str]] | None = None) -> None:
    """Run the examples against ``options`` through both middlewares.

    ``jail``: a directory that must hold nothing but the data directory ``data_dir`` (and what is inside it), and
    the empty directory the process runs from, ``<jail>/cwd``. ``stored_ids``: returns the session ids the store
    holds, which must all have been issued by a response.
    """
    expected = outside(jail, data_dir) if jail is not None else None
    driver = Driver(options)
    try:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(plan=header_plan)
        def example(plan):
            for interface in ("wsgi", "asgi"):
                texts, split = header_parts(plan, driver.pools[interface])
                headers = encode_headers(texts, split)
                check_response(driver, interface, headers, None)
                if interface == "wsgi" and any(ord(char) > 0xFF for text in texts for char in text):
                    # a WSGI server that decoded the header otherwise than latin-1: the text as it is
                    check_response(driver, interface, headers, "".join(texts))
            if jail is not None:
                found = outside(jail, data_dir)
                assert found == expected, f"written outside the data directory: {sorted(found ^ expected)}"

        example()
        if stored_ids is not None:
            stored = stored_ids()
            assert stored, "no session was stored"
            assert stored <= driver.issued, f"stored sessions no response issued: {sorted(stored - driver.issued)}"
    finally:
        driver.close()


def backend_session_ids(middleware_options: dict) -> Callable[[], set[str]]:
    """The session ids a store holds, read through a backend of the same configuration."""
    def read() -> set[str]:
        backend = WSGISessionMiddleware(lambda environ, start_response: [], middleware_options).session_manager.backend
        try:
            keys = list(backend.keys())
        finally:
            backend.close()
        assert all(key.startswith("session:") for key in keys), keys
        return {key[len("session:"):] for key in keys}
    return read


CONFIGURATIONS = {
    "memory": lambda data_dir: {"session.type": "memory"},
    "file": lambda data_dir: {"session.type": "file", "session.data_dir": data_dir},
    "dbm": lambda data_dir: {"session.type": "dbm", "session.data_dir": data_dir},
    "signed file": lambda data_dir: {"session.type": "file", "session.data_dir": data_dir, "session.secret": SECRET},
    "cookie": lambda data_dir: {"session.type": "cookie", "session.secret": SECRET},
}


@pytest.mark.slow
@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_hostile_cookie_headers(configuration, tmp_path, monkeypatch):
    jail = tmp_path / "jail"
    data_dir = jail / "a" / "b" / "c" / "data"
    cwd = jail / "cwd"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)  # a relative path that escaped would land in the jail, where it is seen
    options = CONFIGURATIONS[configuration](str(data_dir))
    on_disk = "session.data_dir" in options
    if on_disk:
        data_dir.mkdir(parents=True, mode=0o700)
    fuzz_cookie_headers(options, jail=str(jail), data_dir=str(data_dir),
                        stored_ids=backend_session_ids(options) if on_disk else None)
    assert os.listdir(tmp_path) == ["jail"]
    assert os.listdir(cwd) == []
