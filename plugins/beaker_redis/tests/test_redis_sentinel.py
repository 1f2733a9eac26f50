"""Redis Sentinel, against real processes: a primary, a replica and three sentinels started by the fixtures.

The shared group (``redis_sentinel``) runs the conformance suite and the configuration forms; the failover tests
start a private group each (``redis_sentinel_factory``), kill its primary with SIGKILL, and keep serving sessions and
cached calls through the same middleware and cache manager until the sentinels have promoted the replica.
"""
import time
import uuid

import pytest
import redis
from redis.sentinel import Sentinel

from beaker_core.cache import CacheManager
from beaker_core.exceptions import BackendError, ConfigurationError
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing import BackendConformance
from beaker_core.testing.sessions import WSGIClient, session_app
from beaker_core.util import parse_cache_config_options
from beaker_redis.backend import RedisBackend, RedisClusterBackend
from beaker_redis.sentinel import SentinelTarget, parse_sentinel_url
from beaker_redis.testing import redis_sentinel, redis_sentinel_factory  # noqa: F401  (fixtures)

FAILOVER_LIMIT = 30.0  # seconds the failover tests keep calling before they give up


@pytest.fixture
def prefix():
    return f"bksentinel-{uuid.uuid4().hex[:12]}:"


class TestRedisSentinelConformance(BackendConformance):
    """The whole conformance suite on a backend configured with a ``redis+sentinel://`` URL."""

    backend = "redis"
    native_expiry = True
    ttl_resolution = 0.1

    @pytest.fixture(autouse=True)
    def _group(self, redis_sentinel):
        self.url = redis_sentinel.url

    def make_options(self, tmp_path):
        return {"url": self.url}


# -- configuration -----------------------------------------------------------------------------------------------

def test_url_and_keys_forms_reach_the_primary(redis_sentinel, prefix):
    group = redis_sentinel
    by_url = RedisBackend(url=group.url, prefix=prefix)
    by_keys = Registry().open_backend("redis", sentinels=group.sentinel_addresses, service_name="mymaster",
                                      prefix=prefix)
    by_list = RedisBackend(sentinels=[sentinel.address for sentinel in group.sentinels], service_name="mymaster",
                           db="0", prefix=prefix)
    by_url.set("k", b"v")
    assert by_keys.get("k") == b"v" and by_list.get("k") == b"v"
    assert group.primary.command("GET", prefix + "k") == "v"
    shown = ",".join(sentinel.address for sentinel in group.sentinels)
    assert by_url.describe() == f"redis backend at redis+sentinel://{shown}/mymaster/0"
    assert by_keys.describe() == f"redis backend at redis+sentinel://{shown}/mymaster/0"
    for backend in (by_url, by_keys, by_list):
        # the hot commands go through redis-py's execute_command, whose connections follow the primary
        assert backend._command == backend.client.execute_command
        backend.close()


def test_a_database_other_than_0(redis_sentinel, prefix):
    backend = RedisBackend(url=redis_sentinel.url.replace("/mymaster/0", "/mymaster/3"), prefix=prefix)
    backend.set("k", b"in db 3")
    raw = redis.Redis(host=redis_sentinel.primary.host, port=redis_sentinel.primary.port, db=3)
    assert raw.get(prefix + "k") == b"in db 3"
    raw.close()
    assert backend.describe().endswith("/mymaster/3")
    backend.close()


def test_sessions_and_cache_regions_on_sentinel_keys(redis_sentinel, prefix):
    registry = Registry()
    config = {"session.type": "redis", "session.sentinels": redis_sentinel.sentinel_addresses,
              "session.service_name": "mymaster", "session.prefix": prefix}
    app = SessionMiddleware(session_app, config, registry=registry)
    client = WSGIClient(app)
    assert [client.json("/incr") for _ in range(3)] == [1, 2, 3]
    cache = CacheManager(**parse_cache_config_options({
        "cache.type": "redis", "cache.url": redis_sentinel.url, "cache.prefix": prefix,
        "cache.regions": "short_term", "cache.short_term.expire": "60"}), registry=registry)
    created = []

    @cache.region("short_term")
    def square(number):
        created.append(number)
        return number * number

    assert [square(4), square(4), square(5)] == [16, 16, 25]
    assert created == [4, 5]
    registry.close()


def test_a_sentinel_client_passed_in(redis_sentinel, prefix):
    sentinels = Sentinel([(sentinel.host, sentinel.port) for sentinel in redis_sentinel.sentinels])
    client = sentinels.master_for("mymaster")
    backend = RedisBackend(client=client, prefix=prefix)
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
    shown = ",".join(sentinel.address for sentinel in redis_sentinel.sentinels)
    assert backend.describe() == f"redis backend at redis+sentinel://{shown}/mymaster/0"
    backend.close()
    client.close()


def test_data_and_sentinel_passwords_are_separate_and_never_shown(redis_sentinel_factory, prefix):
    group = redis_sentinel_factory(password="data-secret", sentinel_password="sentinel-secret")
    backend = RedisBackend(url=group.url, prefix=prefix)  # ...:data-secret@.../mymaster/0?sentinel_password=...
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
    base = group.url.split("?")[0]
    by_keys = RedisBackend(sentinels=group.sentinel_addresses, service_name="mymaster", password="data-secret",
                           sentinel_password="sentinel-secret", prefix=prefix)
    assert by_keys.get("k") == b"v"
    wrong = {
        "wrong sentinel password": RedisBackend(url=base + "?sentinel_password=not-it", socket_timeout=2),
        "no sentinel password": RedisBackend(url=base, socket_timeout=2),
        "wrong data password": RedisBackend(url=group.url.replace("data-secret", "not-it"), socket_timeout=2),
    }
    for case, failing in wrong.items():
        with pytest.raises(BackendError) as raised:
            failing.get("k")
        message = str(raised.value)
        assert "mymaster" in message and "AuthenticationError" in message, case
        assert "secret" not in message and "secret" not in failing.describe() and "secret" not in repr(failing)
        failing.close()
    backend.close()
    by_keys.close()


def test_sentinel_url_forms_and_options():
    target = parse_sentinel_url("rediss+sentinel://alice:pw@h1,h2:26380,[::1]:26381/cache-primary/2"
                                "?socket_timeout=1.5&sentinel_password=sp&max_connections=8", "the redis backend")
    assert isinstance(target, SentinelTarget)
    assert target.nodes == [("h1", 26379), ("h2", 26380), ("::1", 26381)]
    assert target.service_name == "cache-primary"
    assert target.display == "rediss+sentinel://alice@h1:26379,h2:26380,[::1]:26381/cache-primary/2"
    assert target.node_options == {"username": "alice", "password": "pw", "db": 2, "socket_timeout": 1.5,
                                   "max_connections": 8, "sentinel_password": "sp", "ssl": True}
    overridden = parse_sentinel_url("redis+sentinel://h1:1/a", "the redis backend", service_name="b")
    assert overridden.service_name == "b" and overridden.display == "redis+sentinel://h1:1/b/0"


def test_tls_uses_tls_connections_to_the_sentinels_and_the_primary():
    backend = RedisBackend(url="rediss+sentinel://127.0.0.1:1/mymaster", ssl_cert_reqs="none")
    from redis.connection import SSLConnection

    pool = backend.client.connection_pool
    assert issubclass(pool.connection_class, SSLConnection)
    for sentinel in pool.sentinel_manager.sentinels:
        assert issubclass(sentinel.connection_pool.connection_class, SSLConnection)
        assert sentinel.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    backend.close()


@pytest.mark.parametrize("options, fragment", [
    ({"url": "redis+sentinel://h1:26379,h2:26379"}, "needs the service name"),
    ({"url": "redis+sentinel:///mymaster"}, "names no sentinel"),
    ({"url": "redis+sentinel://h1:x/mymaster"}, "invalid port"),
    ({"url": "redis+sentinel://h1:70000/mymaster"}, "port out of range"),
    ({"url": "redis+sentinel://h1/mymaster/zero"}, "db"),
    ({"url": "redis+sentinel://h1/mymaster?socket_timeout=soon"}, "socket_timeout"),
    ({"url": "redis+sentinel://h1/mymaster?sentinels=h2"}, "query takes"),
    ({"url": "redis+sentinel://h1/mymaster", "sentinels": "h2:26379"}, "either sentinels or a url"),
    ({"sentinels": "h1:26379, h2:26379"}, "needs the service name"),
    ({"sentinels": " , "}, "names no sentinel"),
    ({"sentinels": 26379, "service_name": "m"}, "sentinels must be host:port pairs"),
    ({"sentinels": "redis://h1:26379", "service_name": "m"}, "takes host:port pairs"),
    ({"url": "redis://127.0.0.1:6379/0", "service_name": "m"}, "apply to a sentinel url"),
    ({"url": "redis://127.0.0.1:6379/0", "sentinel_password": "x"}, "apply to a sentinel url"),
    ({"client": redis.Redis(), "service_name": "m"}, "configure the client you pass"),
])
def test_sentinel_configuration_mistakes(options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        RedisBackend(**options)


def test_rediscluster_refuses_a_sentinel_url():
    with pytest.raises(ConfigurationError, match="sentinel url goes with type redis"):
        RedisClusterBackend(url="redis+sentinel://h1/mymaster")


def test_nothing_connects_before_the_first_command_and_no_sentinel_is_a_clear_error():
    backend = RedisBackend(url="redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster", socket_connect_timeout=1)
    with pytest.raises(BackendError) as raised:
        backend.get("k")
    message = str(raised.value)
    assert message.startswith("redis backend at redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0: GET failed: "
                              "MasterNotFoundError: no sentinel names a primary for 'mymaster' (sentinel "
                              "127.0.0.1:1: ConnectionError"), message
    backend.close()


# -- failover ----------------------------------------------------------------------------------------------------

def _keep_calling(call, limit=FAILOVER_LIMIT):
    """Call ``call()`` until it returns without a BackendError; return (its result, the errors, seconds taken)."""
    errors = []
    start = time.monotonic()
    while True:
        try:
            return call(), errors, time.monotonic() - start
        except BackendError as exc:
            errors.append(str(exc))
        if time.monotonic() - start > limit:
            pytest.fail(f"still failing {limit} s after the primary was killed: {errors[-1]}")
        time.sleep(0.02)


@pytest.mark.slow
def test_failover_sessions_and_caches_carry_on_without_a_restart(redis_sentinel_factory, prefix):
    group = redis_sentinel_factory()
    registry = Registry()
    app = SessionMiddleware(session_app, {"session.type": "redis", "session.url": group.url,
                                          "session.prefix": prefix}, registry=registry)
    client = WSGIClient(app)
    assert [client.json("/incr") for _ in range(3)] == [1, 2, 3]
    cache = CacheManager(**parse_cache_config_options({
        "cache.type": "redis", "cache.sentinels": group.sentinel_addresses, "cache.service_name": "mymaster",
        "cache.prefix": prefix, "cache.regions": "strict, lenient", "cache.strict.expire": "600",
        "cache.lenient.expire": "600", "cache.lenient.fail_open": "true"}), registry=registry)
    created = []

    @cache.region("strict")
    def strict(number):
        created.append(("strict", number))
        return number * 2

    @cache.region("lenient")
    def lenient(number):
        created.append(("lenient", number))
        return number * 3

    assert (strict(1), lenient(1)) == (2, 3)
    group.wait_for_replication()
    old_primary = group.primary.address

    group.primary.kill()
    killed_at = time.monotonic()

    # a fail-open region computes while no primary answers, and never raises
    lenient_values = []
    while time.monotonic() - killed_at < 1.0:
        lenient_values.append(lenient(2))
    assert set(lenient_values) == {6}
    # sessions and a strict region raise a clear error, then work again once the replica is promoted
    count, session_errors, _ = _keep_calling(lambda: client.json("/incr"))
    recovered_after = time.monotonic() - killed_at
    assert count == 4, "the session written before the kill (and replicated) was lost"
    value, cache_errors, _ = _keep_calling(lambda: strict(1))
    assert value == 2 and ("strict", 1) not in created[1:], "the cached value written before the kill was lost"
    errors = session_errors + cache_errors
    assert errors, "no call failed: the primary was not killed?"
    for message in errors:
        assert message.startswith("redis backend at redis+sentinel://") and "/mymaster/0: " in message, message
    assert any("no sentinel names a primary for 'mymaster'" in message for message in errors) or \
        any("Connection refused" in message for message in errors)
    new_primary = group.master_address()
    assert new_primary == group.replica.address != old_primary
    # the same middleware and cache manager go on writing to the new primary
    assert [client.json("/incr") for _ in range(2)] == [5, 6]
    assert strict(7) == 14 and lenient(7) == 21
    assert group.replica.command("SCAN", "0", "MATCH", prefix + "*", "COUNT", "1000")[1], "nothing on the new primary"
    print(f"\nfailover: sessions worked again {recovered_after:.2f} s after the kill ({len(session_errors)} errors "
          f"before); primary {old_primary} -> {new_primary}")
    registry.close()


@pytest.mark.slow
def test_failover_seen_through_an_idle_pool_and_a_fresh_process_view(redis_sentinel_factory, prefix):
    """Connections left idle across the failover: the first call after it may fail once (its connection was to the
    old primary), and the next ones reach the new primary, whose data is the replicated data."""
    group = redis_sentinel_factory()
    backend = RedisBackend(url=group.url, prefix=prefix)
    backend.set_many({f"k{index}": str(index).encode() for index in range(50)})
    assert backend.merge_record("record", {"a": b"1"}, [], 600) is True
    group.wait_for_replication()
    old_primary = group.primary.address
    group.primary.kill()
    new_primary = group.wait_for_failover(old_primary)
    assert new_primary == group.replica.address
    values, _, _ = _keep_calling(lambda: backend.get_many([f"k{index}" for index in range(50)]), limit=10)
    assert values == [str(index).encode() for index in range(50)]
    assert backend.get_record("record") == {"a": b"1"}
    assert backend.merge_record("record", {"b": b"2"}, ["a"], 600) is True
    assert group.replica.command("HGETALL", prefix + "record") == ["b", "2"]
    backend.close()
