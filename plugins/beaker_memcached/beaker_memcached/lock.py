"""The ``memcached`` lock: a distributed lock built on memcached's atomic ``add``, with an expiry.

:param backend: the memcached backend (a :class:`~beaker_memcached.backend.MemcachedBackend`) whose servers hold
    the lock; the lock key is mapped like any other key, so it lives on one of them.
:param url: memcached servers to use when ``backend`` is not a memcached backend (one shared backend per url).
:param expire: seconds after which the lock frees itself, so a crashed holder never blocks anyone longer
    (rounded up to whole seconds, memcached's resolution); default 30.
:param timeout: seconds ``with lock:`` waits before raising :class:`~beaker_core.exceptions.LockTimeout`
    (None waits forever); default 30.

Acquiring is ``add <prefix>beaker-lock:<name> <random token>`` with the expiry, repeated with growing sleeps (1 ms
doubling up to 50 ms). Releasing checks the token, as far as memcached allows: ``gets`` reads the holder's token and
its CAS id; only if the token is this acquisition's, ``cas`` overwrites it with a short-lived tombstone (which fails
if anyone changed the item since) and the tombstone is deleted. A holder whose lock expired and was taken by another
therefore leaves the new holder's lock alone.

When the server holding the lock cannot be reached, the lock follows its backend's ``strict`` option. A strict
backend raises :class:`~beaker_core.exceptions.BackendError` naming the server. By default the lock is granted
without exclusion and a warning is logged, the same way the backend turns cache reads from that server into misses:
the lock exists to protect a cache against stampedes, and a cache with a server down is recomputing that share of
its values anyway; refusing the lock would turn a degraded cache into failing requests.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from beaker_core.exceptions import BackendError
from beaker_core.locks import TokenLock

from .backend import MemcachedBackend

log = logging.getLogger(__name__)

LOCK_MARK = "beaker-lock:"
_TOMBSTONE = b"released"
_DEGRADED: Any = object()  # what a lock granted without exclusion while its server was down holds

class MemcachedLock(TokenLock):
    __doc__ = __doc__

    kind = "memcached"
    backend_class = MemcachedBackend

    def _url_key(self, url: Any) -> Any:
        if isinstance(url, (list, tuple)):  # a list of servers, as the backend takes it
            return tuple(url)
        return super()._url_key(url)

    def _prepare(self) -> None:
        self._mapped, self._node = self.backend._locate(LOCK_MARK + self.name)
        self._expire = max(1, math.ceil(self.expire))

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.backend._raise_failure(self._node, f"{operation} the lock {self.name!r}", exc)

    def _degraded(self, exc: BaseException | None) -> Any:
        """Grant the lock without exclusion because its server is down (non-strict backends only)."""
        if exc is not None:
            try:
                self._failed("acquiring", exc)
            except BackendError:
                if self.backend.strict or not self._node.down_until:
                    raise
        elif self.backend.strict:
            raise BackendError(f"memcached server {self._node.address} is down ({self.backend.describe()}): "
                               f"{self._node.last_error}")
        # the backend logged the outage once; this happens on every miss of that server's share
        log.debug("memcached server %s is down: the lock %r is granted without exclusion", self._node.address,
                  self.name)
        return _DEGRADED

    def _take(self, token: bytes) -> Any:
        if self._node.down_until and self._node.skipped():
            return self._degraded(None)
        try:
            taken = self._node.client().add(self._mapped, token, self._expire, noreply=False)
        except self.backend._errors as exc:
            return self._degraded(exc)
        return token if taken else None

    def _give_back(self, token: Any) -> bool:
        if token is _DEGRADED:
            return True
        try:
            client = self._node.client()
            holder, cas_id = client.gets(self._mapped)
            if holder == token and client.cas(self._mapped, _TOMBSTONE, cas_id, 1, noreply=False):
                client.delete(self._mapped, noreply=False)
                return True
        except self.backend._errors as exc:
            try:
                self._failed("releasing", exc)
            except BackendError:
                if self.backend.strict or not self._node.down_until:
                    raise
                return True  # the server went down while the lock was held: the lock went with it
        return False
