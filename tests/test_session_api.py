"""Beaker's session API, and what each request costs the backend.

The backends here are the real memory and file backends, subclassed only to count the calls the session makes.
"""
import collections
import time

import pytest

from beaker_core.backends.file import FileBackend
from beaker_core.backends.memory import MemoryBackend
from beaker_core.exceptions import ConfigurationError, SerializationError
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.session import KEY_PREFIX, Session, SessionManager, SessionObject, new_session_id, valid_session_id
from beaker_core.testing.sessions import RefusedLock, WSGIClient, session_app, set_cookies
from beaker_core.testing.concurrency import run_in_threads


class Counting:
    """Mixin counting backend calls by method name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = collections.Counter()

    def get(self, key):
        self.calls["get"] += 1
        return super().get(key)

    def set(self, key, value, ttl=None):
        self.calls["set"] += 1
        return super().set(key, value, ttl)

    def delete(self, key):
        self.calls["delete"] += 1
        return super().delete(key)

    def touch(self, key, ttl):
        self.calls["touch"] += 1
        return super().touch(key, ttl)

    def update(self, key, change, ttl=None):
        self.calls["update"] += 1
        return super().update(key, change, ttl)


class CountingFile(Counting, FileBackend):
    pass


class CountingMemory(Counting, MemoryBackend):
    pass


@pytest.fixture
def registry():
    registry = Registry(load_entrypoints=False)
    registry.register("backend", "counting-file", CountingFile)
    registry.register("backend", "counting-memory", CountingMemory)
    registry.register("lock", "refused", RefusedLock)
    yield registry
    registry.close()


@pytest.fixture(params=["counting-file", "counting-memory"])
def app(request, registry, tmp_path):
    config = {"session.type": request.param}
    if request.param == "counting-file":
        config["session.data_dir"] = str(tmp_path / "data")
    return SessionMiddleware(session_app, config, registry=registry)


def calls_of(app, client, path):
    backend = app.session_manager.backend
    backend.calls.clear()
    status, headers, body = client.request(path)
    return dict(backend.calls), set_cookies(headers)


# -- per-request cost ----------------------------------------------------------------------------------------------

def test_untouched_request_makes_no_backend_call(app):
    client = WSGIClient(app)
    assert calls_of(app, client, "/noop") == ({}, [])
    client.json("/incr")
    assert calls_of(app, client, "/noop") == ({}, [])


def test_new_session_is_one_write_and_no_read(app):
    calls, cookies = calls_of(app, WSGIClient(app), "/incr")
    assert calls == {"set": 1} and len(cookies) == 1


def test_read_only_request_is_one_read(app):
    client = WSGIClient(app)
    client.json("/incr")
    assert calls_of(app, client, "/get") == ({"get": 1}, [])


def test_modified_session_is_a_read_and_a_locked_read_modify_write(app):
    client = WSGIClient(app)
    client.json("/incr")
    calls, cookies = calls_of(app, client, "/incr")
    # the load, then under the session's lock: the re-read and the write (the file backend: one atomic update)
    expected = {"get": 1, "update": 1} if app.session_manager.atomic_update else {"get": 2, "set": 1}
    assert calls == expected and cookies == []


def test_idle_timeout_refresh_uses_touch_not_a_rewrite(registry, tmp_path, fake_clock):
    app = SessionMiddleware(session_app, {"session.type": "counting-file", "session.data_dir": str(tmp_path),
                                          "session.timeout": 2}, registry=registry)
    client = WSGIClient(app)
    client.json("/incr")
    fake_clock.advance(0.25)  # past the refresh interval (a tenth of the timeout)
    assert calls_of(app, client, "/get") == ({"get": 1, "touch": 1}, [])
    # refreshed just now: the next read-only request only reads
    assert calls_of(app, client, "/get") == ({"get": 1}, [])


def test_refresh_keeps_a_read_only_session_alive_past_its_timeout(registry, tmp_path, fake_clock):
    app = SessionMiddleware(session_app, {"session.type": "file", "session.data_dir": str(tmp_path),
                                          "session.timeout": 1}, registry=registry)
    client = WSGIClient(app)
    client.json("/set?user=ada")
    for _ in range(6):
        fake_clock.advance(0.3)
        assert client.json("/get") == {"user": "ada"}
    fake_clock.advance(1.3)
    assert client.json("/get") == {}


def test_save_accessed_time_false_does_not_refresh(registry, tmp_path, fake_clock):
    app = SessionMiddleware(session_app, {"session.type": "counting-file", "session.data_dir": str(tmp_path),
                                          "session.timeout": 2, "session.save_accessed_time": "false"},
                            registry=registry)
    client = WSGIClient(app)
    client.json("/incr")
    fake_clock.advance(0.25)
    assert calls_of(app, client, "/get") == ({"get": 1}, [])


def test_new_session_and_regenerated_id_need_no_lock(registry, tmp_path):
    app = SessionMiddleware(session_app, {"session.type": "dbm", "session.data_dir": str(tmp_path),
                                          "session.lock_type": "refused"}, registry=registry)
    client = WSGIClient(app)
    client.json("/set?a=1")
    client.json("/regenerate")
    with pytest.raises(AssertionError, match="should not need a lock"):
        client.json("/set?b=2")


def test_absolute_timeout_ends_an_active_session(registry, tmp_path, fake_clock):
    app = SessionMiddleware(session_app, {"session.type": "file", "session.data_dir": str(tmp_path),
                                          "session.absolute_timeout": 1.0}, registry=registry)
    client = WSGIClient(app)
    assert client.json("/incr") == 1
    fake_clock.advance(0.6)
    assert client.json("/incr") == 2
    fake_clock.advance(0.6)
    assert client.json("/incr") == 1


# -- isolation -----------------------------------------------------------------------------------------------------

def test_memory_sessions_do_not_share_mutable_values_between_requests(registry):
    config = {"session.type": "counting-memory"}
    app = SessionMiddleware(session_app, config, registry=registry)
    client = WSGIClient(app)
    client.json("/append?item=a&mark=1")
    cookie = f"beaker.session.id={client.cookies['beaker.session.id']}"
    first = Session({"cookie": cookie}, type="counting-memory", registry=registry)
    second = Session({"cookie": cookie}, type="counting-memory", registry=registry)
    first["items"].append("uncommitted")
    assert second["items"] == ["a"]
    assert client.json("/get")["items"] == ["a"]


def test_corrupt_record_starts_a_fresh_session_or_raises_when_asked(registry, tmp_path):
    config = {"type": "file", "data_dir": str(tmp_path), "registry": registry}
    session = Session({}, **config)
    session["a"] = 1
    session.save()
    session.namespace.set(KEY_PREFIX + session.id, b"\x80 not json")
    fresh = Session({"cookie": f"beaker.session.id={session.id}"}, **config)
    assert fresh.is_new and fresh.id != session.id and fresh.was_invalidated and dict(fresh) == {}
    session.namespace.set(KEY_PREFIX + session.id, b"[1, 2]")
    with pytest.raises(SerializationError):
        Session({"cookie": f"beaker.session.id={session.id}"}, invalidate_corrupt=False, **config)


def test_encrypt_key_encrypts_server_side_records(registry, tmp_path):
    config = {"type": "file", "data_dir": str(tmp_path), "registry": registry,
              "encrypt_key": "server-side-key-0123456789"}
    session = Session({}, **config)
    session["card"] = "4111-1111-1111-1111"
    session.save()
    raw = session.namespace.get(KEY_PREFIX + session.id)
    assert b"4111" not in raw
    again = Session({"cookie": f"beaker.session.id={session.id}"}, **config)
    assert again["card"] == "4111-1111-1111-1111"
    # another key cannot read it: a fresh session, not an error
    other = Session({"cookie": f"beaker.session.id={session.id}"},
                    **{**config, "encrypt_key": "another-server-key-0123456"})
    assert other.is_new


# -- Beaker's API --------------------------------------------------------------------------------------------------

def test_ids_are_long_random_and_validated():
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and valid_session_id(i) for i in ids)
    assert valid_session_id("0123456789abcdef0123456789abcdef")  # Beaker's uuid4 hex ids stay readable
    for bad in ("", "..", "../../x", "a" * 21, "a" * 129, "a" * 30 + "\n", None, 5, "a" * 25 + "/"):
        assert not valid_session_id(bad)
    with pytest.raises(ConfigurationError, match="session id"):
        Session({}, id="../x", type="memory")


def test_direct_session_follows_beakers_request_protocol(registry):
    request = {}
    session = Session(request, type="memory", registry=registry)
    assert session.is_new and session.last_accessed is None and session.created <= time.time()
    session["user"] = "ada"
    session.save()
    assert request["set_cookie"] is True and request["cookie_out"].startswith(f"beaker.session.id={session.id};")
    again = Session({"cookie": f"beaker.session.id={session.id}"}, type="memory", registry=registry)
    assert not again.is_new and again["user"] == "ada" and again.created == session.created
    assert again.last_accessed is not None


def test_get_by_id_and_get_session(registry):
    app = SessionMiddleware(session_app, {"session.type": "memory"}, registry=registry)
    client = WSGIClient(app)
    client.json("/set?user=ada")
    session_id = client.json("/id")
    environ = {"PATH_INFO": "/noop"}
    app(environ, lambda *args: None)
    found = environ["beaker.session"].get_by_id(session_id)
    assert found["user"] == "ada"
    assert environ["beaker.session"].get_by_id(new_session_id()) is None
    assert environ["beaker.session"].get_by_id("../../etc/passwd") is None
    detached = environ["beaker.get_session"]()
    assert isinstance(detached, Session) and detached.is_new and not detached.use_cookies


def test_session_object_is_lazy_and_reports_use(registry):
    app = SessionMiddleware(session_app, {"session.type": "memory"}, registry=registry)
    environ = {"PATH_INFO": "/noop"}
    app(environ, lambda *args: None)
    lazy = environ["beaker.session"]
    assert isinstance(lazy, SessionObject) and not lazy.accessed() and "not loaded" in repr(lazy)
    assert not lazy.dirty() and lazy.cookie_header() is None
    lazy["a"] = 1
    assert lazy.accessed() and lazy.dirty() and lazy.has_key("a") and "a" in lazy and len(lazy) == 1
    assert list(lazy) == ["a"] and lazy == {"a": 1}
    lazy.persist()
    assert lazy.cookie_header().startswith("beaker.session.id=")
    del lazy["a"]
    assert "a" not in lazy


def test_revert_discards_this_requests_changes(registry):
    session = Session({}, type="memory", registry=registry)
    session["a"] = 1
    session.save()
    again = Session({"cookie": f"beaker.session.id={session.id}"}, type="memory", registry=registry)
    again["a"] = 2
    again["b"] = 3
    again.revert()
    again.persist()
    assert dict(Session({"cookie": f"beaker.session.id={session.id}"}, type="memory", registry=registry)) == \
        {"a": 1}


def test_dict_methods_are_tracked(registry):
    session = Session({}, type="memory", registry=registry)
    session.update({"a": 1, "b": 2}, c=3)
    session.setdefault("d", 4)
    session |= {"e": 5}
    session.save()
    cookie = {"cookie": f"beaker.session.id={session.id}"}
    again = Session(cookie, type="memory", registry=registry)
    assert again.pop("a") == 1 and again.pop("missing", None) is None
    key, _ = again.popitem()
    del again["b"]
    again.persist()
    left = Session(cookie, type="memory", registry=registry)
    assert set(left) == {"c", "d", "e"} - {key}
    left.clear()
    left.persist()
    assert dict(Session(cookie, type="memory", registry=registry)) == {}


def test_lock_and_unlock_around_a_save(registry, tmp_path):
    session = Session({}, type="file", data_dir=str(tmp_path), registry=registry)
    session["a"] = 1
    session.save()
    again = Session({"cookie": f"beaker.session.id={session.id}"}, type="file", data_dir=str(tmp_path),
                    registry=registry)
    again.lock()
    try:
        again["b"] = 2
        again.save()  # uses the held lock instead of waiting for itself
    finally:
        again.unlock()
    assert dict(Session({"cookie": f"beaker.session.id={session.id}"}, type="file", data_dir=str(tmp_path),
                        registry=registry)) == {"a": 1, "b": 2}


def test_remember_me_sets_a_persistent_cookie(registry):
    def app(environ, start_response):
        session = environ["beaker.session"]
        session["user"] = "ada"
        session.cookie_expires = 3600
        start_response("200 OK", [])
        return [b""]
    client = WSGIClient(SessionMiddleware(app, {"session.type": "memory"}, registry=registry))
    _, headers, _ = client.request("/")
    assert "Max-Age=3600" in set_cookies(headers)[0]


def test_deleted_session_used_again_gets_a_new_id(registry):
    def app(environ, start_response):
        session = environ["beaker.session"]
        old = session.id
        session.delete()
        session["fresh"] = True
        start_response("200 OK", [])
        return [old.encode(), b" ", session.id.encode()]
    middleware = SessionMiddleware(app, {"session.type": "memory"}, registry=registry)
    client = WSGIClient(middleware)
    status, headers, body = client.request("/")
    old, new = body.decode().split()
    assert old != new and set_cookies(headers)[0].startswith(f"beaker.session.id={new};")


def test_session_was_ended_by_another_request_is_not_resurrected(registry, tmp_path):
    config = {"type": "file", "data_dir": str(tmp_path), "registry": registry}
    session = Session({}, **config)
    session["user"] = "ada"
    session.save()
    cookie = {"cookie": f"beaker.session.id={session.id}"}
    slow = Session(cookie, **config)
    Session(cookie, **config).invalidate()   # a logout, meanwhile
    slow["last_page"] = "/x"
    slow.persist()
    assert session.namespace.get(KEY_PREFIX + session.id) is None


def test_concurrent_threads_on_a_memory_session_keep_every_key(registry):
    session = Session({}, type="memory", registry=registry)
    session["start"] = 0
    session.save()
    cookie = {"cookie": f"beaker.session.id={session.id}"}
    sessions = [Session(cookie, type="memory", registry=registry) for _ in range(16)]  # all loaded before any save

    def work(index):
        sessions[index][f"k{index}"] = index
        sessions[index].persist()

    run_in_threads(work, 16)
    assert dict(Session(cookie, type="memory", registry=registry)) == {"start": 0,
                                                                       **{f"k{i}": i for i in range(16)}}


def test_explicit_save_is_not_followed_by_a_refresh(registry, tmp_path, fake_clock):
    def app(environ, start_response):
        session = environ["beaker.session"]
        session["n"] = session.get("n", 0) + 1
        session.save()
        start_response("200 OK", [])
        return [b""]

    middleware = SessionMiddleware(app, {"session.type": "counting-file", "session.data_dir": str(tmp_path),
                                         "session.timeout": 1}, registry=registry)
    client = WSGIClient(middleware)
    client.request("/")
    fake_clock.advance(0.15)
    backend = middleware.session_manager.backend
    backend.calls.clear()
    client.request("/")
    assert dict(backend.calls) == {"get": 1, "update": 1}


def test_what_a_middleware_asks_a_session_at_the_end_of_a_request():
    manager = SessionManager({"type": "memory"}, registry=Registry(load_entrypoints=False))
    untouched = SessionObject({}, manager)
    assert untouched.loaded is None and untouched.cookie_header() is None and not untouched.dirty()
    assert not untouched.accessed()

    lazy = SessionObject({}, manager)
    lazy["a"] = 1
    session = lazy.loaded
    assert isinstance(session, Session) and session.dirty() and session.needs_persist()
    session.persist()
    cookie = session.cookie_header()
    assert cookie is not None and cookie == lazy.cookie_header() and cookie.startswith(f"{manager.key}={session.id}")
    assert not session.dirty() and not lazy.dirty()

    # the next request loads it: nothing to save until it is changed or marked as read
    loaded = Session({"cookie": f"{manager.key}={session.id}"}, manager=manager)
    assert not loaded.is_new and not loaded.dirty() and not loaded.needs_persist()
    loaded.persist()
    assert loaded.cookie_header() is None
    loaded.mark_accessed()
    assert loaded.needs_persist() and not loaded.dirty()
