"""The injectable wall clock: ``FakeClock``, ``fake_clock()``, the ``fake_clock`` fixture, the backends, caches and
sessions that follow it, and the conformance suite's ``wait_past`` that uses it instead of sleeping."""
import time

import pytest

from beaker_core import clock
from beaker_core.backends import Backend
from beaker_core.cache import Cache
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.backend import ConformanceBase
from beaker_core.testing.clock import FakeClock, fake_clock, is_fake
from beaker_core.testing.sessions import WSGIClient, session_app


def test_a_fake_clock_stands_still_until_advanced():
    fake = FakeClock(1000.0)
    assert fake() == fake() == 1000.0
    assert fake.advance(2.5) == 1002.5
    assert fake() == 1002.5
    assert fake.advance(0) == 1002.5
    assert abs(FakeClock()() - time.time()) < 5  # starts at the real time by default


def test_a_fake_clock_refuses_to_go_back():
    fake = FakeClock(1000.0)
    with pytest.raises(ValueError, match="forward"):
        fake.advance(-1)
    assert fake() == 1000.0


def test_fake_clock_replaces_the_clock_and_restores_it():
    real = clock.now
    assert not is_fake()
    with fake_clock(50.0) as outer:
        assert is_fake() and clock.now is outer and clock.now() == 50.0
        with fake_clock(10.0) as inner:
            assert clock.now is inner and clock.now() == 10.0
            inner.advance(5)
            assert clock.now() == 15.0
        assert clock.now is outer and clock.now() == 50.0  # the nested block restored the clock it found
        outer.advance(1)
        assert clock.now() == 51.0
    assert clock.now is real and not is_fake()


def test_fake_clock_is_restored_when_the_block_raises():
    real = clock.now
    with pytest.raises(ZeroDivisionError):
        with fake_clock():
            1 / 0
    assert clock.now is real


def test_the_fixture_is_a_fake_clock_in_effect(fake_clock):
    assert isinstance(fake_clock, FakeClock) and clock.now is fake_clock
    before = clock.now()
    fake_clock.advance(3600)
    assert clock.now() == before + 3600


def test_without_the_fixture_the_clock_is_real():
    assert clock.now is time.time  # also: the fixture of another test left nothing behind


# -- what follows the clock ---------------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "file", "dbm"])
def local_backend(request, tmp_path):
    registry = Registry()
    factory = registry.backend_class(request.param)
    backend = factory() if request.param == "memory" else factory(data_dir=str(tmp_path / "data"))
    yield backend
    backend.close()
    registry.close()


def test_the_builtin_backends_declare_local_expiry(local_backend):
    assert type(local_backend).local_expiry is True


@pytest.mark.parametrize("name", ["redis", "memcached"])
def test_server_backends_do_not_declare_local_expiry(name):
    registry = Registry()
    try:
        assert registry.backend_class(name).local_expiry is False  # the server expires entries on its own clock
    finally:
        registry.close()


def test_the_builtin_backends_expire_on_the_fake_clock(local_backend, fake_clock):
    local_backend.set("short", b"s", ttl=60)
    local_backend.set("touched", b"t", ttl=60)
    local_backend.set("forever", b"f")
    local_backend.set("unread", b"u", ttl=60)  # not read again: only cleanup removes it
    fake_clock.advance(59)
    assert local_backend.get_many(["short", "touched", "forever"]) == [b"s", b"t", b"f"]
    assert local_backend.touch("touched", 60) is True
    fake_clock.advance(2)
    assert local_backend.get_many(["short", "touched", "forever"]) == [None, b"t", b"f"]
    assert local_backend.add("short", b"again") is True
    assert local_backend.cleanup() == 1
    fake_clock.advance(60)
    assert local_backend.get("touched") is None
    assert local_backend.get_many(["short", "forever"]) == [b"again", b"f"]


def test_a_cached_value_expires_on_the_fake_clock(fake_clock):
    cache = Cache(f"clock-{time.time_ns()}", type="memory")
    cache.put("k", "v", expiretime=60)
    fake_clock.advance(59)
    assert cache.get("k") == "v"
    fake_clock.advance(2)
    assert "k" not in cache
    assert cache.get("k", createfunc=lambda: "new", expiretime=60) == "new"


def test_a_session_times_out_on_the_fake_clock(tmp_path, fake_clock):
    app = SessionMiddleware(session_app, {"session.type": "file", "session.data_dir": str(tmp_path / "data"),
                                          "session.timeout": 600})
    client = WSGIClient(app)
    assert [client.json("/incr"), client.json("/incr")] == [1, 2]
    fake_clock.advance(599)
    assert client.json("/incr") == 3
    fake_clock.advance(601)
    assert client.json("/incr") == 1


# -- the conformance suite's waits --------------------------------------------------------------------------------

class TestWaitPastOnALocalBackend(ConformanceBase):
    backend = "memory"

    def test_wait_past_moves_the_clock_without_sleeping(self, store, prefix):
        store.set(prefix + "k", b"v", ttl=30)
        started, before = time.monotonic(), clock.now()
        self.wait_past(30)
        assert time.monotonic() - started < 1
        assert clock.now() >= before + 30 and is_fake()
        assert store.get(prefix + "k") is None

    def test_wait_past_in_core_moves_the_clock(self):
        before = clock.now()
        self.wait_past_in_core(10)
        assert clock.now() >= before + 10


class ServerLike(Backend):
    """A backend whose entries would expire on a server's clock."""

    name = "server-like"


class TestWaitPastOnAServer(ConformanceBase):
    backend = "server-like"
    backend_class = ServerLike
    ttl_resolution = 0.0

    def test_wait_past_sleeps_for_a_server(self):
        started = time.monotonic()
        self.wait_past(0.1)
        assert time.monotonic() - started >= 0.35
        assert not is_fake()

    def test_wait_past_in_core_moves_the_clock_even_for_a_server(self):
        started, before = time.monotonic(), clock.now()
        self.wait_past_in_core(30)
        assert time.monotonic() - started < 1 and clock.now() >= before + 30
