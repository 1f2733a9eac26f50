"""The backend contract: bytes under string keys, with an optional time to live.

A backend is deliberately small. Serialization, the cache envelope, namespaces, generations and locking live in the
core, so every backend gets them for free. A backend subclasses :class:`Backend` and implements ``get``, ``set``,
``delete`` and ``touch``; the rest have working defaults that a backend overrides when its store can do better
(``get_many`` in one round trip, an atomic ``add`` or ``incr``).

Keys are ``str`` (any characters, any length: a backend that cannot store a key as it is maps it, for example by
hashing). Values are ``bytes``, unless the backend sets ``stores_objects = True``, in which case the core hands it
Python objects and skips serialization (the memory backend does this, so that a hit costs no decoding). A ``ttl`` is
a positive number of seconds, or ``None`` for no expiry.

Optional capability, atomic records (used by server-side sessions): a backend that can keep a record of named fields
under one key and change some of its fields in one atomic operation sets ``atomic_records = True`` and implements

* ``get_record(key) -> dict[str, bytes] | None``: every field of the record, or None when there is none (or it
  expired);
* ``merge_record(key, set_fields: dict[str, bytes], delete_fields: list[str], ttl, create: bool) -> bool``:
  atomically set ``set_fields``, remove ``delete_fields`` and give the record the time to live ``ttl`` (None: no
  expiry). With ``create=False`` a record that does not exist is left absent and the call returns False; otherwise
  it returns True. Redis does it with a hash: a Lua script (or MULTI/EXEC under WATCH) running ``EXISTS``, ``HSET``,
  ``HDEL`` and ``EXPIRE``/``PERSIST``.

``delete(key)`` and ``touch(key, ttl)`` apply to records too. Sessions then save one request's changes with a single
``merge_record`` call, without the session lock and without reading the record again (see
:mod:`beaker_core.session.store`).

Optional capability, atomic update: a backend that can read, change and write one value under its own per-key
exclusion (the file backend's flock on the current file, a redis WATCH, a SQL ``SELECT ... FOR UPDATE``) sets
``atomic_update = True`` and implements ``update(key, change, ttl) -> bool``: ``change(current)`` gets the live
value (or None) and returns the new value, or None to leave the key as it is; the new value is stored with ``ttl``
and the call returns whether something was stored. ``change`` may be called again if the backend retries, so it must
have no side effect. Sessions then merge a request's changes in that one call instead of taking the session lock
and reading the record a second time.

Optional capability, in-process reads: a backend whose entries live in this process's memory may return from
``reader()`` a function ``key -> (value, deadline) | None`` that reads its storage directly, without lock or deadline
check (an entry past its deadline may still be returned). It is for a caller that checks freshness itself with an
expiry never later than the deadline: the cache answers every hit of the memory backend this way. The default, None,
means the backend has no such reader, and callers use ``get``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from .. import clock
from ..exceptions import ConfigurationError


class Backend:
    #: the name the backend is registered under (for messages)
    name = "backend"
    #: the lock type used for stampede protection and session saves unless configuration says otherwise
    preferred_lock = "thread"
    #: values are kept as Python objects: the core does not serialize them
    stores_objects = False
    #: data is visible to other processes (file, dbm, network stores), so cross-process invalidation must be read
    shared = True
    #: the largest value the store accepts, in bytes, or None
    max_value_size: int | None = None
    #: entries expire by :data:`beaker_core.clock.now` in this process (memory, file, dbm), not by a server's own
    #: clock: tests move time with :func:`beaker_core.testing.clock.fake_clock` instead of sleeping
    local_expiry = False

    def get(self, key: str) -> Any:
        """The value stored under ``key``, or ``None`` when there is none or it has expired."""
        raise NotImplementedError

    def get_many(self, keys: Iterable[str]) -> list[Any]:
        """Values for ``keys``, in order, ``None`` for the missing ones."""
        return [self.get(key) for key in keys]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing what was there; expire it after ``ttl`` seconds."""
        raise NotImplementedError

    def set_many(self, items: dict[str, Any], ttl: float | None = None) -> None:
        for key, value in items.items():
            self.set(key, value, ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` holds nothing; return whether it was stored.

        The default is not atomic between processes; backends with a native add override it.
        """
        if self.get(key) is not None:
            return False
        self.set(key, value, ttl)
        return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether something was removed."""
        raise NotImplementedError

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def touch(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new time to live without rewriting its value; return whether the key exists."""
        raise NotImplementedError

    def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer stored under ``key`` (created at 0, without expiry) and return the result;
        an existing value keeps its expiry.

        The default reads then writes, without the expiry (it cannot read one), and is not atomic: backends with
        an atomic increment, or with expiring values, override it. The core itself does not call it; it is part of
        the contract for applications and tools that keep counters in a backend.
        """
        check_delta(delta)
        current = self.get(key)
        value = (int(current) if current is not None else 0) + delta
        self.set(key, str(value).encode("ascii"))
        return value

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every live key starting with ``prefix`` (for cleanup tools); optional."""
        raise NotImplementedError(f"the {self.name} backend cannot enumerate its keys")

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; return how many were removed."""
        removed = 0
        for key in list(self.keys(prefix)):
            removed += bool(self.delete(key))
        return removed

    def cleanup(self) -> int:
        """Remove expired entries the store does not expire by itself; return how many."""
        return 0

    def close(self) -> None:
        """Release connections and files."""

    def describe(self) -> str:
        """Where the data lives, for error messages (never including a password)."""
        return f"{self.name} backend"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    #: the backend implements get_record and merge_record (see the module docstring)
    atomic_records = False

    def get_record(self, key: str) -> dict[str, bytes] | None:
        """Every field of the record under ``key`` (atomic records capability), or None."""
        raise NotImplementedError(f"the {self.name} backend does not store records")

    def merge_record(self, key: str, set_fields: dict[str, bytes], delete_fields: list[str], ttl: float | None,
                     create: bool = True) -> bool:
        """Set and delete fields of the record under ``key`` atomically (atomic records capability)."""
        raise NotImplementedError(f"the {self.name} backend does not store records")

    #: the backend implements update (see the module docstring)
    atomic_update = False

    def update(self, key: str, change: Any, ttl: float | None = None) -> bool:
        """Replace the value under ``key`` with ``change(current)`` atomically (atomic update capability)."""
        raise NotImplementedError(f"the {self.name} backend has no atomic update")

    def reader(self) -> Callable[[str], tuple[Any, float | None] | None] | None:
        """A function reading stored ``(value, deadline)`` items without checks (in-process reads capability, see
        the module docstring), or None: the default, for a backend without one."""
        return None


def check_ttl(ttl: Any) -> float | None:
    """Validate a ttl argument: None, or a positive number of seconds."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        raise ConfigurationError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
    return ttl


def check_delta(delta: Any) -> int:
    """Validate the delta of ``incr``: an int (not a bool)."""
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise ConfigurationError(f"incr needs an integer delta, not {delta!r}")
    return delta


def deadline(ttl: float | None) -> float | None:
    """When an entry written now with ``ttl`` expires (None: never), on :data:`beaker_core.clock.now`."""
    return None if ttl is None else clock.now() + check_ttl(ttl)
