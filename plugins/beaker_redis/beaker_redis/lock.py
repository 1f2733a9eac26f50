"""The ``redis`` lock: a distributed lock on a redis key, used by default with the redis backends.

:param backend: the redis backend (a :class:`~beaker_redis.backend.RedisBackend`) whose server holds the lock;
    its key prefix applies to the lock key too.
:param url: a redis URL to use when ``backend`` is not a redis backend (e.g. ``lock_type = redis`` with another
    storage); one shared client per URL.
:param lease: seconds the lock outlives a holder that died (killed, or its machine gone): the expiry of the key,
    renewed every third of it while the lock is held; default 5, never more than ``expire``.
:param expire: the longest one holder keeps the lock, in seconds: renewals stop then, so a holder that hangs frees
    the lock too; default 30. The cache passes its ``lock_expire`` (default 60).
:param timeout: seconds ``with lock:`` waits before raising :class:`~beaker_core.exceptions.LockTimeout`
    (None waits forever); default 30.

Acquiring is ``SET <prefix>beaker-lock:<name> <random token> NX PX <lease>``, repeated with growing sleeps (1 ms
doubling up to 50 ms) until taken or timed out. While the lock is held, the process's lease thread (see
:class:`beaker_core.locks.TokenLock`) runs a Lua script that sets the key's expiry again only while the key still
holds this acquisition's token; releasing runs one that deletes the key only while it holds that token. A holder
whose lease was lost (the server restarted, or the key expired and another holder took it) therefore never
extends nor frees the next holder's lock: it logs a warning and finishes its work. One lock object may be shared
by threads like a ``threading.Lock``; it is not reentrant.
"""
from __future__ import annotations

import math

from beaker_core.locks import TokenLock

from .backend import RedisBackend

LOCK_MARK = "beaker-lock:"
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class RedisLock(TokenLock):
    __doc__ = __doc__

    kind = "redis"
    backend_class = RedisBackend

    def prepare(self) -> None:
        self._key = self.backend._key(LOCK_MARK + self.name)
        self._lease_ms = _milliseconds(self.lease)

    def store_token(self, token: bytes) -> bytes | None:
        try:
            taken = self.backend.client.set(self._key, token, nx=True, px=self._lease_ms)
        except self.backend.errors as exc:
            raise self.backend.failure(f"acquiring the lock {self.name!r}", exc) from exc
        return token if taken else None

    def renew_token(self, token: bytes, ttl: float) -> bool:
        try:
            return bool(self.backend.run_script(_RENEW, [self._key], [token, _milliseconds(ttl)]))
        except self.backend.errors as exc:
            raise self.backend.failure(f"renewing the lock {self.name!r}", exc) from exc

    def remove_token(self, token: bytes) -> bool:
        try:
            return bool(self.backend.run_script(_RELEASE, [self._key], [token]))
        except self.backend.errors as exc:
            raise self.backend.failure(f"releasing the lock {self.name!r}", exc) from exc


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
