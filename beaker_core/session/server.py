"""Sessions with Beaker's API: :class:`Session` (server-side), :class:`CookieSession`, :class:`SessionObject`.

A session is a dict that remembers which top-level keys this request set or deleted. Saving applies exactly those
changes to the stored record (see :mod:`beaker_core.session_store`), so concurrent requests that change different
keys keep both changes, and nothing is written when nothing changed. Changes are saved at the end of the request
without an explicit ``save()``. A change *inside* a value (``session['cart'].append(item)``) is not seen: assign the
key again (``session['cart'] = cart``), call ``session.changed('cart')``, call ``session.save()``, or configure
``session.auto = true``.

The request dict follows Beaker's protocol: the session reads the ``Cookie`` header from ``request['cookie']`` and
leaves the ``Set-Cookie`` value to send in ``request['cookie_out']`` (with ``request['set_cookie'] = True``).

Session ids are 32 characters of base64url from :func:`secrets.token_urlsafe` (192 bits). An id from a cookie is
checked (charset, length, signature when ``session.secret`` is set) before it reaches a backend, and an id the store
does not know is never adopted: the client gets a new one.
"""
from __future__ import annotations

from typing import Any

from . import clock
from .cookie_session import CookieSession
from .cookies import InvalidSignature, SignedCookie, cookie_values
from .exceptions import ConfigurationError, SerializationError
from .session_base import _ID, _BaseSession, _config_for, log, new_session_id, valid_session_id
from .session_config import SessionConfig

__all__ = ["Session", "CookieSession", "SessionObject", "SignedCookie", "InvalidSignature", "new_session_id",
           "valid_session_id", "lazy_session"]

_REFRESH_MEMO_SIZE = 10000
#: how many session ids of one request's cookies are looked up before giving up (each costs a backend read)
MAX_COOKIE_CANDIDATES = 4
_id_match = _ID.fullmatch


class Session(_BaseSession):
    """A server-side session: the cookie holds a session id, the backend holds the data.

    Takes Beaker's arguments: ``Session(request, id=None, invalidate_corrupt=..., use_cookies=True, type=...,
    data_dir=..., key=..., timeout=..., secret=..., ...)`` (see :mod:`beaker_core.session_config`).
    """

    _seen = None  # what the store read at load, handed back at save (see beaker_core.session_store)

    def __init__(self, request: Any, id: str | None = None, invalidate_corrupt: Any = None, use_cookies: bool = True,
                 *, _config: SessionConfig | None = None, **options: Any):
        if _config is None:
            if invalidate_corrupt is not None:
                options["invalidate_corrupt"] = invalidate_corrupt
            _config = _config_for(None, options)
        config = _config
        if config.is_cookie:
            raise ConfigurationError("session.type = cookie is served by CookieSession, not Session")
        # what _BaseSession._start does, inlined: this runs on every request that uses its session
        self._config = config
        self.request = request
        self.use_cookies = use_cookies
        if use_cookies and "set_cookie" not in request:
            request["cookie_out"] = None  # Beaker's request protocol: what to send, once set_cookie is true
            request["set_cookie"] = False
        self._changes = {}
        self._store = config.store
        if id is not None:
            if not valid_session_id(id):
                raise ConfigurationError(f"a session id must be 22 to 128 characters of A-Z a-z 0-9 _ -, not {id!r}")
            if self._load(id):
                return
        elif use_cookies and self._load_from_cookie(request.get("cookie")):
            return
        # an id the store does not know is never adopted, whether a cookie or the application (id=) named it: the
        # session it named ended (expired, deleted) or never existed, and the new one gets a new id
        self.id = new_session_id()
        self._new_id = True
        self.is_new = True
        self.created = clock.now()
        self.last_accessed = None
        if use_cookies and request.get("cookie_out", False) is None and not request["set_cookie"]:
            # Beaker's request protocol shows the cookie a new session would send, before it is sent
            request["cookie_out"] = self._cookie_header()

    def _load_from_cookie(self, header: Any) -> bool:
        """Load the session a cookie names. A request may carry several cookies of the session's name (a stale one
        from another path or subdomain, a planted one): each well-formed, correctly signed id is tried in turn, the
        first ``MAX_COOKIE_CANDIDATES`` of them, until one loads."""
        values = cookie_values(header, self._config.key)
        if not values:
            return False
        signer = self._config.signer
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
        config = self._config
        try:
            record = self._store.load(session_id)
        except SerializationError as exc:
            if not config.invalidate_corrupt:
                raise
            # left in the store until it expires: after a key rotation mistake (the old encrypt_key removed),
            # restoring the key brings the session back
            log.warning("session %s is unreadable, a new one is started: %s", session_id[:8], exc)
            self.was_invalidated = True
            return False
        if record is None:
            return False
        created, accessed, data, self._seen = record
        if config.absolute_timeout is not None and clock.now() - created >= config.absolute_timeout:
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
        return self._config.backend

    @property
    def namespace_class(self) -> type:
        """The class of :attr:`namespace` (Beaker's attribute of the same name)."""
        return type(self._config.backend)

    def lock(self) -> None:
        """Hold the session's lock until :meth:`unlock` (saves made meanwhile use it)."""
        if self._held_lock is None:
            lock = self._config.lock(self.id)
            lock.__enter__()
            self._held_lock = lock

    def unlock(self) -> None:
        lock, self._held_lock = self._held_lock, None
        if lock is not None:
            lock.__exit__(None, None, None)

    def _write(self) -> None:
        config = self._config
        now = clock.now()
        ttl = config.record_ttl(self.created, now) if config.expires else None
        if ttl == 0:
            return  # the absolute lifetime is over: nothing more is kept
        if self._new_id:
            if not self and not self._full and not config.auto:
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
            if self._full or config.auto:
                set_items = dict(self)
            if not self._store.update(self.id, self.created, now, set_items, deleted, ttl, self._held_lock, self._seen):
                log.info("session %s ended while a request was changing it; its changes are dropped", self.id[:8])
            elif config.sliding_cookie:
                self._send_cookie = True
        self._changes.clear()
        self._full = False
        self._wrote = True

    def _refresh(self, force: bool) -> None:
        """Extend the idle timeout of a session this request only read, with the backend's cheap touch."""
        config = self._config
        if self._new_id or (self._wrote and not force):
            return
        if config.sliding_cookie:
            self._send_cookie = True
        if not config.save_accessed_time and not force or (config.timeout is None and not force):
            return
        now = clock.now()
        memo = config.refreshed
        last = memo.get(self.id, self.last_accessed or 0.0)
        if not force and now - last < config.refresh_interval:
            return
        ttl = config.record_ttl(self.created, now)
        if ttl == 0:
            return
        if force and config.save_accessed_time:
            # save(accessed_only=True): the access time is written too, not only the lifetime extended
            self._store.update(self.id, self.created, now, {}, (), ttl, self._held_lock, self._seen)
            self.last_accessed = now
        else:
            self._store.touch(self.id, ttl)
        if len(memo) >= _REFRESH_MEMO_SIZE:
            memo.clear()
        memo[self.id] = now

    def _remove_stored(self) -> None:
        if not self._new_id:
            self._store.delete(self.id)

    def _cookie_value(self) -> str | None:
        return None if self._new_id else self._out_value()

    def _out_value(self) -> str:
        signer = self._config.signer
        return self.id if signer is None else signer.sign(self.id)


class SessionObject:
    """The lazy session in ``environ['beaker.session']``: nothing is read until the application uses it.

    Every attribute and item access is passed to the real :class:`Session` (or :class:`CookieSession`), created on
    first use.
    """

    __slots__ = ("_environ", "_config", "_sess")

    def __init__(self, environ: dict, _config: SessionConfig | None = None, **params: Any):
        _set_environ(self, environ)
        _set_config(self, _config_for(_config, params))
        _set_sess(self, None)

    def _session(self) -> _BaseSession:
        session = self._sess
        if session is None:
            config = self._config
            request = {"cookie": self._environ.get("HTTP_COOKIE"), "cookie_out": None, "set_cookie": False}
            session = config.session_class(request, _config=config)
            _set_sess(self, session)
            if type(self) is not SessionObject:
                _expose_request(self, request)
        return session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._session(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._session(), name)

    def __getitem__(self, key: Any) -> Any:
        return self._session()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._session()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._session()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._session()

    def __iter__(self):
        return iter(self._session())

    def __len__(self) -> int:
        return len(self._session())

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: Any) -> bool:
        return self._session() == other

    __hash__ = None

    def __repr__(self) -> str:
        return repr(self._session()) if self._sess is not None else "<SessionObject (not loaded)>"

    def has_key(self, key: Any) -> bool:
        return key in self._session()

    # the most used dict methods, defined here to skip __getattr__
    def get(self, key: Any, default: Any = None) -> Any:
        return self._session().get(key, default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._session().setdefault(key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        return self._session().pop(key, *default)

    def keys(self):
        return self._session().keys()

    def items(self):
        return self._session().items()

    def values(self):
        return self._session().values()

    def save(self, accessed_only: bool = False) -> None:
        self._session().save(accessed_only)

    def get_by_id(self, id: str) -> Session | None:
        """The stored session with this id, or None (it is not tied to this request's cookie)."""
        if not valid_session_id(id):
            return None
        session = Session({}, id=id, use_cookies=False, _config=self._config)
        return None if session.is_new else session

    def accessed(self) -> bool:
        """Whether the application used the session in this request."""
        return self._sess is not None

    def dirty(self) -> bool:
        """Whether this request changed the session."""
        session = self._sess
        return session is not None and bool(session._changes or session._full)

    def persist(self) -> None:
        """Save a used session (the middleware calls this before the response starts)."""
        if self._sess is not None:
            self._sess.persist()

    def cookie_header(self) -> str | None:
        """The ``Set-Cookie`` value this request must send, or None."""
        session = self._sess
        if session is None:
            return None
        request = session.request
        return request["cookie_out"] if request.get("set_cookie") else None


def _expose_request(session: SessionObject, request: dict) -> None:
    """Give a subclass that has a ``__dict__`` Beaker's ``_headers`` entry: pyramid_beaker's session reads the cookie
    to send from ``self.__dict__['_headers']``."""
    try:
        object.__getattribute__(session, "__dict__")["_headers"] = request
    except AttributeError:
        pass


_set_environ = SessionObject._environ.__set__
_set_config = SessionObject._config.__set__
_set_sess = SessionObject._sess.__set__
_new_object = object.__new__


def lazy_session(environ: dict, config: SessionConfig) -> SessionObject:
    """A :class:`SessionObject` for one request, made as cheaply as Python allows (the middleware's hot path)."""
    session = _new_object(SessionObject)
    _set_environ(session, environ)
    _set_config(session, config)
    _set_sess(session, None)
    return session
