"""The ``example-lru`` backend: bytes in a bounded dict of this process, least recently used evicted first.

It is deliberately small, to show the whole :class:`beaker_core.backends.Backend` contract in one screen:
``get``, ``set``, ``delete`` and ``touch`` are required; ``add``, ``incr``, ``keys`` and ``cleanup`` are overridden
because this store can do them atomically (under one lock) or better than the defaults.

Being in-process, it is not ``shared``: every process has its own copy, like the built-in ``memory`` backend.
Unlike ``memory`` it stores bytes (``stores_objects = False``), so the core serializes values for it, and it is
bounded by default.

:param max_entries: keep at most this many entries, evicting the least recently used one first (default 1024).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Iterator

from beaker_core.backends import Backend, check_delta, deadline
from beaker_core.util import coerce_int


class ExampleLRUBackend(Backend):
    name = "example-lru"
    preferred_lock = "thread"  # one process: a thread lock is enough to protect a creator or a session save
    stores_objects = False
    shared = False

    def __init__(self, max_entries: Any = 1024):
        # options often arrive as strings from an INI file: coerce, and name the option in the error
        self.max_entries = coerce_int("example-lru max_entries", max_entries, minimum=1)
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    # -- the required four -------------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live_value(key)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        entry = (_as_bytes(value), deadline(ttl))  # deadline() rejects a bad ttl before anything changes
        with self._lock:
            self._store(key, entry)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._live_value(key) is not None and self._entries.pop(key, None) is not None

    def touch(self, key: str, ttl: float | None) -> bool:
        expires = deadline(ttl)
        with self._lock:
            value = self._live_value(key)
            if value is None:
                return False
            self._entries[key] = (value, expires)
            return True

    # -- done better than the defaults -------------------------------------------------------------------------

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        entry = (_as_bytes(value), deadline(ttl))
        with self._lock:
            if self._live_value(key) is not None:
                return False
            self._store(key, entry)
            return True

    def incr(self, key: str, delta: int = 1) -> int:
        """An existing deadline is kept; a new counter never expires."""
        check_delta(delta)
        with self._lock:
            current = self._live_value(key)
            number = (int(current) if current is not None else 0) + delta
            expires = self._entries[key][1] if current is not None else None
            self._store(key, (str(number).encode("ascii"), expires))
            return number

    def keys(self, prefix: str = "") -> Iterator[str]:
        now = time.time()
        with self._lock:
            live = [key for key, (_, expires) in self._entries.items()
                    if key.startswith(prefix) and (expires is None or expires > now)]
        return iter(live)

    def cleanup(self) -> int:
        now = time.time()
        with self._lock:
            expired = [key for key, (_, expires) in self._entries.items() if expires is not None and expires <= now]
            for key in expired:
                del self._entries[key]
        return len(expired)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def describe(self) -> str:
        return f"example-lru backend (this process, at most {self.max_entries} entries)"

    # -- helpers, called with the lock held --------------------------------------------------------------------

    def _live_value(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.time():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def _store(self, key: str, entry: tuple[bytes, float | None]) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"the example-lru backend stores bytes, not {type(value).__name__} "
                    f"(the core serializes values before they reach a backend)")

