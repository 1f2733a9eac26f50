"""The ``memcached`` lock: a distributed lock built on memcached's atomic ``add``, kept as a lease.

:param backend: the memcached backend (a :class:`~beaker_memcached.backend.MemcachedBackend`) whose servers hold
    the lock; the lock key is mapped like any other key, so it lives on one of them.
:param url: memcached servers to use when ``backend`` is not a memcached backend (one shared backend per url).
:param lease: seconds the lock outlives a holder that died (killed, or its machine gone): the expiry of the item,
    renewed every third of it while the lock is held; default 5, at least 2 (memcached counts expiry in whole
    seconds and may end an item up to one second early), never more than ``expire``. Rounded up to whole seconds.
:param expire: the longest one holder keeps the lock, in seconds: renewals stop then, so a holder that hangs frees
    the lock too; default 30. The cache passes its ``lock_expire`` (default 60).
:param timeout: seconds ``with lock:`` waits before raising :class:`~beaker_core.exceptions.LockTimeout`
    (None waits forever); default 30.

Acquiring is ``add <prefix>beaker-lock:<name> <random token>`` with the lease as expiry, repeated with growing sleeps
(1 ms doubling up to 50 ms). Renewing and releasing check the token with memcached's compare-and-set: ``gets`` reads
the holder's token and its CAS id; only if the token is this acquisition's, ``cas`` writes it again with a new expiry
(renewal) or overwrites it with a short-lived tombstone that is then deleted (release). ``cas`` fails if anyone
changed the item since the ``gets``, so a holder whose lease was lost (the server restarted, or the item expired and
another holder took it) never extends nor frees the next holder's lock: it logs a warning and finishes its work.

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
    shortest_lease = 2.0  # an item may expire up to a second early: a 1 s lease could lapse between renewals

    def url_key(self, url: Any) -> Any:
        if isinstance(url, (list, tuple)):  # a list of servers, as the backend takes it
            return tuple(url)
        return super().url_key(url)

    def prepare(self) -> None:
        self._mapped, self._node = self.backend.locate(LOCK_MARK + self.name)
        self._lease = _whole_seconds(self.lease)

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.backend.raise_failure(self._node, f"{operation} the lock {self.name!r}", exc)

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

    def store_token(self, token: bytes) -> Any:
        if self._node.down_until and self._node.skipped():
            return self._degraded(None)
        try:
            taken = self._node.client().add(self._mapped, token, self._lease, noreply=False)
        except self.backend.errors as exc:
            return self._degraded(exc)
        return token if taken else None

    def renew_token(self, token: Any, ttl: float) -> bool:
        if token is _DEGRADED:
            return True
        if self._node.down_until and self._node.skipped():  # fail fast, as every call to a server marked down
            raise BackendError(f"memcached server {self._node.address} is down ({self.backend.describe()}): "
                               f"{self._node.last_error}")
        try:
            client = self._node.client()
            holder, cas_id = client.gets(self._mapped)
            return holder == token and bool(client.cas(self._mapped, token, cas_id, _whole_seconds(ttl),
                                                       noreply=False))
        except self.backend.errors as exc:
            self._failed("renewing", exc)
            raise  # not reached: _failed raises the BackendError

    def remove_token(self, token: Any) -> bool:
        if token is _DEGRADED:
            return True
        try:
            client = self._node.client()
            holder, cas_id = client.gets(self._mapped)
            if holder == token and client.cas(self._mapped, _TOMBSTONE, cas_id, 1, noreply=False):
                client.delete(self._mapped, noreply=False)
                return True
        except self.backend.errors as exc:
            try:
                self._failed("releasing", exc)
            except BackendError:
                if self.backend.strict or not self._node.down_until:
                    raise
                return True  # the server went down while the lock was held: the lock went with it
        return False


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
