"""``CacheManager``: Beaker's entry point to caching, built from a configuration.

``CacheManager(**parse_cache_config_options(config))`` keeps one :class:`~beaker_core.cache.cache.Cache` per
namespace and options, registers the configuration's regions in :data:`beaker_core.util.cache_regions`, and offers
the decorators of :mod:`beaker_core.cache.regions` as methods.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from ..exceptions import BeakerError
from ..util import cache_regions, coerce_bool, coerce_cache_params
from .cache import CACHE_OPTIONS, Cache, frozen_options
from .keys import spec_of
from .regions import cache_decorator, cache_region, region_invalidate

# keyword arguments of CacheManager.invalidate that are cache options, not the call's (Beaker's documentation
# passes them)
_INVALIDATE_OPTIONS = CACHE_OPTIONS | {"type", "data_dir", "lock_dir", "url"}


class CacheManager:
    """Beaker's ``CacheManager``: ``CacheManager(**parse_cache_config_options(config))``."""

    def __init__(self, **kwargs: Any):
        self.kwargs = dict(kwargs)
        regions = self.kwargs.pop("cache_regions", None) or {}
        self.regions = {name: coerce_cache_params(dict(options), prefix=f"cache.{name}.")
                        for name, options in regions.items()}
        cache_regions.update(self.regions)
        self.enabled = coerce_bool("cache.enabled", self.kwargs.pop("enabled", True))
        self.kwargs.pop("regions", None)
        self._caches: dict[Any, Cache] = {}
        self._lock = threading.Lock()

    def get_cache(self, name: str, **kwargs: Any) -> Cache:
        options = {**self.kwargs, **kwargs}
        options.setdefault("enabled", self.enabled)
        key = (name, frozen_options(options))
        cache = self._caches.get(key)
        if cache is None:
            with self._lock:
                cache = self._caches.get(key)
                if cache is None:
                    cache = self._caches[key] = Cache(name, **options)
        return cache

    def get_cache_region(self, name: str, region: str) -> Cache:
        if region not in self.regions:
            raise BeakerError(f"Cache region not configured: {region}")
        return self.get_cache(name, **self.regions[region])

    def region(self, region: str, *args: Any) -> Callable:
        """Decorate a function to cache its results in ``region`` (see :func:`cache_region`)."""
        return cache_region(region, *args)

    def region_invalidate(self, namespace: Any, region: str, *args: Any, **kwargs: Any) -> None:
        return region_invalidate(namespace, region, *args, **kwargs)

    def cache(self, *args: Any, **kwargs: Any) -> Callable:
        """Decorate a function to cache its results in this manager's cache.

        Positional arguments become part of every key; keyword arguments (``expire``, ``type``...) are cache
        options, as in Beaker: ``@cache.cache('lookup', expire=60)``.
        """
        return cache_decorator(args, manager=self, options=kwargs, region=None)

    def invalidate(self, func: Callable, *args: Any, **kwargs: Any) -> None:
        """Remove the value cached by a ``@cache.cache`` function for these arguments.

        As in Beaker, ``args`` are the decorator's arguments followed by the call's; keyword arguments that are cache
        options (``expire=``, ``type=``, as Beaker's documentation passes them) are ignored, the others are the call's.
        """
        spec = spec_of(func)
        if spec.region is not None:
            return region_invalidate(func, spec.region, *args, **kwargs)
        call_kwargs = {key: value for key, value in kwargs.items()
                       if key in spec.signature.parameters or key not in _INVALIDATE_OPTIONS}
        key_length = spec.key_length(None)
        if "key_length" in kwargs and "key_length" not in call_kwargs:
            key_length = coerce_cache_params({"key_length": kwargs["key_length"]})["key_length"]
        cache = self.get_cache(spec.namespace, **spec.options)
        cache.remove_value(spec.invalidation_key(args, call_kwargs, key_length, getattr(func, "__self__", None)))
