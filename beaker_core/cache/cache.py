"""``Cache``: a namespace of cached values in one backend, with generations, stale values and fail-open.

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

Values are stored in the envelope of :mod:`beaker_core.cache.envelope`.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any, Callable, Mapping

from .. import clock
from ..exceptions import BackendError, ConfigurationError, SerializationError
from ..registry import Registry, default_registry
from ..util import coerce_cache_params, coerce_expire, fit_options
from .envelope import DEAD, FRESH, STALE, UnreadableEntry, freshness, pack, unpack
from .keys import DEFAULT_KEY_LENGTH

log = logging.getLogger(__name__)

#: shared Cache objects of the module-level decorators, by namespace and options (Beaker's name)
cache_managers: dict[Any, "Cache"] = {}
_cache_managers_lock = threading.Lock()

#: seconds between two log lines about a backend failing while a cache fails open
FAIL_OPEN_LOG_INTERVAL = 10.0

#: what :meth:`Cache.lookup` returns when there is no fresh value
MISS: Any = object()
#: the generation of every value in a process-local store, which has no generation counter
_LOCAL_GENERATION = 0
#: the generation of values created while a shared store cannot keep the counter; no counter ever takes it
_UNKNOWN_GENERATION = -1

#: options of the caching layer; everything else is handed to the backend
CACHE_OPTIONS = frozenset({"expire", "enabled", "key_length", "fail_open", "lock_timeout", "lock_expire",
                           "lock_type", "serializer", "stale_ttl", "starttime", "log_file", "expiretime"})


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
    Any other keyword (``data_dir``, ``lock_dir``, ``url``...) is an option of the backend; ``data_dir`` and
    ``lock_dir`` also go to the lock when it takes them (the file lock decides its directory from them).
    """

    #: a hit is answered by :meth:`lookup` alone (a process-local object store); other stores go straight to
    #: :meth:`recreate`, which reads value and generation in one round trip that a separate hit check would repeat
    direct = False

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
        self._loads = None if self._serializer is None else self._serializer.loads
        lock_name = options["lock_type"] or self.backend.preferred_lock
        lock_class = self.registry.lock_class(lock_name)
        self._lock_options = fit_options(
            lock_class, f"the {lock_name} lock",
            {"lock_dir": backend_options.get("lock_dir"), "data_dir": backend_options.get("data_dir")},
            optional=("lock_dir", "data_dir"))
        self._lock_class = lock_class
        # a length prefix keeps ("a:b", "c") and ("a", "b:c") apart
        self._prefix = f"beaker:{len(namespace)}:{namespace}:"
        self._generation_key = f"beaker-generation:{len(namespace)}:{namespace}"
        if self._stores_objects and not self._uses_generations:
            self.direct = True
            self.lookup = self._direct_lookup()

    # -- reading -----------------------------------------------------------------------------------------------

    def _read(self, key: str) -> tuple[Any, int]:
        """The stored entry for ``key`` (or None) and the namespace's current generation."""
        backend = self.backend
        if not self._uses_generations:
            raw = backend.get(self._prefix + key)
            generation = _LOCAL_GENERATION
        else:
            raw_generation, raw = backend.get_many((self._generation_key, self._prefix + key))
            generation = int(raw_generation) if raw_generation is not None else self._start_generation()
        if raw is None or self._loads is None:
            return raw, generation
        try:
            return unpack(raw, self._loads), generation
        except UnreadableEntry as exc:
            log.warning("unreadable cache entry %r in namespace %r (%s): treated as a miss", key, self.namespace, exc)
            return None, generation

    def _direct_lookup(self) -> Callable[[Any], Any]:
        """:meth:`lookup` for a process-local backend that keeps objects (memory): no generation, no decoding.

        A closure over what it needs, because this is every hit's whole cost.
        """
        backend = self.backend
        prefix = self._prefix
        starttime = self.starttime
        read = backend.reader()
        if read is None:
            backend_get = backend.get

            def lookup(key: Any) -> Any:
                if type(key) is not str:
                    key = _key_string(key)
                entry = backend_get(prefix + key)
                if entry is None or freshness(entry, _LOCAL_GENERATION, starttime) is not FRESH:
                    return MISS
                return entry[0]

            return lookup

        # The backend's reader skips its own deadline check. That deadline (expire plus the stale period) is never
        # earlier than the expiry checked here, so skipping it changes nothing.
        def lookup(key: Any) -> Any:
            if type(key) is not str:
                key = _key_string(key)
            item = read(prefix + key)
            if item is None:
                return MISS
            # envelope.freshness() inlined, the only copy of the rule: a call would be a sizeable part of a hit
            value, created, expire, _ = item[0]
            if expire and clock.now() >= created + expire:
                return MISS
            if starttime is not None and created < starttime:
                return MISS
            return value

        return lookup

    def lookup(self, key: Any) -> Any:
        """The fresh value under ``key``, or :data:`MISS` (no creator, no lock); a process-local store replaces this
        method with a closure (:attr:`direct`)."""
        if type(key) is not str:
            key = _key_string(key)
        try:
            entry, generation = self._read(key)
        except Exception as exc:
            self._failed_open(exc, "read of %r failed, treated as a miss", key)
            return MISS
        if entry is None or freshness(entry, generation, self.starttime) is not FRESH:
            return MISS
        return entry[0]

    def get(self, key: Any, createfunc: Callable[[], Any] | None = None, expiretime: Any = None, **kw: Any) -> Any:
        """The value under ``key``; created by ``createfunc`` when missing or expired, else KeyError.

        As in Beaker, a value keeps the lifetime it was stored with: ``expiretime`` applies to the value this call
        creates, not to one already stored.
        """
        if createfunc is None and not kw and self.enabled:
            value = self.lookup(key)
            if value is MISS:
                raise KeyError(key)
            return value
        if kw:
            return self._legacy("Cache.get", kw).get(key, createfunc, expiretime)
        if createfunc is not None:
            return self.get_or_create(key, createfunc, expiretime)
        raise KeyError(key)

    get_value = get

    def has_key(self, key: Any) -> bool:
        return self.enabled and self.lookup(key) is not MISS

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
        return pack(payload, created, expire, generation)

    def _ttl(self, expire: Any) -> float | None:
        if not expire:
            return None
        return expire + (self.stale_ttl if self.stale_ttl is not None else expire)

    def _store(self, key: str, value: Any, expire: Any, generation: int) -> None:
        stored = self._encode(key, value, expire, generation)
        try:
            self.backend.set(self._prefix + key, stored, self._ttl(expire))
        except Exception as exc:
            self._failed_open(exc, "write of %r failed, value not cached", key)

    def _current_generation(self) -> int:
        if not self._uses_generations:
            return _LOCAL_GENERATION
        raw = self.backend.get(self._generation_key)
        return int(raw) if raw is not None else self._start_generation()

    def _start_generation(self) -> int:
        """Create the namespace's generation counter where it is missing, and return its value.

        It starts at the current time in milliseconds rather than at 0: a counter that a store lost (a restarted
        memcached, an eviction) then restarts above every generation it had reached, so values written before
        an earlier ``clear()`` never become valid again.

        When the store cannot keep the counter right now (the memcached server that holds it is down), the
        generation is unknown: values from every known generation are misses, and values created meanwhile are
        cached under the "unknown" generation, which no counter ever takes, so they die with the outage. This
        holds whether or not the cache fails open: it is how a cache reads through a partial outage.
        """
        generation = _next_generation(None)
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
                                 str(_next_generation(None if raw is None else int(raw))).encode("ascii"))
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
        The decorators of :mod:`beaker_core.cache.regions` inline it: one call less on every decorated hit.
        """
        if not self.enabled:
            return creator()
        if self.direct:
            value = self.lookup(key)
            if value is not MISS:
                return value
        return self.recreate(key, creator, expire)

    def recreate(self, key: Any, creator: Callable[[], Any], expire: Any = None) -> Any:
        """The miss path of :meth:`get_or_create` (after :meth:`lookup` missed, for a :attr:`direct` cache): read
        the value and the generation, else take the key's lock, or serve the stale value while another caller holds
        it."""
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
        state = DEAD if entry is None else freshness(entry, generation, self.starttime)
        if state is FRESH:
            return entry[0]
        stale = state is STALE
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
            if entry is not None and freshness(entry, generation, self.starttime) is FRESH:
                return entry[0]
            return self._create(key, creator, expire, generation)
        finally:
            lock.release()

    def _create(self, key: str, creator: Callable[[], Any], expire: Any, generation: int) -> Any:
        value = creator()
        self._store(key, value, expire, generation)
        return value

    def _failed_open(self, exc: Exception, what: str, *args: Any) -> None:
        """The one handling of a backend error: raised again, or, with ``fail_open``, logged and survived. Called
        from an ``except`` block. While a backend stays down every call fails, so the log gets the first failure and
        then at most one line per ``FAIL_OPEN_LOG_INTERVAL`` seconds with the count of the failures it did not show."""
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
            raise ConfigurationError(f"{where}() got unsupported option(s): {', '.join(sorted(options))}")
        warnings.warn(f"{where}(type=...) is deprecated, as in Beaker: give the type and backend options to "
                      f"Cache() or CacheManager.get_cache()", DeprecationWarning, stacklevel=3)
        return Cache.shared(self.namespace, {**self._backend_options, **options})

    # -- the shared caches of the decorators -------------------------------------------------------------------

    @classmethod
    def shared(cls, namespace: str, options: Mapping[str, Any]) -> "Cache":
        """The one Cache of ``namespace`` with ``options`` in this process (kept in :data:`cache_managers`): what
        ``@cache_region`` functions and ``region_invalidate`` use."""
        key = (namespace, frozen_options(options))
        cache = cache_managers.get(key)
        if cache is None:
            with _cache_managers_lock:
                cache = cache_managers.get(key)
                if cache is None:
                    cache = cache_managers[key] = cls(namespace, **options)
        return cache

    #: Beaker's name of :meth:`shared`
    _get_cache = shared

    def __repr__(self) -> str:
        return f"<Cache {self.namespace!r} on {self.backend.describe()}>"


def frozen_options(options: Mapping[str, Any]) -> tuple:
    """Options as a hashable key: the same options, given in any order, make the same key."""
    return tuple(sorted((key, repr(value)) for key, value in options.items()))


def _next_generation(current: int | None) -> int:
    """A generation past ``current`` and past every generation a lost counter could have reached."""
    stamp = time.time_ns() // 1_000_000
    return stamp if current is None or stamp > current else current + 1


def _key_string(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "surrogateescape")
    return str(key)
