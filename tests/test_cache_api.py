"""Beaker's caching API and what beaker-core adds to it (fail open, stale values, generations, key rules)."""
import logging
import threading
import time
import uuid

import pytest

from beaker_core import cache as cache_module
from beaker_core.backends import Backend
from beaker_core.backends.memory import MemoryBackend
from beaker_core.cache import Cache, CacheManager, cache_region, region_invalidate
from beaker_core.exceptions import BackendError, BeakerError, ConfigurationError, PluginNotFound, SerializationError
from beaker_core.middleware import CacheMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.concurrency import run_in_threads
from beaker_core.util import parse_cache_config_options


@pytest.fixture(autouse=True)
def isolated_regions():
    saved_regions = dict(cache_module.cache_regions)
    saved_managers = dict(cache_module.cache_managers)
    yield
    cache_module.cache_regions.clear()
    cache_module.cache_regions.update(saved_regions)
    cache_module.cache_managers.clear()
    cache_module.cache_managers.update(saved_managers)


def namespace():
    return f"ns-{uuid.uuid4().hex}"


class Counter:
    def __init__(self, result=None):
        self.calls = 0
        self.result = result

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.result if self.result is not None else (args, tuple(sorted(kwargs.items())))


# -- Cache -----------------------------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "file"])
def cache(request, tmp_path):
    options = {"data_dir": str(tmp_path / "cache")} if request.param == "file" else {}
    return Cache(namespace(), type=request.param, **options)


def test_put_get_contains_remove(cache):
    cache.put("a", {"x": [1, 2]})
    assert cache.get("a") == {"x": [1, 2]}
    assert cache.get_value("a") == {"x": [1, 2]}
    assert "a" in cache and cache.has_key("a")
    cache["b"] = 2
    assert cache["b"] == 2
    del cache["b"]
    assert "b" not in cache
    cache.remove_value("a")
    with pytest.raises(KeyError):
        cache.get("a")
    cache.remove_value("never-there")  # no error, as in Beaker
    del cache["never-there"]


def test_none_is_a_value(cache):
    create = Counter()
    create.result = None
    cache.put("none", None)
    assert "none" in cache
    assert cache.get("none", createfunc=create) is None
    assert create.calls == 0


def test_createfunc_runs_once_until_expiry(cache, fake_clock):
    create = Counter("v")
    assert cache.get("k", createfunc=create, expiretime=0.3) == "v"
    assert cache.get("k", createfunc=create, expiretime=0.3) == "v"
    assert create.calls == 1
    fake_clock.advance(0.4)
    assert cache.get("k", createfunc=create, expiretime=0.3) == "v"
    assert create.calls == 2


def test_expire_default_and_per_put(tmp_path, fake_clock):
    cache = Cache(namespace(), type="file", data_dir=str(tmp_path), expire=0.3)
    cache.put("short", 1)
    cache.put("long", 2, expiretime=30)
    fake_clock.advance(0.4)
    assert "short" not in cache
    assert cache.get("long") == 2


def test_a_value_keeps_the_lifetime_it_was_stored_with(fake_clock):
    cache = Cache(namespace(), expire=100)
    cache.put("k", 1)
    cache.put("short", 2, expiretime=0.1)
    fake_clock.advance(0.2)
    assert cache.get("k", expiretime=0.1) == 1
    assert cache.get("short", createfunc=lambda: "made", expiretime=100) == "made"
    assert cache.get("short", expiretime=0.01) == "made"


def test_starttime_expires_older_values():
    cache_name = namespace()
    Cache(cache_name).put("k", 1)
    later = Cache(cache_name, starttime=time.time() + 1)
    assert "k" not in later


def test_clear_invalidates_namespace_only(cache, tmp_path):
    options = {"data_dir": str(tmp_path / "cache")} if cache.type == "file" else {}
    other = Cache(namespace(), type=cache.type, **options)
    cache.put("a", 1)
    other.put("a", 2)
    cache.clear()
    assert "a" not in cache
    assert other.get("a") == 2
    cache.put("a", 3)
    assert cache.get("a") == 3


def test_non_string_keys(cache):
    cache.put(42, "int")
    cache.put(b"raw", "bytes")
    cache.put(("t", 1), "tuple")
    assert cache.get(42) == "int"
    assert cache.get(b"raw") == "bytes"
    assert cache.get(("t", 1)) == "tuple"


def test_disabled_cache_never_stores(cache):
    disabled = Cache(cache.namespace, type=cache.type, enabled=False,
                     **({"data_dir": cache.backend.data_dir} if cache.type == "file" else {}))
    create = Counter("v")
    disabled.put("k", 1)
    assert "k" not in disabled and "k" not in cache
    assert disabled.get("k", createfunc=create) == "v"
    assert disabled.get("k", createfunc=create) == "v"
    assert create.calls == 2
    with pytest.raises(KeyError):
        disabled.get("k")


def test_unserializable_value_names_type_and_key(tmp_path):
    cache = Cache(namespace(), type="file", data_dir=str(tmp_path))
    with pytest.raises(SerializationError) as caught:
        cache.put("the-key", object())
    assert "the-key" in str(caught.value) and "object" in str(caught.value)


def test_pickle_serializer_when_configured(tmp_path):
    cache = Cache(namespace(), type="file", data_dir=str(tmp_path), serializer="pickle")
    cache.put("k", Counter)
    assert cache.get("k") is Counter


def test_corrupt_entry_is_a_miss(tmp_path, caplog):
    cache = Cache(namespace(), type="file", data_dir=str(tmp_path))
    cache.backend.set(cache._prefix + "k", b"\x07garbage")
    with caplog.at_level(logging.WARNING):
        assert "k" not in cache
        assert cache.get("k", createfunc=lambda: "fresh") == "fresh"
    assert cache.get("k") == "fresh"
    assert "unreadable" in caplog.text


def test_options_are_validated():
    with pytest.raises(ConfigurationError, match="expire"):
        Cache(namespace(), expire="soon")
    with pytest.raises(ConfigurationError, match="enabled"):
        Cache(namespace(), enabled="maybe")
    with pytest.raises(ConfigurationError, match="namespace"):
        Cache("")
    with pytest.raises(ConfigurationError, match="bogus"):
        Cache(namespace(), type="memory", bogus=1)
    with pytest.raises(ConfigurationError, match="data_dir"):
        Cache(namespace(), type="file")
    with pytest.raises(PluginNotFound, match="pip install beaker-core-redis") if _redis_missing() else _no_error():
        Cache(namespace(), type="ext:redis", url="redis://127.0.0.1:1")
    with pytest.raises(PluginNotFound, match="nosuchbackend"):
        Cache(namespace(), type="nosuchbackend")
    with pytest.raises(ConfigurationError):
        Cache(namespace()).get("k", createfunc=lambda: 1, bogus=True)


def _redis_missing():
    try:
        Registry().lookup("backend", "redis")
    except PluginNotFound:
        return True
    return False


class _no_error:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_memory_region_ignores_shared_data_dir(tmp_path):
    """Beaker configurations set data_dir once for all regions; a memory region must not reject it."""
    cache = Cache(namespace(), type="memory", data_dir=str(tmp_path), lock_dir=str(tmp_path / "locks"))
    cache.put("k", 1)
    assert cache.get("k") == 1


@pytest.mark.parametrize("options, lock_dir", [
    ({"data_dir": "data"}, "data/locks"),
    ({"data_dir": "data", "lock_dir": "elsewhere"}, "elsewhere"),
])
def test_the_file_lock_gets_the_caches_data_dir_and_lock_dir(tmp_path, options, lock_dir):
    """A memory cache with file locks (one creator per key across processes): the lock finds its directory from the
    cache's data_dir and lock_dir, which the memory backend itself does not take."""
    options = {name: str(tmp_path / value) for name, value in options.items()}
    cache = Cache(namespace(), type="memory", lock_type="file", **options)
    assert cache.get_or_create("k", lambda: "v") == "v"
    assert sorted(path.name for path in tmp_path.iterdir()) == [lock_dir.split("/")[0]]
    assert (tmp_path / lock_dir).is_dir()


# -- get_or_create: stampede protection and stale values -------------------------------------------------------

def test_threads_on_a_cold_key_create_once(tmp_path):
    cache = Cache(namespace(), type="file", data_dir=str(tmp_path))
    create = Counter("v")

    def slow_create():
        time.sleep(0.2)
        return create()

    results = run_in_threads(lambda index: cache.get_or_create("cold", slow_create, expire=60), 8)
    assert results == ["v"] * 8
    assert create.calls == 1


def test_stale_value_served_while_another_caller_recreates(fake_clock):
    cache = Cache(namespace(), expire=0.2)
    cache.put("k", "old")
    fake_clock.advance(0.3)
    recreating = threading.Event()
    release = threading.Event()

    def slow_create():
        recreating.set()
        release.wait(5)
        return "new"

    results = []
    creator = threading.Thread(target=lambda: results.append(cache.get_or_create("k", slow_create)))
    creator.start()
    assert recreating.wait(5)
    started = time.monotonic()
    assert cache.get_or_create("k", lambda: "other") == "old"
    assert time.monotonic() - started < 1
    release.set()
    creator.join()
    assert results == ["new"]
    assert cache.get("k") == "new"


def test_stale_value_of_an_older_generation_is_not_served(tmp_path):
    cache = Cache(namespace(), type="file", data_dir=str(tmp_path), expire=0.2)
    cache.put("k", "old")
    cache.clear()
    assert cache.get_or_create("k", lambda: "new") == "new"


def test_waiting_past_lock_timeout_creates_anyway(caplog):
    cache = Cache(namespace(), lock_timeout=0.2)
    lock = cache._lock("k")
    assert lock.acquire()
    try:
        with caplog.at_level(logging.WARNING):
            assert cache.get_or_create("k", lambda: "made") == "made"
    finally:
        lock.release()
    assert "waited" in caplog.text


# -- fail open -------------------------------------------------------------------------------------------------

class BrokenBackend(Backend):
    """A backend whose server is down: every call fails as a network backend's would."""

    name = "broken"

    def __init__(self, url="broken://nowhere"):
        self.url = url

    def _fail(self, *args, **kwargs):
        raise BackendError(f"broken backend at {self.url}: connection refused")

    get = get_many = set = add = delete = touch = incr = _fail


@pytest.fixture
def broken_registry():
    registry = Registry(load_entrypoints=False)
    registry.register("backend", "broken", BrokenBackend)
    return registry


def test_backend_down_raises_by_default(broken_registry):
    cache = Cache(namespace(), type="broken", registry=broken_registry)
    with pytest.raises(BackendError, match="broken://nowhere"):
        cache.get("k", createfunc=lambda: 1)
    with pytest.raises(BackendError):
        cache.put("k", 1)


def test_fail_open_computes_and_logs(broken_registry, caplog):
    cache = Cache(namespace(), type="broken", registry=broken_registry, fail_open="true")
    create = Counter("v")
    with caplog.at_level(logging.WARNING, logger="beaker_core.cache"):
        assert cache.get("k", createfunc=create) == "v"
        assert cache.get("k", createfunc=create) == "v"
        cache.put("k", 1)
        cache.remove_value("k")
        cache.clear()
        assert "k" not in cache
    assert create.calls == 2
    assert "connection refused" in caplog.text


def test_fail_open_logs_an_outage_once_per_interval(broken_registry, caplog, monkeypatch):
    cache = Cache(namespace(), type="broken", registry=broken_registry, fail_open=True)
    with caplog.at_level(logging.WARNING, logger="beaker_core.cache"):
        for _ in range(50):
            assert cache.get_or_create("k", lambda: "v") == "v"
    assert len(caplog.records) == 1  # not one line per call while the backend stays down
    caplog.clear()
    monkeypatch.setattr("beaker_core.cache.cache.FAIL_OPEN_LOG_INTERVAL", 0.0)
    cache._quiet_until = 0.0  # the interval is over
    with caplog.at_level(logging.WARNING, logger="beaker_core.cache"):
        cache.get_or_create("k", lambda: "v")
    assert len(caplog.records) == 1 and "49 more failures since the last report" in caplog.text


def test_fail_open_region_from_configuration(broken_registry, monkeypatch):
    monkeypatch.setattr("beaker_core.cache.cache.default_registry", lambda: broken_registry)
    region = f"r{uuid.uuid4().hex}"
    CacheManager(**parse_cache_config_options({
        "cache.regions": region, f"cache.{region}.type": "broken", f"cache.{region}.fail_open": "true"}))
    create = Counter()

    @cache_region(region)
    def compute(x):
        return create(x)

    assert compute(1) == ((1,), ())
    assert compute(1) == ((1,), ())
    assert create.calls == 2


# -- CacheManager and decorators -------------------------------------------------------------------------------

def manager(tmp_path, **extra):
    config = {
        "cache.type": "file",
        "cache.data_dir": str(tmp_path / "data"),
        "cache.lock_dir": str(tmp_path / "lock"),
        "cache.regions": "short_term, long_term",
        "cache.short_term.expire": "0.3",
        "cache.short_term.type": "memory",
        "cache.long_term.expire": "3600",
    }
    config.update(extra)
    return CacheManager(**parse_cache_config_options(config))


def test_manager_regions_and_caches(tmp_path):
    cm = manager(tmp_path)
    short = cm.get_cache_region("things", "short_term")
    long = cm.get_cache_region("things", "long_term")
    assert short.type == "memory" and short.expire == 0.3
    assert long.type == "file" and long.expire == 3600
    assert cm.get_cache("things") is cm.get_cache("things")
    with pytest.raises(BeakerError, match="not configured: nope"):
        cm.get_cache_region("things", "nope")


def test_cache_region_decorator_expires_and_invalidates(tmp_path, fake_clock):
    manager(tmp_path)
    create = Counter()

    @cache_region("short_term", "search")
    def search(term, limit=20):
        return create(term, limit)

    assert search("rabbits") == search("rabbits") == search("rabbits", limit=20) == search(term="rabbits")
    assert create.calls == 1
    search("rabbits", 10)
    assert create.calls == 2
    region_invalidate(search, "short_term", "search", "rabbits")
    search("rabbits")
    assert create.calls == 3
    fake_clock.advance(0.4)
    search("rabbits")
    assert create.calls == 4


def test_cache_region_works_before_configuration(tmp_path):
    region = f"late{uuid.uuid4().hex}"
    create = Counter()

    @cache_region(region)
    def compute(x):
        return create(x)

    with pytest.raises(BeakerError, match="not configured"):
        compute(1)
    CacheManager(**parse_cache_config_options({"cache.regions": region, f"cache.{region}.expire": "60"}))
    compute(1)
    compute(1)
    assert create.calls == 1


def test_region_invalidate_with_namespace_name(tmp_path):
    manager(tmp_path)
    ns = namespace()
    cache = Cache._get_cache(ns, cache_module.cache_regions["long_term"])
    cache.put("a 1", "v")
    region_invalidate(ns, "long_term", "a", 1)
    assert "a 1" not in cache


def test_cache_decorator_and_invalidate(tmp_path):
    cm = manager(tmp_path)
    create = Counter()

    @cm.cache("lookup", expire=60)
    def lookup(a, b=None):
        return create(a, b)

    lookup(1, b=2)
    lookup(1, 2)
    assert create.calls == 1
    cm.invalidate(lookup, "lookup", 1, 2, expire=60)
    lookup(1, 2)
    assert create.calls == 2


def test_keyword_only_and_var_arguments_are_part_of_the_key(tmp_path):
    cm = manager(tmp_path)
    create = Counter()

    @cm.cache()
    def variadic(*args, scale=1, **options):
        return create(*args, scale=scale, **options)

    assert variadic(1, 2, scale=3, z=1) != variadic(1, 2, scale=4, z=1)
    variadic(1, 2, z=1, scale=3)
    assert create.calls == 2


def test_methods_and_classmethods_leave_self_and_cls_out_of_the_key_as_beaker(tmp_path):
    manager(tmp_path)
    create = Counter()

    class Base:
        @classmethod
        @cache_region("long_term", "describe")
        def describe(cls, x):
            create()
            return f"{cls.__name__}:{x}"

        @cache_region("long_term")
        def double(self, x):
            create()
            return x * 2

    class Child(Base):
        pass

    assert Base.describe(1) == "Base:1"
    # the key is "describe 1" whatever the class, as in Beaker: a subclass gets the value its base cached
    assert Child.describe(1) == "Base:1"
    assert create.calls == 1
    assert Base.describe._arg_namespace == f"{__name__}|describe"
    region_invalidate(Child.describe, "long_term", "describe", 1)
    assert Child.describe(1) == "Child:1"
    assert create.calls == 2
    assert Base().double(2) == Base().double(2) == 4  # self is not part of the key, as in Beaker
    assert create.calls == 3


def test_long_keys_are_hashed_to_key_length(tmp_path):
    cm = manager(tmp_path, **{"cache.long_term.key_length": "150"})
    seen = []

    @cache_region("long_term")
    def echo(text):
        return text

    original_recreate = Cache.recreate

    def spy(self, key, creator, expire=None):
        seen.append(key)
        return original_recreate(self, key, creator, expire)

    Cache.recreate = spy
    try:
        assert echo("x" * 500) == "x" * 500
        assert echo("short") == "short"
    finally:
        Cache.recreate = original_recreate
    assert len(seen[0]) == 40 and seen[0] != "x" * 500  # sha1 hex digest
    assert seen[1] == "short"
    assert cm.regions["long_term"]["key_length"] == 150


def test_enabled_false_is_honoured_by_every_path(tmp_path):
    cm = manager(tmp_path, **{"cache.enabled": "false"})
    create = Counter()

    @cache_region("long_term")
    def by_region(x):
        return create(x)

    @cm.cache("n")
    def by_manager(x):
        return create(x)

    for _ in range(2):
        by_region(1)
        by_manager(1)
    assert create.calls == 4
    cache = cm.get_cache("direct")
    cache.put("k", 1)
    assert "k" not in cache
    assert cm.get_cache_region("x", "long_term").enabled is False


def test_region_enabled_false_only_for_that_region(tmp_path):
    manager(tmp_path, **{"cache.short_term.enabled": "false"})
    create = Counter()

    @cache_region("short_term")
    def off(x):
        return create(x)

    @cache_region("long_term")
    def on(x):
        return create(x)

    off(1), off(1), on(1), on(1)
    assert create.calls == 3


def test_wrong_region_option_type_names_the_key():
    with pytest.raises(ConfigurationError, match="cache.short_term.expire"):
        parse_cache_config_options({"cache.regions": "short_term", "cache.short_term.expire": "soon"})


def test_cache_middleware_puts_manager_in_environ(tmp_path):
    seen = {}

    def app(environ, start_response):
        cache = environ["beaker.cache"].get_cache("mw")
        seen["value"] = cache.get("k", createfunc=lambda: "made")
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = CacheMiddleware(app, {"cache.type": "file", "cache.data_dir": str(tmp_path)})
    assert wrapped({}, lambda status, headers: None) == [b"ok"]
    assert seen["value"] == "made"
    assert isinstance(wrapped.cache_manager, CacheManager)
    keyword = CacheMiddleware(app, type="memory", expire="60")
    assert keyword.cache_manager.kwargs["expire"] == 60


def test_memory_backend_is_shared_like_beakers_namespaces():
    ns = namespace()
    Cache(ns).put("k", 1)
    assert Cache(ns).get("k") == 1
    assert isinstance(Cache(ns).backend, MemoryBackend)


# -- the in-process reads capability -------------------------------------------------------------------------------

class PlainObjectStore(Backend):
    """A process-local store of Python objects without a reader(): the cache reads it through get()."""

    name = "plain-objects"
    stores_objects = True
    shared = False

    def __init__(self):
        self.data = {}
        self.reads = 0

    def get(self, key):
        self.reads += 1
        return self.data.get(key)

    def set(self, key, value, ttl=None):
        self.data[key] = value

    def delete(self, key):
        return self.data.pop(key, None) is not None

    def touch(self, key, ttl):
        return key in self.data

    def keys(self, prefix=""):
        return iter([key for key in list(self.data) if key.startswith(prefix)])


class CountingMemory(MemoryBackend):
    def __init__(self, **options):
        super().__init__(**options)
        self.reads = 0

    def get(self, key):
        self.reads += 1
        return super().get(key)


def test_only_a_backend_that_offers_a_reader_is_read_around_get():
    assert Backend().reader() is None
    assert MemoryBackend().reader() is not None
    assert CountingMemory().reader() is None  # it changed get(): it sees every read


@pytest.mark.parametrize("backend_class", [PlainObjectStore, CountingMemory])
def test_a_process_local_store_without_reader_answers_hits_through_get(backend_class, fake_clock):
    store = backend_class()
    registry = Registry(load_entrypoints=False)
    registry.register("backend", "objects", lambda: store)
    cache = Cache(namespace(), type="objects", expire=60, registry=registry)
    create = Counter("v")
    assert cache.get_or_create("k", create) == "v"
    reads = store.reads
    assert cache.get("k") == cache.get_or_create("k", create) == "v" and "k" in cache
    assert store.reads == reads + 3 and create.calls == 1
    fake_clock.advance(61)
    assert "k" not in cache
    assert cache.get_or_create("k", create) == "v" and create.calls == 2
    assert "k" in Cache(cache.namespace, type="objects", registry=registry, starttime=fake_clock() - 1)
    assert "k" not in Cache(cache.namespace, type="objects", registry=registry, starttime=fake_clock() + 1)
