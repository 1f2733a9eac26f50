"""A memcached that stops answering (SIGSTOP): the first call costs the reply timeout, the next ones fail fast (or fail
open) while the server is marked down, and the calls go to it again once a probe finds it back (SIGCONT).

Each test starts a private server it may stop; the bounds on durations are generous functional bounds (a call that
waited for the server costs seconds, one that did not, microseconds), not benchmarks.
"""
import time

import pytest

from beaker_core.cache import Cache
from beaker_core.exceptions import BackendError
from beaker_core.registry import Registry
from beaker_core.testing.servers import stopped, timed
from beaker_memcached.backend import MemcachedBackend

FAST = 0.5  # seconds: a call that did not wait for the server


pytestmark = pytest.mark.usefixtures("client_path")  # every test on the fast path and on its fallback


def counting(values):
    def creator():
        values.append(len(values))
        return f"computed-{len(values)}"
    return creator


def test_with_fail_open_a_stopped_server_costs_its_timeout_once(server_factory):
    """With the default options, as the issue reports it: before, every get_or_create took 4 to 6 seconds and every
    get 2 seconds for the whole outage."""
    server = server_factory.memcached()
    cache = Cache("hung", type="memcached", url=server.url, fail_open=True, expire=300, registry=Registry())
    cache.put("before", "kept")
    created = []
    with stopped(server):
        first, value = timed(lambda: cache.get_or_create("k", counting(created)))
        assert value == "computed-1"
        assert 1.5 <= first < 4 * cache.backend.timeout  # about one 2 s reply timeout
        for index in range(20):
            elapsed, value = timed(lambda: cache.get_or_create(f"k{index}", counting(created)))
            assert elapsed < FAST and value == f"computed-{index + 2}"
            elapsed, value = timed(lambda: cache.get("before"))
            assert elapsed < FAST and isinstance(value, KeyError)  # a miss: the server cannot be read
        assert len(created) == 21
    time.sleep(cache.backend.dead_retry)
    # the first call after the interval probes, finds the server back, and goes on: caching works again
    assert cache.get_or_create("after", counting(created)) == "computed-22"
    assert cache.get_or_create("after", counting(created)) == "computed-22"
    assert cache.get("before") == "kept"
    assert len(created) == 22


def test_every_call_stays_fast_for_a_whole_outage(server_factory):
    """Across several intervals of the down mark, a probe costs at most its short timeout, never a reply timeout."""
    server = server_factory.memcached()
    cache = Cache("hung", type="memcached", url=server.url, fail_open=True, registry=Registry(),
                  timeout=1.0, dead_retry=0.3)
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


def test_without_fail_open_the_error_names_the_server_at_once(server_factory):
    server = server_factory.memcached()
    strict = Cache("hung", type="memcached", url=server.url, strict=True, registry=Registry(), timeout=0.5)
    backend = MemcachedBackend(url=server.url, timeout=0.5)
    backend.set("counter", b"1")
    with stopped(server):
        first, error = timed(lambda: strict.get_or_create("k", lambda: 1))
        assert isinstance(error, BackendError) and first >= 0.4
        assert f"memcached server {server.address} failed while reading" in str(error)
        assert "no reply within 0.5 seconds" in str(error)
        for _ in range(20):
            elapsed, error = timed(lambda: strict.get_or_create("k", lambda: 1))
            assert elapsed < FAST and isinstance(error, BackendError)
            assert f"memcached server {server.address} is down" in str(error)
            assert "no reply within 0.5 seconds" in str(error)
        # the operations that never degrade: the first costs the timeout, then every one fails at once
        assert isinstance(timed(lambda: backend.add("a", b"v"))[1], BackendError)
        for operation in (lambda: backend.add("a", b"v"), lambda: backend.incr("counter"),
                          lambda: backend.incr("counter", -1), lambda: backend.touch("counter", 5),
                          lambda: backend.delete("counter"), lambda: backend.delete_many(["a", "b"]),
                          lambda: backend.get_record("session"),
                          lambda: backend.merge_record("session", {"a": b"1"}, [], 60),
                          lambda: backend.update("counter", lambda current: b"2")):
            elapsed, error = timed(operation)
            assert elapsed < FAST and isinstance(error, BackendError), error
            assert f"memcached server {server.address} is down" in str(error)
        # the degrading path of the same backend: a miss and a dropped write, at once
        elapsed, found = timed(lambda: backend.get_many(["counter", "a"]))
        assert elapsed < FAST and found == [None, None]
        elapsed, nothing = timed(lambda: backend.set("a", b"v"))
        assert elapsed < FAST and nothing is None
    time.sleep(backend.dead_retry)
    assert backend.incr("counter") == 2
    assert strict.get_or_create("k", lambda: "back") == "back"


def test_one_server_of_three_hung_costs_only_its_share(server_factory):
    """The keys of the stopped server miss at once; the other servers' keys are served as usual."""
    trio = [server_factory.memcached() for _ in range(3)]
    url = ";".join(server.url for server in trio)
    cache = Cache("hung", type="memcached", url=url, fail_open=True, expire=300, registry=Registry(), timeout=0.5)
    keys = [f"k{index}" for index in range(60)]
    for key in keys:
        cache.put(key, "stored")
    counter_home = cache.backend.locate(cache._generation_key)[1].address
    victim = next(server for server in trio if server.address != counter_home)
    lost = {key for key in keys if cache.backend.locate(cache._prefix + key)[1].address == victim.address}
    assert 0 < len(lost) < len(keys)
    with stopped(victim):
        timed(lambda: cache.get_or_create(sorted(lost)[0], lambda: "computed"))  # the one timeout
        started = time.monotonic()
        values = {key: cache.get_or_create(key, lambda: "computed") for key in keys}
        assert time.monotonic() - started < FAST * 2
    assert values == {key: "computed" if key in lost else "stored" for key in keys}


def test_a_killed_server_is_used_again_as_soon_as_it_is_back(server_factory):
    """A refused connection costs nothing to repeat, so it does not wait out dead_retry: the call after the restart
    probes the server and goes on."""
    server = server_factory.memcached()
    cache = Cache("killed", type="memcached", url=server.url, fail_open=True, registry=Registry(), dead_retry=60)
    backend = cache.backend
    cache.put("k", "before")
    server.kill()
    for index in range(5):
        elapsed, value = timed(lambda: cache.get_or_create("k", lambda: f"during-{index}"))
        assert elapsed < FAST and value == f"during-{index}"
        elapsed, error = timed(lambda: backend.add("a", b"v"))
        assert elapsed < FAST and f"memcached server {server.address}" in str(error)
    server.restart()
    assert backend.add("a", b"v") is True
    assert cache.get_or_create("k", lambda: "after") == "after"  # the restarted server is empty
    assert cache.get_or_create("k", lambda: "again") == "after"


def test_a_probe_that_fails_keeps_the_server_marked_down(server_factory):
    server = server_factory.memcached()
    backend = MemcachedBackend(url=server.url, timeout=0.5, dead_retry=0.2)
    node = backend._ring.single
    with stopped(server):
        assert backend.get("k") is None  # the timeout: marked down
        assert node.down_until
        time.sleep(0.25)
        elapsed, error = timed(lambda: backend.add("k", b"v"))  # this call probes, gets no answer, fails fast
        assert isinstance(error, BackendError) and elapsed < FAST
        assert "no answer to a probe within 0.25 seconds" in str(error)
        assert node.down_until > time.monotonic()
    time.sleep(0.25)
    assert backend.add("k", b"v") is True
    assert node.down_until == 0.0


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_dead_retry_is_checked(value):
    from beaker_core.exceptions import ConfigurationError
    with pytest.raises(ConfigurationError, match="dead_retry"):
        MemcachedBackend(url="127.0.0.1:11211", dead_retry=value)
