"""Locks: named, with a timeout, usable as context managers.

A lock type is registered through the ``beaker_register_locks`` hook as a factory called as
``factory(name, *, backend=None, expire=30.0, timeout=..., **options)``. ``name`` identifies what is locked (a cache
key, a session id); two lock objects with the same name and configuration exclude each other, across whatever scope
the lock type covers: ``thread`` (one process), ``file`` (processes on one machine), network locks (every process
that reaches the server). ``expire`` bounds how long one holder keeps a distributed lock.

A network lock (:class:`TokenLock`) is a lease: its key lives ``lease`` seconds (5 by default, never more than
``expire``) and one daemon thread per process renews the leases of the locks the process holds, so a holder that
dies frees its lock within the lease while a live holder keeps it for as long as it works, up to ``expire``.
The file lock frees itself when its process dies and the thread lock lives in one process: neither needs a lease.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from typing import Any

from ..exceptions import ConfigurationError, LockTimeout
from ..pool import InstancePool
from ..util import coerce_float

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_EXPIRE = 30.0
#: the lease of a network lock, in seconds, when the lock is given none (read when a lock is made)
DEFAULT_LEASE = 5.0


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


_named_locks = InstancePool()  # name -> the threading.Lock its thread locks share, dropped when nobody holds it


class ThreadLock(Lock):
    """Excludes the threads of this process that use the same name."""

    kind = "thread"

    def __init__(self, name: str, *, backend: Any = None, expire: float = DEFAULT_EXPIRE,
                 timeout: float = DEFAULT_TIMEOUT):
        super().__init__(name, backend=backend, expire=expire, timeout=timeout)
        self._held: threading.Lock | None = None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        lock = _named_locks.checkout(self.name, threading.Lock)
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


class _Lease:
    """The renewal state of one acquisition of a :class:`TokenLock`."""

    __slots__ = ("taken", "deadline", "due", "lost", "failing")

    def __init__(self, taken: Any, deadline: float, due: float):
        self.taken = taken
        self.deadline = deadline  # the holder's expire, counted from the acquisition: no renewal past it
        self.due = due
        self.lost = False  # the store no longer held this acquisition's token at a renewal
        self.failing = False  # the last renewal raised (the store is unreachable): logged once


class _LeaseKeeper:
    """Renews the leases of the token locks held in this process, from one daemon thread.

    A lease is renewed every third of its length, so one late or failed renewal does not lose it. The thread starts
    with the first lease, sleeps while none is held and never keeps the process alive. A forked child starts with
    no lease and no thread: the locks it inherited are its parent's to renew and release.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._wakeup = threading.Condition(threading.Lock())
        self._leases: dict[TokenLock, _Lease] = {}
        self._thread: threading.Thread | None = None
        self._sleeps_until = float("inf")  # when the thread wakes next, so that hold() only wakes it to go sooner

    def __len__(self) -> int:
        return len(self._leases)

    def hold(self, lock: "TokenLock", taken: Any, acquired: float) -> _Lease:
        """Renew ``lock``'s lease until :meth:`drop` (the caller holds ``lock._lease_guard``)."""
        lease = _Lease(taken, acquired + lock.expire, acquired + lock.lease / 3)
        with self._wakeup:
            self._leases[lock] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="beaker-lock-leases", daemon=True)
                self._thread.start()
            elif lease.due < self._sleeps_until:
                self._wakeup.notify()
        return lease

    def drop(self, lock: "TokenLock") -> None:
        """Stop renewing ``lock``'s lease (the caller holds ``lock._lease_guard``)."""
        with self._wakeup:
            self._leases.pop(lock, None)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                now = time.monotonic()
                due = [(lock, lease) for lock, lease in self._leases.items() if lease.due <= now]
                if not due:
                    soonest = min((lease.due for lease in self._leases.values()), default=float("inf"))
                    self._sleeps_until = soonest
                    self._wakeup.wait(None if soonest == float("inf") else soonest - now)
                    self._sleeps_until = 0.0
                    continue
            for lock, lease in due:
                try:
                    self._renew(lock, lease)
                except Exception:  # a bug here must not end the renewals of every other lock
                    log.exception("renewing the lease of the %s lock %r failed", lock.kind, lock.name)
                    lease.due = time.monotonic() + lock.lease / 3

    def _renew(self, lock: "TokenLock", lease: _Lease) -> None:
        # the lock's lease guard keeps release() from giving the lock back while its lease is being renewed
        with lock._lease_guard:
            with self._wakeup:
                if self._leases.get(lock) is not lease:
                    return  # released meanwhile
            started = time.monotonic()
            ttl = min(lock.lease, lease.deadline - started)
            if ttl <= 0:  # held for expire seconds: the lock lapses now, and release() says so
                self.drop(lock)
                return
            try:
                kept = lock.renew_token(lease.taken, ttl)
            except Exception as exc:  # the store is unreachable: try again at the next turn, while the lease lasts
                if not lease.failing:
                    log.warning("could not renew the lease of the %s lock %r: %s", lock.kind, lock.name, exc)
                lease.failing = True
                kept = True
            else:
                lease.failing = False
            if kept:
                with self._wakeup:
                    lease.due = started + lock.lease / 3
                return
            lease.lost = True
            self.drop(lock)
            log.warning("the %s lock %r lost its lease while held (the store restarted, or the lock expired and "
                        "was taken): another holder may run at the same time", lock.kind, lock.name)


_leases = _LeaseKeeper()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_leases._reset)


_url_backends = InstancePool()  # (backend class, url) -> the backend the locks given that url share


class TokenLock(Lock):
    """Base of the locks kept in a shared store (redis, memcached): acquiring stores a random token of this
    acquisition under the lock's key with an expiry, if nobody holds it, retried with :class:`Backoff`; releasing
    removes it only while it still holds that token. A subclass provides the store's side:

    * ``backend_class``: the backend the lock lives in; with any other ``backend`` the lock needs the ``url``
      option, and opens ``backend_class(url=url)`` once per url (``url_key(url)`` checks the url and makes it a
      dict key);
    * ``prepare()``: called once the options are checked (``self.backend``, ``self.expire`` and ``self.lease``
      are set);
    * ``store_token(token)``: one attempt; stores the token for ``self.lease`` seconds and returns what :meth:`release`
      will give back (the token, or a marker of the subclass's own), or None when another holder has the lock;
    * ``renew_token(taken, ttl)``: gives the lock ``ttl`` more seconds if ``taken`` still holds it, in one atomic step
      (a script, a compare-and-set); False when it does not;
    * ``remove_token(taken)``: removes the lock if ``taken`` still holds it; False when it had expired (and so may
      have been taken by another holder meanwhile), which is logged as a warning.

    The lock is a lease: the key lives ``lease`` seconds and, while this process holds the lock, a daemon thread
    renews it every ``lease / 3`` seconds, for at most ``expire`` seconds after the acquisition. A holder that dies
    (killed, its machine gone) therefore frees the lock within ``lease`` seconds; a holder that works longer than
    ``expire`` loses it, as a hung holder must; a renewal that finds the token gone logs a warning. A subclass
    without ``renew_token`` keeps the key for ``expire`` seconds and is not renewed.

    One lock object may be shared by threads like a ``threading.Lock``; it is not reentrant.

    :param expire: the longest one holder keeps the lock, in seconds (default 30).
    :param lease: how long the lock outlives a holder that died, in seconds: the expiry of the key, renewed while
        the lock is held; default :data:`DEFAULT_LEASE` (5), never more than ``expire``. A lease must be long
        enough for the holder's process to run its renewal thread twice in it.
    """

    kind = "token"
    backend_class: type = object
    #: the shortest lease the store keeps reliably (a store with whole-second expiry may end a key a second early)
    shortest_lease = 0.0

    def __init__(self, name: str, *, backend: Any = None, expire: Any = DEFAULT_EXPIRE,
                 timeout: Any = DEFAULT_TIMEOUT, url: Any = None, lease: Any = None):
        expire_seconds = self._positive("expire", expire)
        super().__init__(name, backend=backend, expire=expire_seconds, timeout=self._seconds("timeout", timeout))
        lease_seconds = self._positive("lease", DEFAULT_LEASE if lease is None else lease)
        self.renews = type(self).renew_token is not TokenLock.renew_token
        self.lease = min(max(lease_seconds, self.shortest_lease), expire_seconds) if self.renews else expire_seconds
        if not isinstance(backend, self.backend_class):
            if url is None:
                got = f"a {type(backend).__name__}" if backend is not None else "no backend"
                raise ConfigurationError(f"the {self.kind} lock needs a {self.kind} backend or a url (it got {got}); "
                                         f"set lock_type to a lock that suits the backend, or give the lock a url")
            backend = self.backend_for_url(url)
        self.backend = backend
        self._taken: Any = None
        self._guard = threading.Lock()
        self._lease_guard = threading.Lock()
        self._held_lease: _Lease | None = None
        self.prepare()

    def _positive(self, option: str, value: Any) -> float:
        seconds = self._seconds(option, value)
        if seconds is None or seconds <= 0:
            raise ConfigurationError(f"the {self.kind} lock's {option} must be a positive number of seconds, "
                                     f"not {value!r}")
        return seconds

    def _seconds(self, option: str, value: Any) -> float | None:
        return coerce_float(f"the {self.kind} lock's {option}", value, minimum=0.0, allow_none=True)

    def backend_for_url(self, url: Any) -> Any:
        return _url_backends.get((self.backend_class, self.url_key(url)), lambda: self.backend_class(url=url))

    def url_key(self, url: Any) -> Any:
        if not isinstance(url, str):
            raise ConfigurationError(f"the {self.kind} lock's url must be a string, not {type(url).__name__}")
        return url

    def prepare(self) -> None:
        pass

    def store_token(self, token: bytes) -> Any:
        raise NotImplementedError

    def renew_token(self, taken: Any, ttl: float) -> bool:
        raise NotImplementedError

    def remove_token(self, taken: Any) -> bool:
        raise NotImplementedError

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        token = secrets.token_hex(16).encode("ascii")
        backoff = Backoff(blocking, timeout)
        while True:
            attempted = time.monotonic()  # the lease runs from the attempt: the reply may come late
            taken = self.store_token(token)
            if taken is not None:
                with self._lease_guard, self._guard:
                    self._taken = taken
                    if self.renews:
                        self._held_lease = _leases.hold(self, taken, attempted)
                return True
            if not backoff.wait():
                return False

    def release(self) -> None:
        with self._lease_guard:  # waits for a renewal under way, so that none runs after the give-back
            with self._guard:
                taken, self._taken = self._taken, None
                lease, self._held_lease = self._held_lease, None
            if taken is None:
                raise RuntimeError(f"release of the unheld {self.kind} lock {self.name!r}")
            if lease is not None:
                _leases.drop(self)
        if not self.remove_token(taken) and not (lease is not None and lease.lost):  # a lost lease was logged
            why = f"held longer than expire={self.expire}s" + (" or its lease lapsed" if self.renews else "")
            log.warning("the %s lock %r expired before it was released (%s): another holder may have run at the "
                        "same time", self.kind, self.name, why)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows: the lock may have expired since)."""
        return self._taken is not None
