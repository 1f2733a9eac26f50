"""Locks: named, with a timeout, usable as context managers.

A lock type is registered through the ``beaker_register_locks`` hook as a factory called as
``factory(name, *, backend=None, expire=30.0, timeout=..., **options)``. ``name`` identifies what is locked (a cache
key, a session id); two lock objects with the same name and configuration exclude each other, across whatever scope
the lock type covers: ``thread`` (one process), ``file`` (processes on one machine), network locks (every process
that reaches the server). ``expire`` bounds how long a distributed lock survives a holder that crashed.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from ..exceptions import ConfigurationError, LockTimeout
from ..util import coerce_float

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_EXPIRE = 30.0


class Backoff:
    """The waits between attempts to take a lock that is held elsewhere: 1 ms, doubling up to 50 ms, never past
    the caller's timeout. Every polling lock (file, redis, memcached) waits the same way through it::

        backoff = Backoff(blocking, timeout)
        while not try_once():
            if not backoff.wait():
                return False
    """

    first = 0.001
    longest = 0.05

    def __init__(self, blocking: bool, timeout: float | None):
        self.blocking = blocking
        self.deadline = time.monotonic() + max(timeout, 0) if blocking and timeout is not None else None
        self.sleep = self.first

    def wait(self) -> bool:
        """Sleep before the next attempt; False when the caller should give up instead."""
        if not self.blocking:
            return False
        sleep = self.sleep
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return False
            sleep = min(sleep, remaining)
        time.sleep(sleep)
        self.sleep = min(self.sleep * 2, self.longest)
        return True


class Lock:
    """Base class. ``acquire`` returns whether the lock was taken; ``with lock:`` raises LockTimeout instead."""

    kind = "lock"

    def __init__(self, name: str, *, backend: Any = None, expire: float = DEFAULT_EXPIRE,
                 timeout: float = DEFAULT_TIMEOUT):
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a lock name must be a non-empty string, not {name!r}")
        self.name = name
        self.expire = expire
        self.timeout = timeout

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Lock":
        if not self.acquire(True, self.timeout):
            raise LockTimeout(f"could not acquire the {self.kind} lock {self.name!r} within {self.timeout} seconds")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class NullLock(Lock):
    """Always acquired at once; for stores that need no coordination."""

    kind = "null"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return True

    def release(self) -> None:
        pass


class _NamedLocks:
    """Process-wide ``threading.Lock`` objects by name, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # name -> [lock, users]

    def checkout(self, name: str) -> threading.Lock:
        with self._guard:
            entry = self._locks.get(name)
            if entry is None:
                entry = self._locks[name] = [threading.Lock(), 0]
            entry[1] += 1
            return entry[0]

    def checkin(self, name: str) -> None:
        with self._guard:
            entry = self._locks.get(name)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._locks[name]

    def __len__(self) -> int:
        return len(self._locks)


_named_locks = _NamedLocks()


class ThreadLock(Lock):
    """Excludes the threads of this process that use the same name."""

    kind = "thread"

    def __init__(self, name: str, *, backend: Any = None, expire: float = DEFAULT_EXPIRE,
                 timeout: float = DEFAULT_TIMEOUT):
        super().__init__(name, backend=backend, expire=expire, timeout=timeout)
        self._held: threading.Lock | None = None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        lock = _named_locks.checkout(self.name)
        if not blocking:
            taken = lock.acquire(False)
        else:
            taken = lock.acquire(True, -1 if timeout is None else max(timeout, 0))
        if taken:
            self._held = lock
        else:
            _named_locks.checkin(self.name)
        return taken

    def release(self) -> None:
        lock, self._held = self._held, None
        if lock is None:
            raise RuntimeError(f"release of the unheld lock {self.name!r}")
        lock.release()
        _named_locks.checkin(self.name)


_url_backends: dict[tuple, Any] = {}  # (backend class, url) -> the backend the locks given that url share
_url_guard = threading.Lock()


class TokenLock(Lock):
    """Base of the locks kept in a shared store (redis, memcached): acquiring stores a random token of this
    acquisition under the lock's key with an expiry, if nobody holds it, retried with :class:`Backoff`; releasing
    removes it only while it still holds that token. A subclass provides the store's side:

    * ``backend_class``: the backend the lock lives in; with any other ``backend`` the lock needs the ``url``
      option, and opens ``backend_class(url=url)`` once per url (``_url_key(url)`` checks the url and makes it a
      dict key);
    * ``_prepare()``: called once the options are checked (``self.backend`` and ``self.expire`` are set);
    * ``_take(token)``: one attempt; returns what :meth:`release` will give back (the token, or a marker of the
      subclass's own), or None when another holder has the lock;
    * ``_give_back(taken)``: removes the lock if ``taken`` still holds it; False when it had expired (and so may
      have been taken by another holder meanwhile), which is logged as a warning.

    One lock object may be shared by threads like a ``threading.Lock``; it is not reentrant.
    """

    kind = "token"
    backend_class: type = object

    def __init__(self, name: str, *, backend: Any = None, expire: Any = DEFAULT_EXPIRE,
                 timeout: Any = DEFAULT_TIMEOUT, url: Any = None):
        expire_seconds = self._seconds("expire", expire)
        if expire_seconds is None or expire_seconds <= 0:
            raise ConfigurationError(f"the {self.kind} lock's expire must be a positive number of seconds, "
                                     f"not {expire!r}")
        super().__init__(name, backend=backend, expire=expire_seconds, timeout=self._seconds("timeout", timeout))
        if not isinstance(backend, self.backend_class):
            if url is None:
                got = f"a {type(backend).__name__}" if backend is not None else "no backend"
                raise ConfigurationError(f"the {self.kind} lock needs a {self.kind} backend or a url (it got {got}); "
                                         f"set lock_type to a lock that suits the backend, or give the lock a url")
            backend = self._backend_for_url(url)
        self.backend = backend
        self._taken: Any = None
        self._guard = threading.Lock()
        self._prepare()

    def _seconds(self, option: str, value: Any) -> float | None:
        return coerce_float(f"the {self.kind} lock's {option}", value, minimum=0.0, allow_none=True)

    def _backend_for_url(self, url: Any) -> Any:
        key = (self.backend_class, self._url_key(url))
        with _url_guard:
            backend = _url_backends.get(key)
            if backend is None:
                backend = _url_backends[key] = self.backend_class(url=url)
            return backend

    def _url_key(self, url: Any) -> Any:
        if not isinstance(url, str):
            raise ConfigurationError(f"the {self.kind} lock's url must be a string, not {type(url).__name__}")
        return url

    def _prepare(self) -> None:
        pass

    def _take(self, token: bytes) -> Any:
        raise NotImplementedError

    def _give_back(self, taken: Any) -> bool:
        raise NotImplementedError

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        token = secrets.token_hex(16).encode("ascii")
        backoff = Backoff(blocking, timeout)
        while True:
            taken = self._take(token)
            if taken is not None:
                with self._guard:
                    self._taken = taken
                return True
            if not backoff.wait():
                return False

    def release(self) -> None:
        with self._guard:
            taken, self._taken = self._taken, None
        if taken is None:
            raise RuntimeError(f"release of the unheld {self.kind} lock {self.name!r}")
        if not self._give_back(taken):
            log.warning("the %s lock %r expired before it was released (held longer than expire=%ss): another "
                        "holder may have run at the same time", self.kind, self.name, self.expire)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows: the lock may have expired since)."""
        return self._taken is not None
