"""Cache regions and the decorators: ``cache_region``, ``region_invalidate``, and the decorator behind
``@cache.cache`` / ``@cache.region`` of a :class:`~beaker_core.cache.manager.CacheManager`.

A region is a named set of cache options in :data:`beaker_core.util.cache_regions` (Beaker's module-level
``cache_regions``), filled by :func:`~beaker_core.util.parse_cache_config_options` and by each ``CacheManager``.
Its functions use the process's shared :class:`~beaker_core.cache.cache.Cache` objects (``Cache.shared``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from ..exceptions import BeakerError, ConfigurationError
from ..util import cache_regions, sha1
from .cache import MISS, Cache
from .keys import DEFAULT_KEY_LENGTH, KeySpec, fit_key, spec_of


def cache_decorator(deco_args: tuple, *, manager: Any, options: Mapping[str, Any], region: str | None) -> Callable:
    """The decorator of ``@cache_region(region, *deco_args)`` (``manager`` None), or of
    ``@manager.cache(*deco_args, **options)`` (``region`` None)."""
    def decorate(func: Callable) -> Callable:
        spec = KeySpec(func, deco_args, region, options)
        # (cache, key_length), resolved on the first call so that decorating may precede configuration
        resolved: list[Any] = [None, DEFAULT_KEY_LENGTH]

        def resolve() -> Cache | None:
            if region is not None:
                options_of_region = cache_regions.get(region)
                if options_of_region is None:
                    raise BeakerError(f"Cache region not configured: {region}")
                if not options_of_region.get("enabled", True):
                    return None
                resolved[1] = spec.key_length(options_of_region)
                resolved[0] = Cache.shared(spec.namespace, options_of_region)
            else:
                if not manager.enabled or not spec.options.get("enabled", True):
                    return None
                resolved[1] = spec.key_length(None)
                resolved[0] = manager.get_cache(spec.namespace, **spec.options)
            return resolved[0]

        # calls passing exactly the positional parameters build their key inline (the same key spec.key builds)
        fast_count = spec.positional_count if spec.simple and not spec.skip_self else -1
        leading_parts = spec.deco_args
        namespace_length = len(spec.namespace)

        @functools.wraps(func)
        def cached(*args: Any, **kwargs: Any) -> Any:
            cache = resolved[0] or resolve()
            if cache is None or not cache.enabled:
                return func(*args, **kwargs)
            if len(args) == fast_count and not kwargs:
                key = " ".join((*leading_parts, *map(str, args)))
                if len(key) + namespace_length > resolved[1]:
                    key = sha1(key)
            else:
                key = spec.key(args, kwargs, resolved[1])
            # Cache.get_or_create, inlined
            if cache.direct:
                value = cache.lookup(key)
                if value is not MISS:
                    return value
            return cache.recreate(key, lambda: func(*args, **kwargs), None)

        cached._beaker_spec = spec
        cached._arg_namespace = spec.namespace
        if region is not None:
            cached._arg_region = region
        return cached

    return decorate


def cache_region(region: str, *args: Any) -> Callable:
    """Decorate a function to cache its results in a configured region (Beaker's ``cache_region``).

    The region is looked up on the first call, so the decorator may run before the configuration is loaded::

        @cache_region('short_term', 'search')
        def search(term, limit=20): ...
    """
    if not isinstance(region, str):
        raise ConfigurationError(f"cache_region() takes a region name first, not {region!r}")
    return cache_decorator(args, manager=None, options={}, region=region)


def region_invalidate(namespace: Any, region: str | None, *args: Any, **kwargs: Any) -> None:
    """Remove the value a ``@cache_region`` function cached for these arguments (Beaker's ``region_invalidate``).

    ``namespace`` is the decorated function (or a bound method of it; for a classmethod, the class it is bound to
    selects the key); ``args`` are the decorator's arguments followed by the call's, as in Beaker.
    """
    if isinstance(namespace, str):
        # Beaker's form with a namespace name: the key is the arguments joined by spaces
        if not region:
            raise BeakerError("region_invalidate() needs a region when given a namespace name")
        options = region_options(region)
        key = fit_key(" ".join(map(str, args)), namespace, int(options.get("key_length") or DEFAULT_KEY_LENGTH))
        Cache.shared(namespace, options).remove_value(key)
        return
    bound_to = getattr(namespace, "__self__", None)
    spec = spec_of(namespace)
    options = region_options(region or spec.region)
    cache = Cache.shared(spec.namespace, options)
    cache.remove_value(spec.invalidation_key(args, kwargs, spec.key_length(options), bound_to))


def region_options(region: str | None) -> dict[str, Any]:
    """The options of a configured region; BeakerError when ``region`` is empty or not configured."""
    if not region:
        raise BeakerError("Region or callable function namespace is required")
    options = cache_regions.get(region)
    if options is None:
        raise BeakerError(f"Cache region not configured: {region}")
    return options
