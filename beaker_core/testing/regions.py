"""Beaker's decorators and ``CacheManager`` through the backend under test.

Configuration goes through :func:`~beaker_core.util.parse_cache_config_options`, as a Beaker application does it.
Region names and decorator arguments carry the test's random prefix: region options are process-wide (Beaker's
``cache_regions``) and a shared server keeps values between runs, so no two tests may meet there. The
cross-process test exists only for a shared backend (``@requires("shared")``).
"""
from __future__ import annotations

import os
from typing import Any

import pytest

from ..cache import CacheManager, cache_region, cache_regions, region_invalidate
from ..exceptions import BeakerError
from ..util import parse_cache_config_options
from . import _workers
from .backend import requires
from .caching import CacheFixtures


class Calls:
    """Records calls of a decorated function's body."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> str:
        self.count += 1
        return f"{'|'.join(map(str, args))} #{self.count}"


class RegionFixtures(CacheFixtures):
    @pytest.fixture
    def region_names(self, prefix):
        """Two region names for this test: ``short`` and ``long``; forgotten again when the test ends."""
        tag = prefix.replace(":", "")
        names = {"short": f"short_{tag}", "long": f"long_{tag}"}
        yield names
        for name in names.values():
            cache_regions.pop(name, None)

    def base_config(self, backend_options: dict[str, Any], regions: dict[str, Any]) -> dict[str, Any]:
        """Beaker-style configuration keys: ``cache.type``, the backend's options, and ``regions`` (name -> expire).

        As in Beaker, a region inherits only ``type``, ``data_dir``, ``lock_dir``, ``expire``, ``enabled`` and
        ``key_length`` from the top level, so the other backend options (``url``...) are repeated per region.
        """
        config = {"cache.type": self.backend, "cache.regions": ", ".join(regions)}
        for option, value in backend_options.items():
            config[f"cache.{option}"] = value
            config.update({f"cache.{region}.{option}": value for region in regions})
        config.update({f"cache.{region}.expire": str(expire) for region, expire in regions.items()})
        return config

    @pytest.fixture
    def cache_config(self, backend_options, region_names) -> dict[str, Any]:
        """A Beaker-style configuration: ``cache.type``, the backend's options, two regions."""
        return self.base_config(backend_options, {region_names["short"]: self.short_ttl, region_names["long"]: 3600})

    @pytest.fixture
    def manager(self, cache_config) -> CacheManager:
        return CacheManager(**parse_cache_config_options(cache_config))


class RegionConformanceTests(RegionFixtures):
    """``@cache_region``, ``region_invalidate``, ``@cache.cache``, ``invalidate`` and their keys."""

    def test_cache_region_declared_before_configuration(self, cache_config, region_names, prefix):
        body = Calls()

        @cache_region(region_names["short"], prefix)
        def load(term, limit):
            return body(term, limit)

        with pytest.raises(BeakerError):
            load("x", 1)  # region not configured yet
        CacheManager(**parse_cache_config_options(cache_config))
        assert load("rabbits", 20) == "rabbits|20 #1"
        assert load("rabbits", 20) == "rabbits|20 #1"
        assert load("rabbits", 21) == "rabbits|21 #2"
        assert body.count == 2

    def test_regions_keep_their_own_expiry(self, manager, region_names, prefix):
        short_body, long_body = Calls(), Calls()

        @cache_region(region_names["short"], prefix)
        def short(arg):
            return short_body(arg)

        @cache_region(region_names["long"], prefix)
        def long(arg):
            return long_body(arg)

        assert short(1) == short(1) == "1 #1"
        assert long(1) == long(1) == "1 #1"
        self.wait_past_in_core(self.short_ttl)
        assert short(1) == "1 #2"
        assert long(1) == "1 #1"

    def test_region_invalidate(self, manager, region_names, prefix):
        body = Calls()

        @cache_region(region_names["long"], prefix, "search")
        def search(term, page):
            return body(term, page)

        assert search("cats", 1) == "cats|1 #1"
        assert search("dogs", 1) == "dogs|1 #2"
        region_invalidate(search, region_names["long"], prefix, "search", "cats", 1)
        assert search("cats", 1) == "cats|1 #3"
        assert search("dogs", 1) == "dogs|1 #2"
        region_invalidate(search, None, prefix, "search", "dogs", 1)  # the function knows its region
        manager.region_invalidate(search, region_names["long"], prefix, "search", "cats", 1)
        assert search("dogs", 1) == "dogs|1 #4"
        assert search("cats", 1) == "cats|1 #5"

    def test_manager_region_decorator_and_get_cache_region(self, manager, region_names, prefix):
        body = Calls()

        @manager.region(region_names["long"], prefix)
        def load(arg):
            return body(arg)

        assert load("a") == load("a") == "a #1"
        cache = manager.get_cache_region(prefix + "direct", region_names["short"])
        cache.put("k", "v")
        assert cache.get("k") == "v"
        self.wait_past_in_core(self.short_ttl)
        assert "k" not in cache  # the region's expire applies
        with pytest.raises(BeakerError):
            manager.get_cache_region(prefix + "direct", prefix + "no_such_region")

    def test_manager_cache_decorator_and_invalidate(self, manager, prefix):
        body = Calls()
        ttl = self.short_ttl

        @manager.cache(prefix, "lookup", expire=ttl)
        def lookup(term):
            return body(term)

        assert lookup("a") == lookup("a") == "a #1"
        assert lookup("b") == "b #2"
        manager.invalidate(lookup, prefix, "lookup", "a")
        assert lookup("a") == "a #3"
        assert lookup("b") == "b #2"
        manager.invalidate(lookup, prefix, "lookup", "b", expire=ttl)  # Beaker's documented form
        assert lookup("b") == "b #4"
        self.wait_past_in_core(ttl)
        assert lookup("a") == "a #5"

    def test_manager_get_cache_uses_the_configured_backend(self, manager, prefix):
        cache = manager.get_cache(prefix + "plain")
        cache.put("k", b"bytes")
        assert cache.get("k") == b"bytes"
        assert cache.backend.name == manager.get_cache(prefix + "other").backend.name

    def test_keyword_arguments_are_part_of_the_key(self, manager, region_names, prefix):
        body = Calls()

        @cache_region(region_names["long"], prefix)
        def page(term, number=1, size=10):
            return body(term, number, size)

        assert page("a", 2) == "a|2|10 #1"
        assert page("a", number=2) == "a|2|10 #1"
        assert page(term="a", number=2, size=10) == "a|2|10 #1"
        assert page("a", size=20, number=2) == "a|2|20 #2"
        assert page("a", number=3) == "a|3|10 #3"
        assert page("a") == "a|1|10 #4"
        region_invalidate(page, region_names["long"], prefix, "a", number=2)
        assert page("a", 2) == "a|2|10 #5"

    def test_cls_is_not_part_of_the_key(self, manager, region_names, prefix):
        body = Calls()

        class Base:
            @classmethod
            @cache_region(region_names["long"], prefix)
            def describe(cls, arg):
                return body(cls.__name__, arg)

        class Child(Base):
            pass

        assert Base.describe(1) == "Base|1 #1"
        assert Child.describe(1) == "Base|1 #1"  # as in Beaker: the class does not select the value
        region_invalidate(Child.describe, region_names["long"], prefix, 1)
        assert Child.describe(1) == "Child|1 #2"
        assert Base.describe(1) == "Child|1 #2"

    def test_self_is_not_part_of_the_key(self, manager, region_names, prefix):
        body = Calls()

        class Repository:
            @cache_region(region_names["long"], prefix)
            def find(self, arg):
                return body(arg)

        assert Repository().find(1) == "1 #1"
        assert Repository().find(1) == "1 #1"  # as in Beaker: the instance does not select the value

    def test_long_arguments_are_hashed_into_distinct_keys(self, manager, region_names, prefix):
        body = Calls()

        @cache_region(region_names["long"], prefix)
        def load(text):
            return body(len(text), text[-1])

        first, second = "z" * 500 + "1", "z" * 500 + "2"
        assert load(first) == "501|1 #1"
        assert load(second) == "501|2 #2"
        assert load(first) == "501|1 #1"
        region_invalidate(load, region_names["long"], prefix, first)
        assert load(first) == "501|1 #3"

    def test_disabled_configuration_caches_nothing(self, cache_config, region_names, prefix):
        manager = CacheManager(**parse_cache_config_options({**cache_config, "cache.enabled": "false"}))
        region_body, manager_body = Calls(), Calls()

        @cache_region(region_names["long"], prefix)
        def by_region(arg):
            return region_body(arg)

        @manager.cache(prefix, expire=3600)
        def by_manager(arg):
            return manager_body(arg)

        assert [by_region(1), by_region(1)] == ["1 #1", "1 #2"]
        assert [by_manager(1), by_manager(1)] == ["1 #1", "1 #2"]
        region_invalidate(by_region, region_names["long"], prefix, 1)  # still allowed
        cache = manager.get_cache(prefix + "plain")
        cache.put("k", "v")
        assert "k" not in cache

    def test_one_disabled_region_leaves_the_others_on(self, cache_config, region_names, prefix):
        CacheManager(**parse_cache_config_options({**cache_config, f"cache.{region_names['short']}.enabled": "no"}))
        short_body, long_body = Calls(), Calls()

        @cache_region(region_names["short"], prefix)
        def short(arg):
            return short_body(arg)

        @cache_region(region_names["long"], prefix)
        def long(arg):
            return long_body(arg)

        assert [short(1), short(1)] == ["1 #1", "1 #2"]
        assert [long(1), long(1)] == ["1 #1", "1 #1"]

    @pytest.mark.slow
    @requires("shared")
    def test_decorated_function_runs_once_for_eight_processes(self, make_cache, backend_options, prefix, tmp_path):
        config = self.base_config(backend_options, {_workers.WORKER_REGION: 3600})
        marker_dir = tmp_path / "created"
        marker_dir.mkdir()
        args = (config, prefix + "cold", str(marker_dir))
        results = _workers.run_in_processes(_workers.region_function, [args] * 8, synchronized=True)
        assert len(os.listdir(marker_dir)) == 1, "the decorated function's body ran more than once"
        assert len(set(results)) == 1
