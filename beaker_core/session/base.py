"""What server-side and cookie sessions share: :class:`BaseSession`, a dict that tracks this request's changes,
with Beaker's session API and the decision of which cookie to send. See :mod:`beaker_core.session` for the whole
story.
"""
from __future__ import annotations

from typing import Any

from .. import clock
from ..cookies import check_attribute, cookie_attributes, cookie_jar, delete_cookie_header, set_cookie_header
from ..util import coerce_cookie_expires
from .ids import new_session_id
from .manager import SessionManager


#: Beaker's metadata keys, answered from the session's attributes
_METADATA_KEYS = frozenset({"_id", "_accessed_time", "_creation_time"})


class BaseSession(dict):
    """What server-side and cookie sessions share: change tracking, the public API, the cookie decision."""

    # the attributes every request sets live in slots (cheaper to set than a __dict__); others go in __dict__
    __slots__ = ("_manager", "request", "use_cookies", "_changes", "_store", "id", "is_new", "created",
                 "last_accessed", "__dict__")

    # Per-request state starts as these class attributes; an instance sets only what changes (cheaper to create).
    _full = False                 # write every key at the next save
    _new_id = False               # the id was made in this request and nothing is stored under it yet
    _send_cookie = False          # the cookie must go out at the next persist
    _client_had_cookie = False    # the client holds a cookie naming this session (loaded from it, or sent to it)
    _cookie_expires = None
    _used = False                 # read through request.session (ASGI) or ended, regenerated, marked
    _held_lock = None
    _wrote = False                # a save wrote the record in this request: no refresh needed
    _deleted = False              # delete() ran: a later save stores the session under a new id
    was_invalidated = False

    def _start(self, request: Any, manager: SessionManager, use_cookies: bool) -> None:
        self._manager = manager
        self.request = request
        self.use_cookies = use_cookies
        self._changes: dict = {}      # key -> True (set) / False (deleted) in this request

    def _start_new(self) -> None:
        """Begin a new session under a new id, which nothing is stored under yet (no cookie named a session that
        loads, or the session ended)."""
        self.id = new_session_id()
        self._new_id = True
        self.is_new = True
        self.created = clock.now()
        self.last_accessed = None

    @property
    def key(self) -> str:
        """The cookie name."""
        return self._manager.key

    @property
    def timeout(self) -> float | None:
        return self._manager.timeout

    # -- Beaker's metadata keys, read-only: ``session['_accessed_time']``, ``'_creation_time' in session`` -----

    def __missing__(self, key: Any) -> Any:
        if key == "_accessed_time":
            return self.created if self.last_accessed is None else self.last_accessed
        if key == "_creation_time":
            return self.created
        if key == "_id":
            return self.id
        raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return dict.__contains__(self, key) or key in _METADATA_KEYS

    # -- the dict, tracking changes ------------------------------------------------------------------------------

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self._changes[key] = True

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._changes[key] = False

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            self._changes[key] = False
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple:
        key, value = dict.popitem(self)
        self._changes[key] = False
        return key, value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return dict.__getitem__(self, key)
        self[key] = default
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> "BaseSession":
        self.update(other)
        return self

    def clear(self) -> None:
        for key in self:
            self._changes[key] = False
        dict.clear(self)

    def has_key(self, key: Any) -> bool:
        return key in self

    def changed(self, *keys: Any) -> None:
        """Mark keys as changed (all keys when none are named), for changes made inside their values."""
        self._used = True
        if not keys:
            self._full = True
        for key in keys:
            if key in self:
                self._changes[key] = True

    def _replace(self, data: dict) -> None:
        dict.clear(self)
        dict.update(self, data)

    # -- Beaker's API --------------------------------------------------------------------------------------------

    def accessed(self) -> bool:
        """Whether the session was used in this request (a session object exists only once it is used)."""
        return True

    def mark_accessed(self) -> None:
        """Record that the application read the session (Starlette's ``request.session`` calls this)."""
        self._used = True

    def dirty(self) -> bool:
        """Whether this request changed the session: a key set or deleted, or :meth:`changed` called."""
        return bool(self._changes or self._full)

    def needs_persist(self) -> bool:
        """Whether :meth:`persist` has work for this request: the session changed, or it was used (read through
        :meth:`mark_accessed`, ended, given a new id or a new cookie), so its idle timeout or cookie may need a
        refresh. A session loaded and left untouched has none (what the ASGI middleware asks before saving)."""
        return bool(self._changes or self._full or self._used)

    def cookie_header(self) -> str | None:
        """The ``Set-Cookie`` value this request must send, or None: Beaker's ``request['cookie_out']`` once
        ``request['set_cookie']`` is true (call it after :meth:`persist`, which decides the final cookie)."""
        request = self.request
        if request.get("set_cookie"):
            return request.get("cookie_out") or None
        return None

    @property
    def cookie_expires(self) -> Any:
        return self._manager.cookie_expires if self._cookie_expires is None else self._cookie_expires

    @cookie_expires.setter
    def cookie_expires(self, value: Any) -> None:
        """Change this session's cookie lifetime (a "remember me" box): the cookie is sent again."""
        self._cookie_expires = coerce_cookie_expires("cookie_expires", value)
        self._used = True
        self._send_cookie = True
        self._full = True

    def save(self, accessed_only: bool = False) -> None:
        """Write the session now: every key (so changes inside values are saved too), or with ``accessed_only``
        just refresh its idle timeout."""
        if accessed_only:
            self._refresh(force=True)
        else:
            self._full = True
            self.persist()

    def persist(self) -> None:
        """Save what this request changed (what the middleware calls at the end of a request)."""
        if self._changes or self._full or self._manager.auto:
            self._write()
        elif not self._new_id:
            self._refresh(force=False)
        if self._send_cookie or (self._new_id and self._client_had_cookie):
            self._emit_cookie()

    def revert(self) -> None:
        """Forget this request's unsaved changes."""
        self._changes.clear()
        self._full = False
        self._reload()

    def invalidate(self) -> None:
        """End this session: its record is removed now; the session continues empty, under a new id."""
        self._end()
        self.was_invalidated = True

    def delete(self) -> None:
        """Remove the session from the store now and send an expired cookie, as Beaker does; the session keeps its
        id until it is saved again, which then stores it under a new id."""
        self._forget()
        self._deleted = True
        self._send_cookie = False
        if self.use_cookies:
            self.request["cookie_out"] = delete_cookie_header(self._manager.key, self._attributes(),
                                                              self._out_value())
            self.request["set_cookie"] = True

    def regenerate_id(self) -> None:
        """Keep the data under a new id (do it at login); the old id's record is removed now."""
        self._remove_stored()
        self.id = new_session_id()
        self._new_id = True
        self._full = True
        self._used = True
        self._send_cookie = True
        self._update_cookie_out()

    def _forget(self) -> None:
        """Remove the stored session and empty this one: nothing is stored under its id any more."""
        self._used = True
        self._remove_stored()
        dict.clear(self)
        self._changes.clear()
        self._full = False
        self._new_id = True

    def _end(self) -> None:
        self._forget()
        self._start_new()

    # -- cookies -------------------------------------------------------------------------------------------------

    @property
    def domain(self) -> str | None:
        """The cookie's Domain: ``session.cookie_domain``, unless this session set its own."""
        return dict.get(self, "_domain") or self._manager.cookie_domain

    @domain.setter
    def domain(self, value: str | None) -> None:
        """Send this session's cookie for another domain, from now on (stored with the session, as in Beaker)."""
        self["_domain"] = check_attribute("domain", value)
        self._cookie_changed()

    @property
    def path(self) -> str:
        """The cookie's Path: ``session.cookie_path``, unless this session set its own."""
        return dict.get(self, "_path") or self._manager.cookie_path

    @path.setter
    def path(self, value: str) -> None:
        self["_path"] = check_attribute("path", value, path=True)
        self._cookie_changed()

    @property
    def cookie(self) -> Any:
        """The session cookie as a :class:`http.cookies.SimpleCookie` (Beaker's attribute)."""
        manager = self._manager
        return cookie_jar(manager.key, self._out_value(), self.path, self.domain, manager.secure, manager.httponly,
                          manager.samesite, self.cookie_expires)

    def _set_cookie_expires(self, value: Any) -> bool:
        """Beaker's method behind ``cookie_expires = value``."""
        self.cookie_expires = value
        return True

    def _cookie_changed(self) -> None:
        self._used = True
        self._send_cookie = True
        self._update_cookie_out()

    def _update_cookie_out(self) -> None:
        """Put the cookie as it now stands in ``request['cookie_out']`` at once, as Beaker does (persist sends the
        final one)."""
        if self.use_cookies:
            self.request["cookie_out"] = self._cookie_as_it_stands()
            self.request["set_cookie"] = True

    def _cookie_as_it_stands(self) -> str:
        """The ``Set-Cookie`` value for the cookie as it now stands."""
        return set_cookie_header(self._manager.key, self._out_value(), self._attributes(), self.cookie_expires)

    def _attributes(self) -> str:
        """The cookie attributes, the configured ones unless this session set a domain or path."""
        manager = self._manager
        if not (dict.__contains__(self, "_domain") or dict.__contains__(self, "_path")):
            return manager.attributes
        return cookie_attributes(self.path, self.domain, manager.secure, manager.httponly, manager.samesite)

    def _out_value(self) -> str:
        """The cookie value this session would send now."""
        raise NotImplementedError

    def _emit_cookie(self) -> None:
        if not self.use_cookies:
            return
        manager = self._manager
        if self._send_cookie:
            value = self._cookie_value()
            if value is not None:
                self.request["cookie_out"] = set_cookie_header(manager.key, value, self._attributes(),
                                                               self.cookie_expires)
                self.request["set_cookie"] = True
                self._send_cookie = False
                self._client_had_cookie = True
                return
        if self._new_id and self._client_had_cookie:
            # the session the cookie named was deleted or invalidated, and stayed empty: clear that cookie (a cookie
            # naming a session this request did not load is left alone: it may be another path's)
            self.request["cookie_out"] = delete_cookie_header(manager.key, self._attributes())
            self.request["set_cookie"] = True
            self._client_had_cookie = False

    def _cookie_value(self) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        # Beaker's sessions print as dicts that hold their metadata keys; these print them first
        started = hasattr(self, "id") and hasattr(self, "created")
        metadata = {key: self[key] for key in ("_id", "_creation_time", "_accessed_time")} if started else {}
        return repr({**metadata, **self})
