"""Beaker's ``Cache`` object through the backend under test, in one process and across processes.

Each test uses its own namespace (built from the random key prefix), so nothing here needs an empty store. The
decorators and ``CacheManager`` are checked in :mod:`beaker_core.testing.regions`. The cross-process tests exist only
for a shared backend (``@requires("shared")``): a process-local store has nothing to share.
"""
from __future__ import annotations

import datetime
import decimal
import os
import threading
import time
import uuid
from typing import Any

import pytest

from ..cache import Cache
from . import _workers
from .backend import ConformanceBase, requires
from .concurrency import run_in_threads


class CacheFixtures(ConformanceBase):
    @pytest.fixture
    def cache_kwargs(self, backend_options) -> dict[str, Any]:
        """What ``Cache(namespace, **cache_kwargs)`` needs to reach the backend under test (picklable)."""
        return {"type": self.backend, **backend_options}

    @pytest.fixture
    def namespace(self, prefix) -> str:
        return prefix + "namespace"

    @pytest.fixture
    def make_cache(self, cache_kwargs, namespace):
        def make(name: str | None = None, **options: Any) -> Cache:
            return Cache(name or namespace, **{**cache_kwargs, **options})
        return make


class Creator:
    """A creator function that counts its calls (thread-safe) and returns a new value each time."""

    def __init__(self, delay: float = 0.0, result: Any = "value"):
        self.calls = 0
        self.delay = delay
        self.result = result
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
            number = self.calls
        if self.delay:
            time.sleep(self.delay)
        return f"{self.result} {number}" if self.result is not None else None


class CachingConformanceTests(CacheFixtures):
    """Beaker's ``Cache``: get/put/remove/clear/contains, createfunc, expiretime, get_or_create."""

    def test_put_get_and_the_dict_interface(self, make_cache):
        cache = make_cache()
        with pytest.raises(KeyError):
            cache.get("k")
        assert "k" not in cache and not cache.has_key("k")
        cache.put("k", "v")
        assert cache.get("k") == "v" and cache.get_value("k") == "v" and cache["k"] == "v"
        assert "k" in cache and cache.has_key("k")
        cache.set_value("k", "v2")
        assert cache["k"] == "v2"
        cache["other"] = [1, 2]
        assert cache.get("other") == [1, 2]
        cache.remove_value("k")
        assert "k" not in cache
        del cache["other"]
        with pytest.raises(KeyError):
            cache["other"]
        cache.remove_value("never-there")  # no error, as in Beaker
        cache.put("third", 3)
        cache.remove("third")
        assert "third" not in cache

    def test_values_keep_their_type(self, make_cache):
        cache = make_cache()
        values = {
            "str": "héllo 🔑", "int": 10 ** 20, "float": 1.5, "bool": True, "list": [1, "a", None],
            "dict": {"a": {"b": [1, 2]}}, "tuple": (1, "two", (3,)), "set": {1, 2, 3},
            "bytes": bytes(range(256)), "datetime": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
            "date": datetime.date(2024, 5, 6), "decimal": decimal.Decimal("1.10"), "uuid": uuid.UUID(int=7),
            "int_keys": {1: "one", 2: "two"}, "empty": "",
        }
        for key, value in values.items():
            cache.put(key, value)
        for key, value in values.items():
            stored = cache.get(key)
            assert stored == value and type(stored) is type(value), key

    def test_none_is_a_value(self, make_cache):
        cache = make_cache()
        cache.put("nothing", None)
        assert "nothing" in cache
        assert cache.get("nothing") is None
        creator = Creator(result=None)
        assert cache.get("made", createfunc=creator) is None
        assert cache.get("made", createfunc=creator) is None
        assert creator.calls == 1

    def test_createfunc_runs_only_on_a_miss(self, make_cache):
        cache = make_cache()
        creator = Creator()
        assert cache.get("k", createfunc=creator) == "value 1"
        assert cache.get("k", createfunc=creator) == "value 1"
        assert cache.get_value("k", createfunc=creator) == "value 1"
        assert cache["k"] == "value 1"
        assert creator.calls == 1

    def test_expiretime_on_get_recreates_after_expiry(self, make_cache):
        cache = make_cache()
        creator = Creator()
        ttl = self.short_ttl
        assert cache.get("k", createfunc=creator, expiretime=ttl) == "value 1"
        assert cache.get("k", createfunc=creator, expiretime=ttl) == "value 1"
        self.wait_past_in_core(ttl)
        assert cache.get("k", createfunc=creator, expiretime=ttl) == "value 2"
        assert creator.calls == 2

    def test_cache_expire_applies_to_put(self, make_cache):
        ttl = self.short_ttl
        cache = make_cache(expire=ttl)
        cache.put("default", 1)
        cache.put("longer", 2, expiretime=3600)
        assert cache.get("default") == 1
        self.wait_past_in_core(ttl)
        assert "default" not in cache
        with pytest.raises(KeyError):
            cache.get("default")
        assert cache.get("longer") == 2

    def test_put_expiretime(self, make_cache):
        cache = make_cache()
        ttl = self.short_ttl
        cache.put("k", "v", expiretime=ttl)
        assert cache.get("k") == "v"
        self.wait_past_in_core(ttl)
        assert "k" not in cache

    def test_clear_invalidates_only_its_namespace(self, make_cache, namespace):
        cache, other = make_cache(), make_cache(namespace + "-other")
        cache.put("a", 1)
        cache.put("b", 2)
        other.put("a", "kept")
        cache.clear()
        assert "a" not in cache and "b" not in cache
        assert other.get("a") == "kept"
        cache.put("a", 3)  # usable again after a clear
        assert cache.get("a") == 3

    def test_clear_is_seen_by_another_cache_object(self, make_cache):
        writer, reader = make_cache(), make_cache()
        writer.put("k", "v")
        assert reader.get("k") == "v"
        reader.clear()
        assert "k" not in writer

    def test_namespaces_and_keys_do_not_collide(self, make_cache, namespace):
        joined, split = make_cache(namespace + ":a"), make_cache(namespace)
        joined.put("b", "namespace ends in a")
        split.put("a:b", "key starts with a")
        assert joined.get("b") == "namespace ends in a"
        assert split.get("a:b") == "key starts with a"

    def test_odd_and_long_keys(self, make_cache):
        cache = make_cache(key_length=40)
        keys = ["with space", "new\nline", "nul\x00", "../../x", "ключ 🔑", "K" * 3000, "k" * 3000,
                "y" * 300 + "1", "y" * 300 + "2"]
        for index, key in enumerate(keys):
            cache.put(key, index)
        assert [cache.get(key) for key in keys] == list(range(len(keys)))

    def test_enabled_false_caches_nothing(self, make_cache):
        cache = make_cache(enabled=False)
        cache.put("k", "v")
        assert "k" not in cache
        with pytest.raises(KeyError):
            cache.get("k")
        creator = Creator()
        assert cache.get("k", createfunc=creator) == "value 1"
        assert cache.get("k", createfunc=creator) == "value 2"
        assert cache.get_or_create("k", creator) == "value 3"
        assert make_cache(enabled="false").enabled is False  # configuration strings are understood

    def test_get_or_create_runs_the_creator_once_for_eight_threads(self, make_cache):
        cache = make_cache()
        creator = Creator(delay=0.3)
        results = run_in_threads(lambda index: cache.get_or_create("cold", creator), 8)
        assert creator.calls == 1
        assert results == ["value 1"] * 8

    def test_stale_value_is_served_while_another_caller_recreates_it(self, make_cache):
        ttl = self.short_ttl
        cache = make_cache(expire=ttl, stale_ttl=60)
        cache.put("k", "old")
        self.wait_past_in_core(ttl)
        creating, finish = threading.Event(), threading.Event()

        def slow_creator() -> str:
            creating.set()
            finish.wait(30)
            return "new"

        thread = threading.Thread(target=cache.get_or_create, args=("k", slow_creator))
        thread.start()
        try:
            assert creating.wait(30), "the first caller never started to recreate the value"
            other = Creator()
            assert cache.get_or_create("k", other) == "old"
            assert other.calls == 0
        finally:
            finish.set()
            thread.join(30)
        assert cache.get("k") == "new"

    # -- across processes ------------------------------------------------------------------------------------------

    @pytest.mark.slow
    @requires("shared")
    def test_get_or_create_runs_the_creator_once_for_eight_processes(self, make_cache, cache_kwargs, namespace,
                                                                      tmp_path):
        marker_dir = tmp_path / "created"
        marker_dir.mkdir()
        args = (cache_kwargs, namespace, "cold", str(marker_dir))
        results = _workers.run_in_processes(_workers.cache_get_or_create, [args] * 8, synchronized=True)
        assert len(os.listdir(marker_dir)) == 1, "the creator ran more than once"
        assert len(set(results)) == 1
        assert make_cache().get("cold") == results[0]

    @pytest.mark.slow
    @requires("shared")
    def test_values_and_clear_cross_processes(self, make_cache, cache_kwargs, namespace):
        cache = make_cache()
        cache.put("mine", "from the parent")
        workers = _workers.Workers()
        workers.start(_workers.cache_lookup, cache_kwargs, namespace, "mine")
        workers.start(_workers.cache_put, cache_kwargs, namespace, "theirs", {"from": "a child"})
        assert workers.results() == ["from the parent", None]
        assert cache.get("theirs") == {"from": "a child"}

        _workers.run_in_processes(_workers.cache_clear, [(cache_kwargs, namespace)])
        assert "mine" not in cache and "theirs" not in cache  # the child's clear is seen here

        cache.put("after", 1)
        assert _workers.run_in_processes(_workers.cache_lookup, [(cache_kwargs, namespace, "after")]) == [1]
        cache.clear()
        assert _workers.run_in_processes(_workers.cache_lookup, [(cache_kwargs, namespace, "after")]) == [
            "<missing>"]
