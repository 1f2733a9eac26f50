"""A redis that stops answering (SIGSTOP) or dies (SIGKILL) and comes back: the first call costs the reply timeout,
the next ones fail fast (or fail open) while the server is marked down, and the same Cache and backend work again
once the server is back, without being recreated.

Each test starts a private server it may stop or kill; the bounds on durations are generous functional bounds (a
call that waited for the server costs seconds, one that did not, microseconds), not benchmarks.
"""
import threading
import time

import pytest

from beaker_core.cache import Cache
from beaker_core.exceptions import BackendError, ConfigurationError
from beaker_core.registry import Registry
from beaker_core.testing.servers import stopped, timed
from beaker_redis import fastpath
from beaker_redis.backend import RedisBackend

FAST = 0.5  # seconds: a call that did not wait for the server


@pytest.fixture(autouse=True, params=["fast path", "fallback"])
def client_path(request, monkeypatch):
    """Every test runs with redis-py's internals (beaker_redis.fastpath) and with the public API they fall back to:
    the failures must be the same."""
    if request.param == "fallback":
        monkeypatch.setattr(fastpath, "enabled", False)
    return request.param


def counting(values):
    def creator():
        values.append(len(values))
        return f"computed-{len(values)}"
    return creator


def test_with_fail_open_a_stopped_server_costs_its_timeout_once(server_factory):
    """With the default options, as the issue reports it: before, every call took the 5 s reply timeout for the
    whole outage."""
    server = server_factory.redis()
    cache = Cache("hung", type="redis", url=server.url, fail_open=True, expire=300, registry=Registry())
    cache.put("before", "kept")
    created = []
    with stopped(server):
        first, value = timed(lambda: cache.get_or_create("k", counting(created)))
        assert value == "computed-1"
        assert 4.5 <= first < 12  # about one 5 s reply timeout
        for index in range(20):
            elapsed, value = timed(lambda: cache.get_or_create(f"k{index}", counting(created)))
            assert elapsed < FAST and value == f"computed-{index + 2}"
            elapsed, value = timed(lambda: cache.get("before"))
            assert elapsed < FAST and isinstance(value, KeyError)  # fail open: a miss
    time.sleep(cache.backend.dead_retry)
    # the first call after the interval probes, finds the server back, and goes on: caching works again
    assert cache.get_or_create("after", counting(created)) == "computed-22"
    assert cache.get_or_create("after", counting(created)) == "computed-22"
    assert cache.get("before") == "kept"


def test_without_fail_open_the_error_names_the_server_at_once(server_factory):
    server = server_factory.redis(password="hung-s3cret")
    cache = Cache("hung", type="redis", url=server.url, registry=Registry(), socket_timeout=0.5)
    backend = cache.backend
    backend.merge_record("session", {"a": b"1"}, [], 60)
    shown = f"redis backend at redis://127.0.0.1:{server.port}/0"
    with stopped(server):
        first, error = timed(lambda: cache.get_or_create("k", lambda: 1))
        assert isinstance(error, BackendError) and 0.4 <= first < 3
        assert f"{shown}: MGET failed: no reply in time" in str(error)
        for _ in range(20):
            elapsed, error = timed(lambda: cache.get_or_create("k", lambda: 1))
            assert elapsed < FAST and isinstance(error, BackendError)
            assert f"{shown}: MGET failed: no reply in time" in str(error)
            assert "marked down" in str(error)
        for operation in (lambda: backend.get("k"), lambda: backend.set("k", b"v", 5),
                          lambda: backend.set_many({"a": b"1"}, 5), lambda: backend.add("k", b"v"),
                          lambda: backend.delete("k"), lambda: backend.delete_many(["k"]),
                          lambda: backend.touch("k", 5), lambda: backend.incr("n"), lambda: list(backend.keys()),
                          lambda: backend.delete_prefix("x"), lambda: backend.update("k", lambda current: b"v"),
                          lambda: backend.get_record("session"), lambda: backend.ttl("k"),
                          lambda: backend.merge_record("session", {"b": b"2"}, [], 60)):
            elapsed, error = timed(operation)
            assert elapsed < FAST and isinstance(error, BackendError), error
            assert shown in str(error) and "hung-s3cret" not in str(error)
    time.sleep(backend.dead_retry)
    assert backend.get_record("session") == {"a": b"1"}
    assert cache.get_or_create("k", lambda: "back") == "back"


def test_every_call_stays_fast_for_a_whole_outage(server_factory):
    """Across several intervals of the down mark, a probe costs at most its short timeout, never a reply timeout."""
    server = server_factory.redis()
    cache = Cache("hung", type="redis", url=server.url, fail_open=True, registry=Registry(), socket_timeout=1.0,
                  dead_retry=0.3)
    durations = []
    with stopped(server):
        first, _ = timed(lambda: cache.get_or_create("k", lambda: 1))
        assert first >= 0.9
        deadline = time.monotonic() + 2.0  # more than six intervals
        while time.monotonic() < deadline:
            durations.append(timed(lambda: cache.get_or_create("k", lambda: 1))[0])
            time.sleep(0.02)
    assert max(durations) < FAST
    assert sum(1 for elapsed in durations if elapsed > 0.2) >= 3  # the probes: one per interval, each ~0.25 s
    time.sleep(0.3)
    assert cache.get_or_create("k", lambda: 2) == 2
    assert cache.get_or_create("k", lambda: 3) == 2


def test_backends_on_one_client_share_the_mark(server_factory):
    """Every cache namespace (one backend each) on the same URL pays the timeout once between them, not once each."""
    server = server_factory.redis()
    caches = [Cache(f"ns{index}", type="redis", url=server.url, fail_open=True, registry=Registry(),
                    socket_timeout=0.5) for index in range(5)]
    assert len({id(cache.backend.client) for cache in caches}) == 1
    with stopped(server):
        assert timed(lambda: caches[0].get_or_create("k", lambda: 1))[0] >= 0.4
        for cache in caches:
            elapsed, value = timed(lambda: cache.get_or_create("k", lambda: 2))
            assert elapsed < FAST and value == 2


def test_killed_and_restarted_mid_load_recovers_without_a_new_cache(server_factory):
    """A thread calls get_or_create in a loop while the server is killed and, a second later, restarted on the
    same port: during the outage every call fails open at once; after the restart, values are cached again by the
    same Cache and backend."""
    server = server_factory.redis()
    cache = Cache("load", type="redis", url=server.url, fail_open=True, expire=300, registry=Registry())
    strict = RedisBackend(url=server.url)
    calls = []  # (when, elapsed, value, computed)
    running = threading.Event()
    running.set()

    def load():
        index = 0
        while running.is_set():
            index += 1
            computed = []
            started = time.monotonic()
            value = cache.get_or_create("k", lambda: computed.append(1) or f"value-{index}")
            calls.append((started, time.monotonic() - started, value, bool(computed)))
            time.sleep(0.005)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.3)
        killed_at = time.monotonic()
        server.kill()
        time.sleep(0.5)
        elapsed, error = timed(lambda: strict.get("k"))
        assert elapsed < FAST and isinstance(error, BackendError) and f"127.0.0.1:{server.port}" in str(error)
        restarting_at = time.monotonic()
        server.restart()
        restarted_at = time.monotonic()
        time.sleep(0.5)
    finally:
        running.clear()
        worker.join(10)
    before = [call for call in calls if call[0] < killed_at]
    during = [call for call in calls if killed_at + 0.05 < call[0] < restarting_at]
    after = [call for call in calls if call[0] > restarted_at + 0.1]
    assert before and during and after
    assert max(elapsed for _, elapsed, _, _ in calls) < FAST
    assert not any(computed for _, _, _, computed in before[1:])  # cached
    assert all(computed for _, _, _, computed in during)  # failed open: computed, nothing stored
    assert len({value for _, _, value, _ in after}) == 1  # stored once more, then served from the cache
    assert not any(computed for _, _, _, computed in after[1:])
    assert strict.get(cache._prefix + "k") is not None  # the backend of the same URL works again too
    strict.close()


def test_a_client_passed_in_is_marked_down_too(server_factory):
    import redis
    server = server_factory.redis()
    client = redis.Redis.from_url(server.url, socket_timeout=0.5)
    backend = RedisBackend(client=client)
    with stopped(server):
        assert timed(lambda: backend.get("k"))[0] >= 0.4
        elapsed, error = timed(lambda: backend.get("k"))
        assert elapsed < FAST and "marked down" in str(error)
    time.sleep(backend.dead_retry)
    assert backend.get("k") is None
    client.close()


def test_a_wrong_password_does_not_mark_the_server_down(server_factory):
    server = server_factory.redis(password="right")
    backend = RedisBackend(url=f"redis://:wrong@127.0.0.1:{server.port}/0")
    for _ in range(3):
        with pytest.raises(BackendError, match="AuthenticationError") as raised:
            backend.get("k")
        assert "marked down" not in str(raised.value)
    backend.close()


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_dead_retry_is_checked(value):
    with pytest.raises(ConfigurationError, match="dead_retry"):
        RedisBackend(url="redis://127.0.0.1:1/0", dead_retry=value)
