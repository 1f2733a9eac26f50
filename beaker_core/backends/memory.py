"""The ``memory`` backend: a dict in this process."""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Iterable, Iterator

from .. import clock
from ..util import coerce_int
from . import Backend, check_delta, deadline

#: entries a memory backend keeps when its configuration names no ``max_entries``
DEFAULT_MAX_ENTRIES = 10_000


class MemoryBackend(Backend):
    """Values kept in a dict of this process, as Python objects (no serialization on a hit).

    :param max_entries: keep at most this many entries, evicting the least recently used (default
        ``DEFAULT_MAX_ENTRIES``, 10,000); ``none`` for no bound.

    Reads take no lock (a dict lookup is atomic under the GIL); writes and evictions do. A value read back is the
    object that was stored, as with Beaker's and dogpile's memory backends: mutating it mutates the cached value.
    """

    name = "memory"
    local_expiry = True
    stores_objects = True
    shared = False

    def __init__(self, max_entries: Any = None):
        if max_entries is None:
            max_entries = DEFAULT_MAX_ENTRIES
        if isinstance(max_entries, str) and max_entries.strip().lower() in ("none", "unbounded"):
            self.max_entries = None
        else:
            self.max_entries = coerce_int("max_entries", max_entries, minimum=1)
        self._data: dict[str, tuple[Any, float | None]] = OrderedDict() if self.max_entries else {}
        self._lock = threading.Lock()
        _instances.add(self)

    def get(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        expires = item[1]
        if expires is not None and expires <= clock.now():
            with self._lock:
                if self._data.get(key) is item:
                    del self._data[key]
            return None
        if self.max_entries:
            try:
                self._data.move_to_end(key)
            except KeyError:
                pass
        return item[0]

    def reader(self) -> Any:
        """The in-process reads capability (see :mod:`beaker_core.backends`): a function ``key -> (value, deadline)``
        or None, without deadline check or lock; a bounded backend still marks the entry as recently used.

        A subclass that overrides ``get`` (to count or trace reads) offers no reader, so that it sees every read.
        """
        if type(self).get is not MemoryBackend.get:
            return None
        data = self._data
        if not self.max_entries:
            return data.get
        data_get = data.get
        move_to_end = data.move_to_end

        def read(key: str) -> Any:
            item = data_get(key)
            if item is not None:
                try:
                    move_to_end(key)
                except KeyError:  # evicted or deleted by another thread since the read
                    pass
            return item

        return read

    def get_many(self, keys: Iterable[str]) -> list[Any]:
        get = self.get
        return [get(key) for key in keys]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        item = (value, deadline(ttl))
        with self._lock:
            self._data[key] = item
            if self.max_entries:
                self._data.move_to_end(key)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        with self._lock:  # the checks read the dict directly: get() takes this lock to drop an expired item
            if _live(self._data.get(key)):
                return False
            self._data[key] = (value, deadline(ttl))
            if self.max_entries:
                self._data.move_to_end(key)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            return _live(self._data.pop(key, None))

    def touch(self, key: str, ttl: float | None) -> bool:
        with self._lock:
            item = self._data.get(key)
            if not _live(item):
                return False
            self._data[key] = (item[0], deadline(ttl))
            return True

    def incr(self, key: str, delta: int = 1) -> int:
        """An existing deadline is kept; a new counter never expires."""
        check_delta(delta)
        with self._lock:
            item = self._data.get(key)
            if not _live(item):
                item = (0, None)
            value = int(item[0]) + delta
            self._data[key] = (value, item[1])
            return value

    def keys(self, prefix: str = "") -> Iterator[str]:
        now = clock.now()
        return iter([key for key, (_, expires) in list(self._data.items())
                     if key.startswith(prefix) and (expires is None or expires > now)])

    def cleanup(self) -> int:
        now = clock.now()
        with self._lock:
            expired = [key for key, (_, expires) in self._data.items() if expires is not None and expires <= now]
            for key in expired:
                del self._data[key]
        return len(expired)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def describe(self) -> str:
        return "memory backend (this process)"


class _AllMemoryBackends:
    """``MemoryBackend.namespaces``: Beaker's ``MemoryNamespaceManager.namespaces``, whose ``clear()`` test suites
    call to forget every memory session and cached value of the process."""

    def clear(self) -> None:
        for backend in list(_instances):
            backend.clear()

    def __len__(self) -> int:
        return sum(len(backend) for backend in list(_instances))


_instances: "weakref.WeakSet[MemoryBackend]" = weakref.WeakSet()
MemoryBackend.namespaces = _AllMemoryBackends()


def _live(item: tuple[Any, float | None] | None) -> bool:
    """Whether a stored ``(value, deadline)`` exists and has not expired."""
    return item is not None and (item[1] is None or item[1] > clock.now())
