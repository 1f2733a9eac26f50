"""The ``sqla`` lock: a lease kept as a row of the backend's table, used by default with the ``sqla`` backend.

:param backend: the :class:`~beaker_sqla.backend.SqlaBackend` whose table holds the lock row.
:param url: a SQLAlchemy URL to use when ``backend`` is not an ``sqla`` backend (``lock_type = sqla`` with another
    storage); one backend (one engine) per URL, with the default table.
:param lease: seconds the lock outlives a holder that died: the row's expiry, renewed every third of it while the
    lock is held; default 5, never more than ``expire``.
:param expire: the longest one holder keeps the lock, in seconds (default 30; the cache passes its
    ``lock_expire``).
:param timeout: seconds ``with lock:`` waits before raising :class:`~beaker_core.exceptions.LockTimeout`
    (None waits forever); default 30.

The lock is the row ``beaker-lock:<name>`` whose value is a random token of the acquisition. Acquiring is the
backend's atomic ``add`` (an insert that also takes over a row whose lease expired: ``INSERT ... ON CONFLICT DO
UPDATE ... WHERE expires <= now`` on SQLite and PostgreSQL, a transaction under ``SELECT ... FOR UPDATE`` on
MariaDB/MySQL), repeated with growing sleeps until taken or timed out. Renewing is an ``UPDATE`` of the expiry
``WHERE`` the row still holds the token and is live, releasing a ``DELETE ... WHERE`` it holds the token: a holder
whose lease lapsed never extends nor frees the next holder's lock. Every statement is its own short transaction, so
no connection is held while the lock is: a session-bound lock (PostgreSQL's advisory locks, MariaDB's ``GET_LOCK``)
would keep one pooled connection per held lock and be lost silently with that connection, while a row survives a
dropped connection and frees itself after its lease when its holder died. The lease is read on
:data:`beaker_core.clock.now` of each process, so hosts sharing a database need synchronised clocks (NTP).
"""
from __future__ import annotations

from beaker_core.locks import TokenLock

from .backend import SqlaBackend

LOCK_MARK = "beaker-lock:"


class SqlaLock(TokenLock):
    __doc__ = __doc__

    kind = "sqla"
    backend_class = SqlaBackend

    def prepare(self) -> None:
        self._key = LOCK_MARK + self.name

    def store_token(self, token: bytes) -> bytes | None:
        return token if self.backend.add(self._key, token, self.lease) else None

    def renew_token(self, token: bytes, ttl: float) -> bool:
        return self.backend.touch_if(self._key, token, ttl)

    def remove_token(self, token: bytes) -> bool:
        return self.backend.delete_if(self._key, token)
