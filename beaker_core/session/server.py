"""Server-side sessions: :class:`Session`, whose cookie holds a session id while the backend holds the data.

An id from a cookie is checked (charset, length, signature when ``session.secret`` is set) before it reaches a
backend, and an id the store does not know is never adopted: the client gets a new one. Saving hands the store this
request's changes (see :mod:`beaker_core.session.store`).
"""
from __future__ import annotations

import logging
from typing import Any

from .. import clock
from ..cookies import cookie_values
from ..exceptions import ConfigurationError, SerializationError
from .base import BaseSession
from .ids import SESSION_ID, new_session_id, valid_session_id
from .manager import SessionManager, manager_for

log = logging.getLogger(__name__)

#: how many session ids this process remembers having refreshed recently (the memo is emptied when it is full)
REFRESH_MEMO_SIZE = 10000
#: how many session ids of one request's cookies are looked up before giving up (each costs a backend read)
MAX_COOKIE_CANDIDATES = 4
_id_match = SESSION_ID.fullmatch


class Session(BaseSession):
    """A server-side session: the cookie holds a session id, the backend holds the data.

    Takes Beaker's arguments: ``Session(request, id=None, invalidate_corrupt=..., use_cookies=True, type=...,
    data_dir=..., key=..., timeout=..., secret=..., ...)`` (see :mod:`beaker_core.session.options`).
    """

    _seen = None  # what the store read at load, handed back at save (see beaker_core.session.store)

    def __init__(self, request: Any, id: str | None = None, invalidate_corrupt: Any = None, use_cookies: bool = True,
                 *, manager: SessionManager | None = None, **options: Any):
        """``manager``: the :class:`~beaker_core.session.manager.SessionManager` to serve the session with, built
        once (what the middleware passes); without it one is built from Beaker's keyword arguments."""
        if manager is None:
            if invalidate_corrupt is not None:
                options["invalidate_corrupt"] = invalidate_corrupt
            manager = manager_for(None, options)
        if manager.is_cookie:
            raise ConfigurationError("session.type = cookie is served by CookieSession, not Session")
        # what BaseSession._start does, inlined: this runs on every request that uses its session
        self._manager = manager
        self.request = request
        self.use_cookies = use_cookies
        if use_cookies and "set_cookie" not in request:
            request["cookie_out"] = None  # Beaker's request protocol: what to send, once set_cookie is true
            request["set_cookie"] = False
        self._changes = {}
        self._store = manager.store
        if id is not None:
            if not valid_session_id(id):
                raise ConfigurationError(f"a session id must be 22 to 128 characters of A-Z a-z 0-9 _ -, not {id!r}")
            if self._load(id):
                return
        elif use_cookies and self._load_from_cookie(request.get("cookie")):
            return
        # an id the store does not know is never adopted, whether a cookie or the application (id=) named it: the
        # session it named ended (expired, deleted) or never existed, and the new one gets a new id
        self._start_new()
        if use_cookies and request.get("cookie_out", False) is None and not request["set_cookie"]:
            # Beaker's request protocol shows the cookie a new session would send, before it is sent
            request["cookie_out"] = self._cookie_as_it_stands()

    def _load_from_cookie(self, header: Any) -> bool:
        """Load the session a cookie names. A request may carry several cookies of the session's name (a stale one
        from another path or subdomain, a planted one): each well-formed, correctly signed id is tried in turn, the
        first ``MAX_COOKIE_CANDIDATES`` of them, until one loads."""
        values = cookie_values(header, self._manager.key)
        if not values:
            return False
        signer = self._manager.signer
        tried = 0
        for value in values:
            if signer is not None:
                value = signer.unsign(value)
                if value is None:
                    continue
            if _id_match(value) is None:
                continue
            if self._load(value):
                self._client_had_cookie = True
                return True
            tried += 1
            if tried >= MAX_COOKIE_CANDIDATES:
                break
        return False

    def _load(self, session_id: str) -> bool:
        manager = self._manager
        try:
            record = self._store.load(session_id)
        except SerializationError as exc:
            if not manager.invalidate_corrupt:
                raise
            # left in the store until it expires: after a key rotation mistake (the old encrypt_key removed),
            # restoring the key brings the session back
            log.warning("session %s is unreadable, a new one is started: %s", session_id[:8], exc)
            self.was_invalidated = True
            return False
        if record is None:
            return False
        created, accessed, data, self._seen = record
        if manager.absolute_timeout is not None and clock.now() - created >= manager.absolute_timeout:
            self._store.delete(session_id)
            self.was_invalidated = True
            return False
        self.id = session_id
        self.is_new = False
        self.created = created
        self.last_accessed = accessed
        dict.update(self, data)
        return True

    def _reload(self) -> None:
        dict.clear(self)
        if not self._new_id:
            record = self._store.load(self.id)
            if record is not None:
                dict.update(self, record[2])
                self._seen = record[3]

    @property
    def namespace(self) -> Any:
        """The backend that holds the session (Beaker's ``namespace`` attribute)."""
        return self._manager.backend

    @property
    def namespace_class(self) -> type:
        """The class of :attr:`namespace` (Beaker's attribute of the same name)."""
        return type(self._manager.backend)

    def lock(self) -> None:
        """Hold the session's lock until :meth:`unlock` (saves made meanwhile use it)."""
        if self._held_lock is None:
            lock = self._manager.lock(self.id)
            lock.__enter__()
            self._held_lock = lock

    def unlock(self) -> None:
        lock, self._held_lock = self._held_lock, None
        if lock is not None:
            lock.__exit__(None, None, None)

    def _write(self) -> None:
        manager = self._manager
        now = clock.now()
        ttl = manager.record_ttl(self.created, now) if manager.expires else None
        if ttl == 0:
            return  # the absolute lifetime is over: nothing more is kept
        if self._new_id:
            if not self and not self._full and not manager.auto:
                self._changes.clear()
                return  # a new session that ended up empty needs neither a record nor a cookie
            if self._deleted:
                self.id = new_session_id()  # never store again under an id the client was told to drop
                self._deleted = False
            # a new session was created and first accessed at one time: the one the application could read
            self._store.create(self.id, self.created, self.created, dict(self), ttl)
            self._new_id = False
            self._send_cookie = True
        else:
            set_items: dict = {}
            deleted: list = []
            for key, kept in self._changes.items():
                if kept:
                    set_items[key] = dict.__getitem__(self, key)
                else:
                    deleted.append(key)
            if self._full or manager.auto:
                set_items = dict(self)
            if not self._store.update(self.id, self.created, now, set_items, deleted, ttl, self._held_lock, self._seen):
                log.info("session %s ended while a request was changing it; its changes are dropped", self.id[:8])
            elif manager.sliding_cookie:
                self._send_cookie = True
        self._changes.clear()
        self._full = False
        self._wrote = True

    def _refresh(self, force: bool) -> None:
        """Extend the idle timeout of a session this request only read, with the backend's cheap touch."""
        manager = self._manager
        if self._new_id or (self._wrote and not force):
            return
        if manager.sliding_cookie:
            self._send_cookie = True
        if not manager.save_accessed_time and not force or (manager.timeout is None and not force):
            return
        now = clock.now()
        memo = manager.refreshed
        last = memo.get(self.id, self.last_accessed or 0.0)
        if not force and now - last < manager.refresh_interval:
            return
        ttl = manager.record_ttl(self.created, now)
        if ttl == 0:
            return
        if force and manager.save_accessed_time:
            # save(accessed_only=True): the access time is written too, not only the lifetime extended
            self._store.update(self.id, self.created, now, {}, (), ttl, self._held_lock, self._seen)
            self.last_accessed = now
        else:
            self._store.touch(self.id, ttl)
        if len(memo) >= REFRESH_MEMO_SIZE:
            memo.clear()
        memo[self.id] = now

    def _remove_stored(self) -> None:
        if not self._new_id:
            self._store.delete(self.id)

    def _cookie_value(self) -> str | None:
        return None if self._new_id else self._out_value()

    def _out_value(self) -> str:
        signer = self._manager.signer
        return self.id if signer is None else signer.sign(self.id)
