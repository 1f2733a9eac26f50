"""One instance per key, shared by everyone who asks for that key: the core's single way of sharing instances.

It keeps the registry's backends (one per name and options, so that Beaker's memory namespaces are process-wide and
a network backend keeps one connection pool), the backends a network lock opens for a url, the thread lock's
``threading.Lock`` per name, and a plugin's clients (the redis plugin's one client per url and options).

Two ways to hold an instance:

* ``checkout(key, create)`` and ``checkin(key)`` count the users: the last ``checkin`` removes the instance and
  closes it, so a client's connections go when the last backend using it closes;
* ``get(key, create)`` takes the instance for as long as the pool lives (a user that never checks in): the instance
  is closed by :meth:`InstancePool.close` only.

``create()`` runs under the pool's lock, so two threads asking for a new key at once get one instance; the lock is
reentrant, so a ``create`` may ask the same pool for another key. Closing runs outside the lock. An instance
created in a parent process is shared by its forked children as any object is: what must not cross a fork (a
socket) is the instance's own business, as redis-py's connection pools already check the process id.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Hashable


class InstancePool:
    """Instances by key, created on first use; thread safe.

    :param close: called with an instance when it leaves the pool (its last user checked it in, or
        :meth:`close`); None when instances need no closing.
    """

    def __init__(self, close: Callable[[Any], None] | None = None):
        self._close = close
        self._guard = threading.RLock()
        self._entries: dict[Hashable, list] = {}  # key -> [instance, users, kept until the pool closes]

    def checkout(self, key: Hashable, create: Callable[[], Any]) -> Any:
        """The instance under ``key``, made by ``create()`` if there is none; one more user until :meth:`checkin`."""
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [create(), 0, False]
            entry[1] += 1
            return entry[0]

    def checkin(self, key: Hashable) -> None:
        """One user fewer of ``key``'s instance: the last one removes it and closes it (unless :meth:`get` kept
        it). A key the pool does not hold is ignored."""
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0 or entry[2]:
                return
            del self._entries[key]
        if self._close is not None:
            self._close(entry[0])

    def get(self, key: Hashable, create: Callable[[], Any]) -> Any:
        """The instance under ``key``, made by ``create()`` if there is none, kept until :meth:`close`.

        Once the instance exists this takes no lock: one dict lookup.
        """
        entry = self._entries.get(key)
        if entry is not None and entry[2]:
            return entry[0]
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [create(), 0, True]
            entry[2] = True
            return entry[0]

    def close(self) -> None:
        """Remove every instance, then close each one; the pool stays usable and starts empty."""
        with self._guard:
            entries, self._entries = list(self._entries.values()), {}
        if self._close is not None:
            for entry in entries:
                self._close(entry[0])

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries


def freeze(value: Any) -> Hashable:
    """A hashable pool key for ``value``, options included: dicts (sorted by key), lists, tuples and sets become
    tuples, recursively; a value that cannot be hashed (a client or engine object passed in) stands for itself, by
    identity."""
    if isinstance(value, dict):
        return tuple(sorted((str(key), freeze(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(freeze(item) for item in value)
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value
