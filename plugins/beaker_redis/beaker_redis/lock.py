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


class RedisLock(TokenLock):
    __doc__ = __doc__

    kind = "redis"
    backend_class = RedisBackend

    def _prepare(self) -> None:
        self._key = self.backend._key(LOCK_MARK + self.name)
        self._expire_ms = max(1, math.ceil(self.expire * 1000))

    def _take(self, token: bytes) -> bytes | None:
        try:
            taken = self.backend.client.set(self._key, token, nx=True, px=self._expire_ms)
        except self.backend._errors as exc:
            raise self.backend._error(f"acquiring the lock {self.name!r}", exc) from exc
        return token if taken else None

    def _give_back(self, token: bytes) -> bool:
        try:
            return bool(self.backend.run_script(_RELEASE, [self._key], [token]))
        except self.backend._errors as exc:
            raise self.backend._error(f"releasing the lock {self.name!r}", exc) from exc
