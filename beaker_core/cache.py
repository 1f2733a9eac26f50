"""Caching with Beaker's API: ``Cache``, ``CacheManager``, ``cache_region``, ``region_invalidate``, ``@cache.cache``.

Under the Beaker surface sits one primitive, :meth:`Cache.get_or_create`:

* **one creator per key**: a miss takes the key's lock (the backend's preferred lock: a file lock for the file
  backend, a redis lock for redis), checks again, and only then runs the creator, so eight processes asking for one
  cold key run it once;
* **stale while revalidate**: an expired value stays in the backend a while longer (``stale_ttl``, by default as
  long again as ``expire``); while one caller recreates it, the others get the stale value instead of waiting;
* **generations**: ``Cache.clear()`` does not enumerate keys. It moves forward a generation counter stored in the
  backend (a millisecond timestamp, so that a counter the store lost restarts past every value it had); every
  value carries the generation it was created in, and a value from an older generation is a miss. The counter is
  read in the same round trip as the value (``get_many``), so an invalidation in one process is seen by every
  other process on its next call. A process-local backend (memory) has no other process to tell, so there
  ``clear()`` deletes the namespace's keys and reads cost a single lookup;
* **fail open**: with ``fail_open = true`` a backend error on read or write is logged and the value is computed
  as if there were no cache.

Values are stored as an envelope: ``(value, created, expire, generation)``. Backends that keep Python objects
(memory) store that tuple as it is, so a hit costs no decoding; other backends get a 25-byte binary header followed
by the serializer's bytes.
"""
from __future__ import annotations

import functools
import logging
import struct
import threading
import time
import warnings
from typing import Any, Callable, Iterator, Mapping

from . import clock
from .exceptions import BackendError, BeakerError, ConfigurationError, PluginNotFound, SerializationError
from .backends.memory import MemoryBackend
from .keys import DEFAULT_KEY_LENGTH, KeySpec, fit_key, spec_of
from .registry import Registry, default_registry
from .util import cache_regions, coerce_bool, coerce_cache_params, coerce_expire, fit_options, \
    parse_cache_config_options, sha1

log = logging.getLogger(__name__)

__all__ = ["Cache", "CacheManager", "CacheMiddleware", "cache_region", "region_invalidate", "cache_regions",
           "cache_managers", "clsmap"]

#: shared Cache objects of the module-level decorators, by namespace and options (Beaker's name)
cache_managers: dict[Any, "Cache"] = {}
_cache_managers_lock = threading.Lock()


class BackendClasses(Mapping):
    """Beaker's ``clsmap``: backend name (or alias, ``ext:redis``...) -> backend class, read-only, answered by the
    plugin registry, so it lists whatever is installed. A name nothing provides is a KeyError."""

    def __init__(self, registry: Registry | None = None):
        self._registry = registry

    def _resolve(self) -> Registry:
        return self._registry or default_registry()

    def __getitem__(self, name: str) -> Any:
        try:
            return self._resolve().backend_class(name)
        except (PluginNotFound, ConfigurationError):
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter([registration.name for registration in self._resolve().registrations("backend")])

    def __len__(self) -> int:
        return len(self._resolve().registrations("backend"))

    def __repr__(self) -> str:
        return f"<clsmap {sorted(self)}>"


#: Beaker's name for the installed backends: ``clsmap['redis']`` is the class ``cache.type = redis`` opens
clsmap = BackendClasses()

#: seconds between two log lines about a backend failing while a cache fails open
FAIL_OPEN_LOG_INTERVAL = 10.0

_HEADER = struct.Struct("!Bddq")
_ENVELOPE_VERSION = 1
_MISS = object()
_UNKNOWN_GENERATION = -1
# Options of the caching layer; everything else is handed to the backend.
_CACHE_OPTIONS = {"expire", "enabled", "key_length", "fail_open", "lock_timeout", "lock_expire", "lock_type",
                  "serializer", "stale_ttl", "starttime", "log_file", "expiretime"}


class Cache:
    """A namespace of cached values in one backend (Beaker's ``Cache``).

    :param namespace: the namespace; keys of different namespaces never meet.
    :param type: backend name or alias (``memory``, ``file``, ``dbm``, ``redis``, ``ext:memcached``...).
    :param expire: default lifetime of a value, in seconds (``expiretime`` is accepted as Beaker's old name).
    :param serializer: serializer name for backends that store bytes (default ``json``).
    :param lock_type: lock used by :meth:`get_or_create`; defaults to the backend's preferred lock.
    :param lock_timeout: seconds a caller waits for another to create a value before creating it itself.
    :param lock_expire: seconds after which a distributed lock of a crashed creator expires.
    :param stale_ttl: seconds an expired value is kept to be served while it is recreated (default: ``expire``).
    :param fail_open: on backend errors, log and compute instead of raising.
    :param enabled: ``False`` turns caching off: every get is a miss, every put is dropped.
    :param starttime: values created before this timestamp are treated as expired (Beaker).
    :param registry: the plugin registry (default: the process-wide one).
    Any other keyword (``data_dir``, ``lock_dir``, ``url``...) is an option of the backend.
    """

    def __init__(self, namespace: str, type: str = "memory", expire: Any = None, *, registry: Registry | None = None,
                 serializer: str = "json", lock_type: str | None = None, lock_timeout: Any = 30.0,
                 lock_expire: Any = 60.0, fail_open: Any = False, enabled: Any = True, key_length: Any = None,
                 stale_ttl: Any = None, starttime: float | None = None, expiretime: Any = None,
                 log_file: Any = None, **backend_options: Any):
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"a cache namespace must be a non-empty string, not {namespace!r}")
        options = coerce_cache_params({
            "type": type, "expire": expire if expire is not None else expiretime, "serializer": serializer,
            "lock_type": lock_type, "lock_timeout": lock_timeout, "lock_expire": lock_expire,
            "fail_open": fail_open, "enabled": enabled, "stale_ttl": stale_ttl,
            "key_length": key_length if key_length is not None else DEFAULT_KEY_LENGTH,
        })
        self.namespace = namespace
        self.type = options["type"] or "memory"
        self.expire = options["expire"]
        self.enabled = options["enabled"]
        self.fail_open = options["fail_open"]
        self.key_length = options["key_length"]
        self.lock_timeout = options["lock_timeout"]
        self.lock_expire = options["lock_expire"]
        self.stale_ttl = options["stale_ttl"]
        self.starttime = starttime
        self.registry = registry or default_registry()
        # what a deprecated per-call type= starts from, as Beaker's nsargs
        self._backend_options = {"serializer": serializer, "fail_open": fail_open, **backend_options}
        self._quiet_until = 0.0       # fail-open failures are not logged again before this (monotonic) time
        self._unlogged = 0
        self.backend = self.registry.open_backend(self.type, **backend_options)
        self._stores_objects = self.backend.stores_objects
        self._uses_generations = self.backend.shared
        self._serializer = None if self._stores_objects else self.registry.serializer(options["serializer"])
        lock_name = options["lock_type"] or self.backend.preferred_lock
        lock_class = self.registry.lock_class(lock_name)
        self._lock_options = fit_options(
            lock_class, f"the {lock_name} lock",
            {"lock_dir": backend_options.get("lock_dir") or _default_lock_dir(backend_options)},
            optional=("lock_dir",))
        self._lock_class = lock_class
        # a length prefix keeps ("a:b", "c") and ("a", "b:c") apart
        self._prefix = f"beaker:{len(namespace)}:{namespace}:"
        self._generation_key = f"beaker-generation:{len(namespace)}:{namespace}"
        # a process-local object store answers a hit with one dict lookup; shared stores read value and
        # generation in one round trip in _recreate, which a separate hit check would only repeat
        self._direct = self._stores_objects and not self._uses_generations
        if self._direct:
            self._lookup = self._direct_lookup()

    # -- reading -----------------------------------------------------------------------------------------------

    def _read(self, key: str) -> tuple[Any, int]:
        """The stored envelope for ``key`` (or None) and the namespace's current generation."""
        backend = self.backend
        if not self._uses_generations:
            raw = backend.get(self._prefix + key)
            return (None if raw is None else self._decode(raw, key)), 0
        raw_generation, raw = backend.get_many((self._generation_key, self._prefix + key))
        generation = int(raw_generation) if raw_generation is not None else self._start_generation()
        if raw is None:
            return None, generation
        return self._decode(raw, key), generation

    def _decode(self, raw: Any, key: str) -> Any:
        if self._stores_objects:
            return raw
        try:
            version, created, expire, generation = _HEADER.unpack_from(raw)
            if version != _ENVELOPE_VERSION:
                raise ValueError(f"unknown envelope version {version}")
            value = self._serializer.loads(raw[_HEADER.size:])
        except (struct.error, ValueError, SerializationError) as exc:
            log.warning("unreadable cache entry %r in namespace %r (%s): treated as a miss", key, self.namespace, exc)
            return None
        return value, created, expire or None, generation

    def _fresh(self, entry: Any, generation: int, now: float) -> bool:
        _, created, expire, entry_generation = entry
        if entry_generation != generation:
            return False
        if expire and now >= created + expire:
            return False
        return self.starttime is None or created >= self.starttime

    def _direct_lookup(self) -> Callable[[Any], Any]:
        """``_lookup`` for a process-local backend that keeps objects (memory): no generation, no decoding.

        A closure over what it needs, because this is every hit's whole cost.
        """
        backend = self.backend
        prefix = self._prefix
        starttime = self.starttime
        def fresh(entry: tuple) -> Any:
            value, created, expire, _ = entry
            if expire and clock.now() >= created + expire:
                return _MISS
            if starttime is not None and created < starttime:
                return _MISS
            return value

        if type(backend) is MemoryBackend:
            # The core's own memory backend: read its entries without its deadline check. That deadline (expire
            # plus the stale period) is never earlier than the expiry checked here, so skipping it changes nothing.
            data_get = backend.reader()

            def lookup(key: Any) -> Any:
                if type(key) is not str:
                    key = _key_string(key)
                item = data_get(prefix + key)
                if item is None:
                    return _MISS
                value, created, expire, _ = item[0]
                if expire and clock.now() >= created + expire:
                    return _MISS
                if starttime is not None and created < starttime:
                    return _MISS
                return value
        else:
            backend_get = backend.get

            def lookup(key: Any) -> Any:
                if type(key) is not str:
                    key = _key_string(key)
                entry = backend_get(prefix + key)
                return _MISS if entry is None else fresh(entry)

        return lookup

    def _lookup(self, key: Any) -> Any:
        """The fresh value under ``key`` or ``_MISS``: the hot path of every hit, kept flat on purpose."""
        if type(key) is not str:
            key = _key_string(key)
        try:
            entry, generation = self._read(key)
        except Exception as exc:
            self._failed_open(exc, "read of %r failed, treated as a miss", key)
            return _MISS
        if entry is None:
            return _MISS
        value, created, expire, entry_generation = entry
        if entry_generation != generation:
            return _MISS
        if expire and clock.now() >= created + expire:
            return _MISS
        if self.starttime is not None and created < self.starttime:
            return _MISS
        return value

    def get(self, key: Any, createfunc: Callable[[], Any] | None = None, expiretime: Any = None, **kw: Any) -> Any:
        """The value under ``key``; created by ``createfunc`` when missing or expired, else KeyError.

        As in Beaker, a value keeps the lifetime it was stored with: ``expiretime`` applies to the value this call
        creates, not to one already stored.
        """
        if createfunc is None and not kw and self.enabled:
            value = self._lookup(key)
            if value is _MISS:
                raise KeyError(key)
            return value
        if kw:
            return self._legacy("Cache.get", kw).get(key, createfunc, expiretime)
        if createfunc is not None:
            return self.get_or_create(key, createfunc, expiretime)
        raise KeyError(key)

    get_value = get

    def has_key(self, key: Any) -> bool:
        return self.enabled and self._lookup(key) is not _MISS

    __contains__ = has_key

    def __getitem__(self, key: Any) -> Any:
        return self.get(key)

    # -- writing -----------------------------------------------------------------------------------------------

    def _encode(self, key: str, value: Any, expire: Any, generation: int) -> Any:
        created = clock.now()
        if self._stores_objects:
            return (value, created, expire, generation)
        try:
            payload = self._serializer.dumps(value)
        except SerializationError as exc:
            raise SerializationError(f"cannot cache the value for key {key!r} in namespace {self.namespace!r}: "
                                     f"{exc}") from exc
        return _HEADER.pack(_ENVELOPE_VERSION, created, expire or 0.0, generation) + payload

    def _ttl(self, expire: Any) -> float | None:
        if not expire:
            return None
        return expire + (self.stale_ttl if self.stale_ttl is not None else expire)

    def _store(self, key: str, value: Any, expire: Any, generation: int) -> None:
        envelope = self._encode(key, value, expire, generation)
        try:
            self.backend.set(self._prefix + key, envelope, self._ttl(expire))
        except Exception as exc:
            self._failed_open(exc, "write of %r failed, value not cached", key)

    def _current_generation(self) -> int:
        if not self._uses_generations:
            return 0
        raw = self.backend.get(self._generation_key)
        return int(raw) if raw is not None else self._start_generation()

    def _start_generation(self) -> int:
        """Create the namespace's generation counter where it is missing, and return its value.

        It starts at the current time in milliseconds rather than at 0: a counter that a store lost (a restarted
        memcached, an eviction) then restarts above every generation it had reached, so values written before
        an earlier ``clear()`` never become valid again.

        When the store cannot keep the counter right now (the memcached server that holds it is down), the
        generation is unknown: values from every known generation are misses, and values created meanwhile are
        cached under the "unknown" generation, which no counter ever takes, so they die with the outage.
        """
        generation = _fresh_generation(None)
        try:
            if self.backend.add(self._generation_key, str(generation).encode("ascii")):
                return generation
            raw = self.backend.get(self._generation_key)
        except BackendError as exc:
            log.debug("cache %r: generation counter unavailable (%s); using the unknown generation",
                      self.namespace, exc)
            return _UNKNOWN_GENERATION
        return int(raw) if raw is not None else generation

    def put(self, key: Any, value: Any, expiretime: Any = None, **kw: Any) -> None:
        """Store ``value`` under ``key`` for ``expiretime`` seconds (default: the cache's ``expire``)."""
        if kw:
            return self._legacy("Cache.put", kw).put(key, value, expiretime)
        if not self.enabled:
            return
        if type(key) is not str:
            key = _key_string(key)
        expire = coerce_expire("expiretime", expiretime) if expiretime is not None else self.expire
        try:
            generation = self._current_generation()
        except Exception as exc:
            self._failed_open(exc, "backend unavailable, %r not cached", key)
            return
        self._store(key, value, expire, generation)

    set_value = put

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def remove_value(self, key: Any, **kw: Any) -> None:
        """Remove ``key`` (no error when it is absent)."""
        if kw:
            return self._legacy("Cache.remove_value", kw).remove_value(key)
        if type(key) is not str:
            key = _key_string(key)
        try:
            self.backend.delete(self._prefix + key)
        except Exception as exc:
            self._failed_open(exc, "delete of %r failed", key)

    remove = remove_value

    __delitem__ = remove_value

    def clear(self) -> None:
        """Invalidate every value of this namespace, in every process."""
        try:
            if self._uses_generations:
                raw = self.backend.get(self._generation_key)
                self.backend.set(self._generation_key,
                                 str(_fresh_generation(None if raw is None else int(raw))).encode("ascii"))
            else:
                self.backend.delete_prefix(self._prefix)
        except Exception as exc:
            self._failed_open(exc, "clear failed")

    # -- get or create -----------------------------------------------------------------------------------------

    def _lock(self, key: str) -> Any:
        return self._lock_class(f"beaker-cache:{self._prefix}{key}", backend=self.backend,
                                expire=self.lock_expire, timeout=self.lock_timeout, **self._lock_options)

    def get_or_create(self, key: Any, creator: Callable[[], Any], expire: Any = None) -> Any:
        """The value under ``key``, running ``creator`` once (across threads and processes) when it is missing.

        While one caller recreates an expired value, other callers get the expired value rather than wait.
        A caller that waits longer than ``lock_timeout`` for another creator runs ``creator`` itself.
        """
        if not self.enabled:
            return creator()
        if self._direct:
            value = self._lookup(key)
            if value is not _MISS:
                return value
        return self._recreate(key, creator, expire)

    def _recreate(self, key: Any, creator: Callable[[], Any], expire: Any) -> Any:
        """The miss path of :meth:`get_or_create`: take the key's lock, or serve the stale value."""
        if type(key) is not str:
            key = _key_string(key)
        if expire is None:
            expire = self.expire
        else:
            expire = coerce_expire("expiretime", expire)
        try:
            entry, generation = self._read(key)
        except Exception as exc:
            self._failed_open(exc, "read of %r failed, computing without the cache", key)
            return creator()
        stale = False
        if entry is not None:
            value, created, lifetime, entry_generation = entry
            if entry_generation == generation and (self.starttime is None or created >= self.starttime):
                if not lifetime or clock.now() < created + lifetime:
                    return value
                stale = True
        try:
            lock = self._lock(key)
            acquired = lock.acquire(not stale, self.lock_timeout)
        except Exception as exc:
            self._failed_open(exc, "lock for %r unavailable, computing without it", key)
            return self._create(key, creator, expire, generation)
        if not acquired:
            if stale:
                return entry[0]
            log.warning("cache %r: waited %ss for another creator of %r; creating it here", self.namespace,
                        self.lock_timeout, key)
            return self._create(key, creator, expire, generation)
        try:
            entry, generation = self._read(key)
            if entry is not None and self._fresh(entry, generation, clock.now()):
                return entry[0]
            return self._create(key, creator, expire, generation)
        finally:
            lock.release()

    def _create(self, key: str, creator: Callable[[], Any], expire: Any, generation: int) -> Any:
        value = creator()
        self._store(key, value, expire, generation)
        return value

    def _failed_open(self, exc: Exception, what: str, *args: Any) -> None:
        """A backend error: raised again, or, with ``fail_open``, logged and survived. Called from an ``except``
        block. While a backend stays down every call fails, so the log gets the first failure and then at most one
        line per ``FAIL_OPEN_LOG_INTERVAL`` seconds with the count of the failures it did not show."""
        if not self.fail_open:
            raise exc
        now = time.monotonic()
        if now < self._quiet_until:
            self._unlogged += 1
            return
        self._quiet_until = now + FAIL_OPEN_LOG_INTERVAL
        unlogged, self._unlogged = self._unlogged, 0
        more = f" ({unlogged} more failures since the last report)" if unlogged else ""
        log.warning("cache %r: " + what + ": %s%s", self.namespace, *args, exc, more)

    def _legacy(self, where: str, options: dict[str, Any]) -> "Cache":
        """Beaker's deprecated per-call ``type=`` (with backend options): this namespace in that other cache."""
        options = dict(options)
        options.pop("starttime", None)
        if "type" not in options:
            _reject_options(where, options)
        warnings.warn(f"{where}(type=...) is deprecated, as in Beaker: give the type and backend options to "
                      f"Cache() or CacheManager.get_cache()", DeprecationWarning, stacklevel=3)
        return Cache._get_cache(self.namespace, {**self._backend_options, **options})

    # -- Beaker's classmethod for the decorators ---------------------------------------------------------------

    @classmethod
    def _get_cache(cls, namespace: str, kw: Mapping[str, Any]) -> "Cache":
        key = (namespace, _frozen(kw))
        cache = cache_managers.get(key)
        if cache is None:
            with _cache_managers_lock:
                cache = cache_managers.get(key)
                if cache is None:
                    cache = cache_managers[key] = cls(namespace, **kw)
        return cache

    def __repr__(self) -> str:
        return f"<Cache {self.namespace!r} on {self.backend.describe()}>"


def _fresh_generation(current: int | None) -> int:
    """A generation past ``current`` and past every generation a lost counter could have reached."""
    stamp = time.time_ns() // 1_000_000
    return stamp if current is None or stamp > current else current + 1


def _default_lock_dir(backend_options: Mapping[str, Any]) -> str | None:
    data_dir = backend_options.get("data_dir")
    return f"{data_dir}/locks" if data_dir else None


def _key_string(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "surrogateescape")
    return str(key)


def _frozen(options: Mapping[str, Any]) -> tuple:
    return tuple(sorted((key, repr(value)) for key, value in options.items()))


def _reject_options(where: str, options: Mapping[str, Any]) -> None:
    raise ConfigurationError(f"{where}() got unsupported option(s): {', '.join(sorted(options))}")


# -- the manager -----------------------------------------------------------------------------------------------

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
        key = (name, _frozen(options))
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
        return _decorator(args, manager=self, options=kwargs, region=None)

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


_INVALIDATE_OPTIONS = _CACHE_OPTIONS | {"type", "data_dir", "lock_dir", "url"}


# -- decorators ------------------------------------------------------------------------------------------------

def _decorator(deco_args: tuple, *, manager: CacheManager | None, options: Mapping[str, Any],
               region: str | None) -> Callable:
    def decorate(func: Callable) -> Callable:
        spec = KeySpec(func, deco_args, region, options)
        # (cache, key_length), resolved on the first call so that decorating may precede configuration
        resolved: list[Any] = [None, DEFAULT_KEY_LENGTH]

        def resolve() -> Cache | None:
            if region is not None:
                region_options = cache_regions.get(region)
                if region_options is None:
                    raise BeakerError(f"Cache region not configured: {region}")
                if not region_options.get("enabled", True):
                    return None
                resolved[1] = spec.key_length(region_options)
                resolved[0] = Cache._get_cache(spec.namespace, region_options)
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
            if cache._direct:
                value = cache._lookup(key)
                if value is not _MISS:
                    return value
            return cache._recreate(key, lambda: func(*args, **kwargs), None)

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
    return _decorator(args, manager=None, options={}, region=region)


def region_invalidate(namespace: Any, region: str | None, *args: Any, **kwargs: Any) -> None:
    """Remove the value a ``@cache_region`` function cached for these arguments (Beaker's ``region_invalidate``).

    ``namespace`` is the decorated function (or a bound method of it; for a classmethod, the class it is bound to
    selects the key); ``args`` are the decorator's arguments followed by the call's, as in Beaker.
    """
    if isinstance(namespace, str):
        # Beaker's form with a namespace name: the key is the arguments joined by spaces
        if not region:
            raise BeakerError("region_invalidate() needs a region when given a namespace name")
        region_options = _region_options(region)
        key = fit_key(" ".join(map(str, args)), namespace,
                      int(region_options.get("key_length") or DEFAULT_KEY_LENGTH))
        Cache._get_cache(namespace, region_options).remove_value(key)
        return
    bound_to = getattr(namespace, "__self__", None)
    spec = spec_of(namespace)
    region_options = _region_options(region or spec.region)
    cache = Cache._get_cache(spec.namespace, region_options)
    cache.remove_value(spec.invalidation_key(args, kwargs, spec.key_length(region_options), bound_to))


def _region_options(region: str | None) -> dict[str, Any]:
    if not region:
        raise BeakerError("Region or callable function namespace is required")
    region_options = cache_regions.get(region)
    if region_options is None:
        raise BeakerError(f"Cache region not configured: {region}")
    return region_options


# -- WSGI ------------------------------------------------------------------------------------------------------

class CacheMiddleware:
    """WSGI middleware that puts a :class:`CacheManager` in ``environ['beaker.cache']``.

    Configuration keys are ``cache.*`` or ``beaker.cache.*``, from ``config`` and keyword arguments.
    """

    def __init__(self, wrap_app: Callable, config: Mapping[str, Any] | None = None,
                 environ_key: str = "beaker.cache", **kwargs: Any):
        self.app = wrap_app
        settings = dict(config or {})
        for key, value in kwargs.items():
            settings[key if key.startswith(("cache.", "beaker.cache.")) else f"cache.{key}"] = value
        self.cache_manager = CacheManager(**parse_cache_config_options(settings))
        self.environ_key = environ_key

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        environ[self.environ_key] = self.cache_manager
        return self.app(environ, start_response)
