"""Three real memcached servers, one of them killed: caches degrade to misses, sessions fail naming the server."""
import uuid

import pytest

from beaker_core.cache import Cache
from beaker_core.exceptions import BackendError
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.session import KEY_PREFIX
from beaker_core.testing.sessions import WSGIClient, session_app
from beaker_memcached.backend import MemcachedBackend
from beaker_memcached.lock import MemcachedLock


pytestmark = pytest.mark.usefixtures("client_path")  # every test on the fast path and on its fallback


@pytest.fixture
def trio(server_factory):
    return [server_factory.memcached() for _ in range(3)]


@pytest.fixture
def url(trio):
    return ";".join(server.url for server in trio)


def owner(backend, key):
    return backend.locate(key)[1].address


def test_keys_spread_over_the_three_servers(trio, url):
    backend = MemcachedBackend(url=url)
    homes = [owner(backend, f"key-{index}") for index in range(300)]
    assert {home: homes.count(home) for home in homes}.keys() == {server.address for server in trio}
    assert min(homes.count(server.address) for server in trio) > 50


def test_cache_keeps_working_with_misses_for_the_lost_share(trio, url):
    prefix = f"dead-{uuid.uuid4().hex[:8]}:"
    cache = Cache("ns", type="memcached", url=url, prefix=prefix, expire=300, registry=Registry())
    keys = [f"k{index}" for index in range(90)]
    for key in keys:
        cache.put(key, key.upper())
    # the namespace's generation counter stays up here; the next test kills its server
    counter_home = owner(cache.backend, cache._generation_key)
    victim = next(server for server in trio if server.address != counter_home)
    lost = {key for key in keys if owner(cache.backend, cache._prefix + key) == victim.address}
    assert 10 < len(lost) < 60
    victim.kill()

    recomputed = []

    def creator(key):
        def create():
            recomputed.append(key)
            return key.lower()
        return create

    values = {key: cache.get_or_create(key, creator(key)) for key in keys}
    assert set(recomputed) == lost
    assert values == {key: key.lower() if key in lost else key.upper() for key in keys}
    cache.put("written-while-down", 1)  # dropped or stored, never an error
    for key in keys:
        if key not in lost:
            assert cache.get(key) == key.upper()

    strict = MemcachedBackend(url=url, prefix=prefix, strict=True)
    lost_key = cache._prefix + sorted(lost)[0]
    for operation in (lambda: strict.get(lost_key), lambda: strict.set(lost_key, b"v"),
                      lambda: strict.get_many([lost_key])):
        with pytest.raises(BackendError, match=f"memcached server {victim.address}"):
            operation()


def test_losing_the_generation_counter_recomputes_once_and_caches_again(trio, url):
    """With the counter's server down, no value of a known generation can be trusted (a clear() may have happened):
    every key is recomputed once, then served from the cache for the rest of the outage, and nothing raises."""
    prefix = f"dead-{uuid.uuid4().hex[:8]}:"
    cache = Cache("ns", type="memcached", url=url, prefix=prefix, expire=300, registry=Registry())
    keys = [f"k{index}" for index in range(30)]
    for key in keys:
        cache.put(key, "before")
    victim = next(server for server in trio if server.address == owner(cache.backend, cache._generation_key))
    victim.kill()
    calls = []
    for _ in range(2):
        for key in keys:
            assert cache.get_or_create(key, lambda key=key: calls.append(key) or "during") == "during"
    on_victim = {key for key in keys if owner(cache.backend, cache._prefix + key) == victim.address}
    assert 0 < len(on_victim) < len(keys)
    # values on live servers: recomputed once, then cached; on the dead server: recomputed on every call
    assert {key: calls.count(key) for key in keys} == {key: 2 if key in on_victim else 1 for key in keys}
    cache.clear()  # cannot reach the counter: dropped and logged, never an error for a cache


def test_strict_lock_and_always_strict_operations_name_the_dead_server(trio, url):
    backend = MemcachedBackend(url=url, dead_retry=60)
    strict = MemcachedBackend(url=url, strict=True)
    victim = trio[2]
    key = next(f"k{index}" for index in range(1000) if owner(backend, f"k{index}") == victim.address)
    lock_name = next(f"l{index}" for index in range(1000)
                     if owner(backend, "beaker-lock:" + f"l{index}") == victim.address)
    victim.kill()
    for operation in (lambda: backend.add(key, b"v"), lambda: backend.delete(key), lambda: backend.touch(key, 5),
                      lambda: backend.incr(key), lambda: backend.get_record(key),
                      lambda: backend.merge_record(key, {"a": b"1"}, [], None),
                      lambda: MemcachedLock(lock_name, backend=strict).acquire(True, 1)):
        with pytest.raises(BackendError, match=f"memcached server {victim.address}"):
            operation()
    assert backend.get(key) is None  # a degrading read of a dead server is a miss, not an error
    degraded = MemcachedLock(lock_name, backend=backend)
    assert degraded.acquire(True, 1) is True  # granted without exclusion, logged
    degraded.release()


def test_sessions_on_the_dead_server_fail_naming_it_and_the_others_keep_working(trio, url):
    app = SessionMiddleware(session_app, {"session.type": "ext:memcached", "session.url": url,
                                          "session.timeout": "300"}, registry=Registry())
    backend = app.session_manager.backend
    victim = trio[0]
    clients = []
    for _ in range(30):
        client = WSGIClient(app)
        assert client.json("/incr") == 1
        session_id = client.json("/id")
        clients.append((client, owner(backend, KEY_PREFIX + session_id) == victim.address))
    assert any(on_victim for _, on_victim in clients) and not all(on_victim for _, on_victim in clients)
    victim.kill()
    for client, on_victim in clients:
        if on_victim:
            with pytest.raises(BackendError, match=f"memcached server {victim.address}"):
                client.json("/incr")
        else:
            assert client.json("/incr") == 2
    victim.restart()  # back, but empty: those sessions start over, without an error
    for client, on_victim in clients:
        if on_victim:
            assert client.json("/incr") == 1
