"""Sessions under hostile or unlucky conditions: several cookies of one name, records a key cannot read, memory
sessions behind a multi-process server."""
from __future__ import annotations

import warnings

import pytest

from beaker_core.middleware import SessionMiddleware
from beaker_core.session import MAX_COOKIE_CANDIDATES, Session

SECRET = "hardening-tests-secret-0123456789"


def counter_app(environ, start_response):
    session = environ["beaker.session"]
    if environ.get("PATH_INFO") == "/write":
        session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session.get("n")).encode()]


def call(app, cookie=None, path="/", **environ_extra):
    headers: list = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, **environ_extra}
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    body = b"".join(app(environ, lambda status, response_headers, exc_info=None: headers.extend(response_headers)))
    return body.decode(), [value for name, value in headers if name == "Set-Cookie"]


def first_cookie(set_cookies):
    return set_cookies[0].split(";")[0]


@pytest.fixture(params=["memory", "file", "signed", "cookie"])
def app(request, tmp_path):
    options = {
        "memory": {"session.type": "memory"},
        "file": {"session.type": "file", "session.data_dir": str(tmp_path)},
        "signed": {"session.type": "file", "session.data_dir": str(tmp_path), "session.secret": SECRET},
        "cookie": {"session.type": "cookie", "session.secret": SECRET},
    }[request.param]
    middleware = SessionMiddleware(counter_app, options)
    # a cookie that passes every check but names no stored session: a stale one, or one signed before a reset
    unknown = "A" * 32
    if request.param == "signed":
        unknown = middleware.session_manager.signer.sign(unknown)
    elif request.param == "cookie":
        unknown = "AQ" + "A" * 60  # a token of the right shape that does not decrypt
    middleware.unknown_cookie = f"beaker.session.id={unknown}"
    return middleware


def test_an_unknown_id_placed_first_does_not_hide_the_real_session(app):
    body, set_cookies = call(app, path="/write")
    real = first_cookie(set_cookies)
    planted = app.unknown_cookie
    body, set_cookies = call(app, f"{planted}; {real}")
    assert body == "1"
    assert set_cookies == []  # a read-only request changes no cookie
    body, _ = call(app, f"{planted}; {real}", path="/write")
    assert body == "2"


def test_a_read_only_request_never_deletes_a_cookie_it_did_not_load(app):
    body, set_cookies = call(app, app.unknown_cookie)
    assert body == "None"
    assert set_cookies == []


def test_a_deleted_session_clears_the_cookie_that_named_it(tmp_path):
    def logout_app(environ, start_response):
        environ["beaker.session"].delete()
        start_response("200 OK", [])
        return [b""]

    options = {"session.type": "file", "session.data_dir": str(tmp_path)}
    _, set_cookies = call(SessionMiddleware(counter_app, options), path="/write")
    _, set_cookies = call(SessionMiddleware(logout_app, options), first_cookie(set_cookies))
    assert len(set_cookies) == 1 and "Max-Age=0" in set_cookies[0]


def test_cookie_candidates_are_bounded(tmp_path):
    app = SessionMiddleware(counter_app, {"session.type": "file", "session.data_dir": str(tmp_path)})
    _, set_cookies = call(app, path="/write")
    real = first_cookie(set_cookies)
    unknown = "; ".join(f"beaker.session.id={chr(65 + index) * 32}" for index in range(MAX_COOKIE_CANDIDATES))
    body, _ = call(app, f"{unknown}; {real}")
    assert body == "None"  # the real one came after the bound: a fresh session, nothing adopted
    body, _ = call(app, f"{real}; {unknown}")
    assert body == "1"


def test_a_record_the_key_cannot_read_starts_a_fresh_session_and_is_kept(tmp_path):
    options = {"type": "file", "data_dir": str(tmp_path), "use_cookies": False}
    right = "the-encryption-key-in-use-0123456789"
    wrong = "a-key-from-a-rotation-mistake-012345"
    session = Session({}, encrypt_key=right, **options)
    session["user"] = "ada"
    session.save()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unreadable = Session({}, id=session.id, encrypt_key=wrong, **options)
    assert unreadable.is_new and "user" not in unreadable and unreadable.was_invalidated
    assert Session({}, id=session.id, encrypt_key=right, **options)["user"] == "ada"  # the record was left alone
    with pytest.raises(Exception, match="encrypt_key"):
        Session({}, id=session.id, encrypt_key=wrong, invalidate_corrupt=False, **options)


def test_memory_sessions_behind_several_processes_warn_once():
    app = SessionMiddleware(counter_app, {"session.type": "memory"})
    with pytest.warns(RuntimeWarning, match="wsgi.multiprocess.*session.type = file"):
        call(app, path="/write", **{"wsgi.multiprocess": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(app, path="/write", **{"wsgi.multiprocess": True})


@pytest.mark.parametrize("options", [
    {"session.type": "memory"},
    {"session.type": "cookie", "session.secret": SECRET},
])
def test_no_warning_for_one_process_or_a_shared_store(options, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(SessionMiddleware(counter_app, options), path="/write", **{"wsgi.multiprocess": False})
        call(SessionMiddleware(counter_app, {"session.type": "file", "session.data_dir": str(tmp_path)}),
             path="/write", **{"wsgi.multiprocess": True})
        call(SessionMiddleware(counter_app, {"session.type": "cookie", "session.secret": SECRET}),
             path="/write", **{"wsgi.multiprocess": True})


@pytest.mark.parametrize("byte", [0x80, 0xC3, 0xFF])
def test_a_non_ascii_byte_in_a_signature_gives_a_fresh_session(tmp_path, byte):
    app = SessionMiddleware(counter_app, {"session.type": "file", "session.data_dir": str(tmp_path),
                                          "session.secret": SECRET})
    _, set_cookies = call(app, path="/write")
    real = first_cookie(set_cookies)
    tampered = real[:-5] + chr(byte) + real[-4:]   # WSGI hands header bytes over as latin-1 characters
    body, set_cookies = call(app, tampered)
    assert body == "None" and set_cookies == []
    body, _ = call(app, f"{tampered}; {real}")
    assert body == "1"


def test_surrogates_in_a_cookie_given_to_a_session_directly(tmp_path):
    signer_options = {"type": "memory", "secret": SECRET}
    for header in ("beaker.session.id=\udc80" + "A" * 31 + "." + "B" * 43,
                   "beaker.session.id=" + "A" * 32 + "." + "\udc80" * 43):
        session = Session({"cookie": header}, **signer_options)
        assert session.is_new


def test_a_non_ascii_byte_in_a_signature_over_asgi(tmp_path):
    import asyncio

    from beaker_core.asgi import SessionMiddleware as AsgiSessionMiddleware

    async def asgi_counter(scope, receive, send):
        session = scope["session"]
        if scope["path"] == "/write":
            session["n"] = session.get("n", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(session.get("n")).encode()})

    app = AsgiSessionMiddleware(asgi_counter, {"session.type": "file", "session.data_dir": str(tmp_path),
                                               "session.secret": SECRET})

    def request(path, cookie=None):
        messages: list = []
        headers = [(b"cookie", cookie)] if cookie is not None else []
        scope = {"type": "http", "path": path, "method": "GET", "headers": headers}

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            messages.append(message)

        asyncio.run(app(scope, receive, send))
        set_cookies = [value for name, value in messages[0]["headers"] if name == b"set-cookie"]
        return messages[1]["body"], set_cookies

    _, set_cookies = request("/write")
    real = set_cookies[0].split(b";")[0]
    tampered = real[:-5] + b"\xff" + real[-4:]
    assert request("/", tampered) == (b"None", [])
    assert request("/", tampered + b"; " + real)[0] == b"1"
