"""Sessions on a backend with atomic records (``atomic_records = True``): one merge per save, no lock, no re-read.

``RecordMemoryBackend`` is a small, complete implementation of the capability (a dict of field dicts under a lock),
the shape a redis backend gives with a hash.
"""
import collections
import threading
import time

import pytest

from beaker_core.backends import Backend, deadline
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.session import Session
from beaker_core.session import KEY_PREFIX
from beaker_core.testing.sessions import RefusedLock, SessionConformance, WSGIClient, session_app, set_cookies


class RecordMemoryBackend(Backend):
    name = "record-memory"
    atomic_records = True
    shared = False  # one process's dict

    def __init__(self, **options):
        self._records = {}
        self._lock = threading.Lock()
        self.calls = collections.Counter()

    def _live(self, key):
        item = self._records.get(key)
        if item is not None and item[1] is not None and item[1] <= time.time():
            del self._records[key]
            return None
        return item

    def get(self, key):
        raise AssertionError("sessions on a record backend never read whole values")

    def set(self, key, value, ttl=None):
        raise AssertionError("sessions on a record backend never write whole values")

    def get_record(self, key):
        self.calls["get_record"] += 1
        with self._lock:
            item = self._live(key)
            return None if item is None else dict(item[0])

    def merge_record(self, key, set_fields, delete_fields, ttl, create=True):
        self.calls["merge_record"] += 1
        with self._lock:
            item = self._live(key)
            if item is None:
                if not create:
                    return False
                item = ({}, None)
            fields = dict(item[0])
            for field in delete_fields:
                fields.pop(field, None)
            fields.update(set_fields)
            self._records[key] = (fields, deadline(ttl))
            return True

    def delete(self, key):
        self.calls["delete"] += 1
        with self._lock:
            return self._records.pop(key, None) is not None

    def touch(self, key, ttl):
        self.calls["touch"] += 1
        with self._lock:
            item = self._live(key)
            if item is None:
                return False
            self._records[key] = (item[0], deadline(ttl))
            return True


def make_registry():
    registry = Registry(load_entrypoints=False)
    registry.register("backend", "record-memory", RecordMemoryBackend)
    registry.register("lock", "refused", RefusedLock)
    return registry


class TestRecordBackendSessions(SessionConformance):
    backend = "record-memory"
    backend_class = RecordMemoryBackend
    session_options = {"lock_type": "refused"}

    @pytest.fixture
    def registry(self):
        registry = make_registry()
        yield registry
        registry.close()


@pytest.fixture
def app():
    return SessionMiddleware(session_app, {"session.type": "record-memory", "session.lock_type": "refused"},
                             registry=make_registry())


def test_a_modified_session_is_one_read_and_one_merge(app):
    client = WSGIClient(app)
    backend = app.session_manager.backend
    client.json("/incr")
    backend.calls.clear()
    assert client.json("/incr") == 2
    assert dict(backend.calls) == {"get_record": 1, "merge_record": 1}


def test_only_this_requests_fields_are_sent(app):
    client = WSGIClient(app)
    client.json("/set?a=1&b=2&c=3")
    session_id = client.json("/id")
    backend = app.session_manager.backend
    seen = []
    original = backend.merge_record

    def recording(key, set_fields, delete_fields, ttl, create=True):
        seen.append((sorted(set_fields), list(delete_fields), create))
        return original(key, set_fields, delete_fields, ttl, create)

    backend.merge_record = recording
    client.json("/set?b=20")
    client.json("/del?c")
    assert seen == [(["a", "k:b"], [], False), (["a"], ["k:c"], False)]
    assert set(backend.get_record(KEY_PREFIX + session_id)) == {"c", "a", "k:a", "k:b"}


def test_non_string_keys_round_trip():
    registry = make_registry()
    session = Session({}, type="record-memory", registry=registry)
    session[1] = "one"
    session[("a", 2)] = "pair"
    session["1"] = "string one"
    session.save()
    again = Session({"cookie": f"beaker.session.id={session.id}"}, type="record-memory", registry=registry)
    assert dict(again) == {1: "one", ("a", 2): "pair", "1": "string one"}


def test_a_corrupt_field_starts_a_fresh_session():
    registry = make_registry()
    session = Session({}, type="record-memory", registry=registry)
    session["a"] = 1
    session.save()
    session.namespace.merge_record(KEY_PREFIX + session.id, {"k:a": b"\xff{"}, [], None)
    again = Session({"cookie": f"beaker.session.id={session.id}"}, type="record-memory", registry=registry)
    assert again.is_new and again.was_invalidated


def test_an_ended_session_is_not_recreated_by_a_late_save():
    registry = make_registry()
    session = Session({}, type="record-memory", registry=registry)
    session["a"] = 1
    session.save()
    cookie = {"cookie": f"beaker.session.id={session.id}"}
    slow = Session(cookie, type="record-memory", registry=registry)
    Session(cookie, type="record-memory", registry=registry).delete()
    slow["b"] = 2
    slow.persist()
    assert session.namespace.get_record(KEY_PREFIX + session.id) is None


def test_untouched_and_read_only_requests(app):
    client = WSGIClient(app)
    backend = app.session_manager.backend
    client.json("/incr")
    backend.calls.clear()
    _, headers, _ = client.request("/noop")
    assert backend.calls == {} and set_cookies(headers) == []
    client.request("/get")
    assert dict(backend.calls) == {"get_record": 1}


class AtomicUpdateBackend(Backend):
    """Bytes in a dict; ``update`` runs the change under the backend's lock (the atomic update capability)."""

    name = "atomic-update"
    atomic_update = True
    shared = False

    def __init__(self, **options):
        self._data = {}
        self._lock = threading.Lock()
        self.calls = collections.Counter()

    def _live(self, key):
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= time.time():
            del self._data[key]
            return None
        return item

    def get(self, key):
        self.calls["get"] += 1
        item = self._live(key)
        return None if item is None else item[0]

    def set(self, key, value, ttl=None):
        self.calls["set"] += 1
        self._data[key] = (value, deadline(ttl))

    def delete(self, key):
        self.calls["delete"] += 1
        return self._data.pop(key, None) is not None

    def touch(self, key, ttl):
        self.calls["touch"] += 1
        item = self._live(key)
        if item is None:
            return False
        self._data[key] = (item[0], deadline(ttl))
        return True

    def update(self, key, change, ttl=None):
        self.calls["update"] += 1
        with self._lock:
            item = self._live(key)
            new = change(None if item is None else item[0])
            if new is None:
                return False
            self._data[key] = (new, deadline(ttl))
            return True


class TestAtomicUpdateSessions(SessionConformance):
    backend = "atomic-update"
    backend_class = AtomicUpdateBackend
    session_options = {"lock_type": "refused"}

    @pytest.fixture
    def registry(self):
        registry = make_registry()
        registry.register("backend", "atomic-update", AtomicUpdateBackend)
        yield registry
        registry.close()


def test_atomic_update_saves_with_one_read_and_one_update():
    registry = make_registry()
    registry.register("backend", "atomic-update", AtomicUpdateBackend)
    app = SessionMiddleware(session_app, {"session.type": "atomic-update", "session.lock_type": "refused"},
                            registry=registry)
    client = WSGIClient(app)
    client.json("/incr")
    backend = app.session_manager.backend
    backend.calls.clear()
    assert client.json("/incr") == 2
    assert dict(backend.calls) == {"get": 1, "update": 1}
