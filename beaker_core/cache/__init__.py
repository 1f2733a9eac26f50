"""Caching with Beaker's API: ``Cache``, ``CacheManager``, ``cache_region``, ``region_invalidate``, ``@cache.cache``.

This module is the face of the caching package: it re-exports the public names of its modules, one concept each:

* :mod:`~beaker_core.cache.cache`: ``Cache``, a namespace in one backend, with get-or-create under a lock, stale
  values, generations and fail-open;
* :mod:`~beaker_core.cache.manager`: ``CacheManager``, built from a configuration;
* :mod:`~beaker_core.cache.regions`: ``cache_region``, ``region_invalidate`` and the decorators;
* :mod:`~beaker_core.cache.keys`: how a decorated call becomes a key (``KeySpec``, Beaker's key-length rule);
* :mod:`~beaker_core.cache.envelope`: the stored envelope and its freshness rule;
* :mod:`~beaker_core.cache.backend_classes`: Beaker's ``clsmap``.

Beaker's ``CacheMiddleware`` is in :mod:`beaker_core.middleware`, where Beaker has it.
"""
from __future__ import annotations

from ..util import cache_regions
from .backend_classes import BackendClasses, clsmap
from .cache import FAIL_OPEN_LOG_INTERVAL, Cache, cache_managers
from .keys import DEFAULT_KEY_LENGTH, KeySpec, fit_key, spec_of
from .manager import CacheManager
from .regions import cache_region, region_invalidate

__all__ = ["Cache", "CacheManager", "cache_region", "region_invalidate", "cache_regions", "cache_managers", "clsmap",
           "BackendClasses", "FAIL_OPEN_LOG_INTERVAL", "DEFAULT_KEY_LENGTH", "KeySpec", "fit_key", "spec_of"]
