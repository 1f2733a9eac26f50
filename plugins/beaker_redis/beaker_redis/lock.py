"""The ``redis`` lock: a distributed lock on a redis key, used by default with the redis backends.

:param backend: the redis backend (a :class:`~beaker_redis.backend.RedisBackend`) whose server holds the lock;
    its key prefix applies to the lock key too.
:param url: a redis URL to use when ``backend`` is not a redis backend (e.g. ``lock_type = redis`` with another
    storage); one shared client per URL.
:param expire: seconds after which the lock frees itself (a holder that crashed never blocks anyone longer);
    default 30. A holder that works longer than this loses the lock: keep it above the longest creation time.
:param timeout: seconds ``with lock:`` waits before raising :class:`~beaker_core.exceptions.LockTimeout`
    (None waits forever); default 30.

Acquiring is ``SET <prefix>beaker-lock:<name> <random token> NX PX <expire>``, repeated with growing sleeps (1 ms
doubling up to 50 ms) until taken or timed out. Releasing runs a Lua script that deletes the key only while it still
holds this acquisition's token, so a holder whose lock expired never frees the lock of the next holder. One lock
object may be shared by threads like a ``threading.Lock``; it is not reentrant.
"""
from __future__ import annotations

import logging
import math
import secrets
import threading
from typing import Any

from beaker_core.exceptions import ConfigurationError
from beaker_core.locks import DEFAULT_EXPIRE, DEFAULT_TIMEOUT, Backoff, Lock
from beaker_core.util import coerce_float

from .backend import RedisBackend

log = logging.getLogger(__name__)

LOCK_MARK = "beaker-lock:"
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_url_backends: dict[str, RedisBackend] = {}
_url_guard = threading.Lock()


def _backend_for_url(url: Any) -> RedisBackend:
    if not isinstance(url, str):
        raise ConfigurationError(f"the redis lock's url must be a string, not {type(url).__name__}")
    with _url_guard:
        backend = _url_backends.get(url)
        if backend is None:
            backend = _url_backends[url] = RedisBackend(url=url)
        return backend


def _seconds(option: str, value: Any, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    number = coerce_float(f"the redis lock's {option}", value, minimum=0.0)
    if math.isnan(number) or math.isinf(number):
        raise ConfigurationError(f"the redis lock's {option} must be a finite number of seconds, not {value!r}")
    return number


class RedisLock(Lock):
    __doc__ = __doc__

    kind = "redis"

    def __init__(self, name: str, *, backend: Any = None, expire: Any = DEFAULT_EXPIRE,
                 timeout: Any = DEFAULT_TIMEOUT, url: Any = None):
        expire_seconds = _seconds("expire", expire, allow_none=False)
        if expire_seconds <= 0:
            raise ConfigurationError(f"the redis lock's expire must be a positive number of seconds, not {expire!r}")
        super().__init__(name, backend=backend, expire=expire_seconds,
                         timeout=_seconds("timeout", timeout, allow_none=True))
        if not isinstance(backend, RedisBackend):
            if url is None:
                got = f"a {type(backend).__name__}" if backend is not None else "no backend"
                raise ConfigurationError(f"the redis lock needs a redis backend or a url (it got {got}); "
                                         f"set lock_type to a lock that suits the backend, or give the lock a url")
            backend = _backend_for_url(url)
        self.backend = backend
        self._key = backend._key(LOCK_MARK + name)
        self._expire_ms = max(1, math.ceil(expire_seconds * 1000))
        self._token: bytes | None = None
        self._guard = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        token = secrets.token_hex(16).encode("ascii")
        client = self.backend.client
        backoff = Backoff(blocking, timeout)
        while True:
            try:
                taken = client.set(self._key, token, nx=True, px=self._expire_ms)
            except self.backend._errors as exc:
                raise self.backend._error(f"acquiring the lock {self.name!r}", exc) from exc
            if taken:
                with self._guard:
                    self._token = token
                return True
            if not backoff.wait():
                return False

    def release(self) -> None:
        with self._guard:
            token, self._token = self._token, None
        if token is None:
            raise RuntimeError(f"release of the unheld redis lock {self.name!r}")
        try:
            released = self.backend.run_script(_RELEASE, [self._key], [token])
        except self.backend._errors as exc:
            raise self.backend._error(f"releasing the lock {self.name!r}", exc) from exc
        if not released:
            log.warning("the redis lock %r expired before it was released (held longer than expire=%ss): another "
                        "holder may have run at the same time", self.name, self.expire)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows: the lock may have expired since)."""
        return self._token is not None
