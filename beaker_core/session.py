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

import logging
import re
import secrets
import time
from typing import Any

from .cookies import InvalidSignature, SignedCookie, cookie_values, coerce_cookie_expires, delete_cookie_header, \
    set_cookie_header, MAX_COOKIE_SIZE
from .exceptions import ConfigurationError, SerializationError, ValueTooLarge
from .session_config import SessionConfig, session_options
from .session_store import make_store

__all__ = ["Session", "CookieSession", "SessionObject", "SignedCookie", "InvalidSignature", "new_session_id",
           "valid_session_id"]

log = logging.getLogger(__name__)
_ID = re.compile(r"[A-Za-z0-9_-]{22,128}")
_time = time.time
_REFRESH_MEMO_SIZE = 10000


def new_session_id() -> str:
    """A new session id: 192 random bits, as 32 base64url characters."""
    return secrets.token_urlsafe(24)


def valid_session_id(value: Any) -> bool:
    """Whether ``value`` may be a session id: 22 to 128 characters of ``A-Z a-z 0-9 _ -``."""
    return type(value) is str and _ID.fullmatch(value) is not None


def _config_for(config: SessionConfig | None, options: dict) -> SessionConfig:
    if config is not None:
        return config
    if "namespace_class" in options:
        raise ConfigurationError("namespace_class is not supported; register a backend plugin instead")
    registry = options.pop("registry", None)
    return SessionConfig(session_options(None, **options), registry=registry)


class _BaseSession(dict):
    """What server-side and cookie sessions share: change tracking, the public API, the cookie decision."""

    # Per-request state starts as these class attributes; an instance sets only what changes (cheaper to create).
    _full = False                 # write every key at the next save
    _new_id = False               # the id was made in this request and nothing is stored under it yet
    _send_cookie = False          # the cookie must go out at the next persist
    _client_had_cookie = False
    _cookie_expires = None
    _used = False                 # read through request.session (ASGI) or ended, regenerated, marked
    _held_lock = None
    was_invalidated = False

    def _start(self, request: Any, config: SessionConfig, use_cookies: bool) -> None:
        self._config = config
        self.request = request
        self.use_cookies = use_cookies
        self._changes: dict = {}      # key -> True (set) / False (deleted) in this request

    @property
    def key(self) -> str:
        """The cookie name."""
        return self._config.key

    @property
    def timeout(self) -> float | None:
        return self._config.timeout

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

    def __ior__(self, other: Any) -> "_BaseSession":
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

    @property
    def cookie_expires(self) -> Any:
        return self._config.cookie_expires if self._cookie_expires is None else self._cookie_expires

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
        if self._changes or self._full or self._config.auto:
            self._write()
        elif not self._new_id:
            self._refresh(force=False)
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
        """Remove the session from the store now and send an expired cookie, unless it is used again."""
        self._end()

    def regenerate_id(self) -> None:
        """Keep the data under a new id (do it at login); the old id's record is removed now."""
        self._remove_stored()
        self.id = new_session_id()
        self._new_id = True
        self._full = True
        self._used = True
        self._send_cookie = True

    def _end(self) -> None:
        self._used = True
        self._remove_stored()
        dict.clear(self)
        self._changes.clear()
        self._full = False
        self.id = new_session_id()
        self._new_id = True
        self.is_new = True
        self.created = _time()
        self.last_accessed = None

    # -- cookies -------------------------------------------------------------------------------------------------

    def _emit_cookie(self) -> None:
        if not self.use_cookies:
            return
        config = self._config
        if self._send_cookie:
            value = self._cookie_value()
            if value is not None:
                self.request["cookie_out"] = set_cookie_header(config.key, value, config.attributes,
                                                               self.cookie_expires)
                self.request["set_cookie"] = True
                self._send_cookie = False
                self._client_had_cookie = True
                return
        if self._new_id and self._client_had_cookie:
            # the session was deleted, invalidated or never found, and stayed empty: clear the client's cookie
            self.request["cookie_out"] = delete_cookie_header(config.key, config.attributes)
            self.request["set_cookie"] = True
            self._client_had_cookie = False

    def _cookie_value(self) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'id', '?')!r} {dict.__repr__(self)}>"


class Session(_BaseSession):
    """A server-side session: the cookie holds a session id, the backend holds the data.

    Takes Beaker's arguments: ``Session(request, id=None, invalidate_corrupt=..., use_cookies=True, type=...,
    data_dir=..., key=..., timeout=..., secret=..., ...)`` (see :mod:`beaker_core.session_config`).
    """

    def __init__(self, request: Any, id: str | None = None, invalidate_corrupt: Any = None, use_cookies: bool = True,
                 *, _config: SessionConfig | None = None, **options: Any):
        if invalidate_corrupt is not None:
            options["invalidate_corrupt"] = invalidate_corrupt
        config = _config_for(_config, options)
        if config.is_cookie:
            raise ConfigurationError("session.type = cookie is served by CookieSession, not Session")
        self._start(request, config, use_cookies)
        self._store = config.store
        client_id = None
        if id is not None:
            if not valid_session_id(id):
                raise ConfigurationError(f"a session id must be 22 to 128 characters of A-Z a-z 0-9 _ -, not {id!r}")
        elif use_cookies:
            client_id = self._id_from_cookie(request.get("cookie"))
        session_id = id or client_id
        if session_id is not None and self._load(session_id):
            return
        if id is not None:
            self.id = id               # an id the application chose (get_by_id, Beaker's id=) is kept
        else:
            self.id = new_session_id()  # never adopt an id the store does not know
        self._new_id = True
        self.is_new = True
        self.created = _time()
        self.last_accessed = None

    def _id_from_cookie(self, header: str | None) -> str | None:
        values = cookie_values(header, self._config.key)
        if not values:
            return None
        self._client_had_cookie = True
        signer = self._config.signer
        for value in values:
            if signer is not None:
                value = signer.unsign(value)
            if valid_session_id(value):
                return value
        return None

    def _load(self, session_id: str) -> bool:
        config = self._config
        try:
            record = self._store.load(session_id)
        except SerializationError as exc:
            if not config.invalidate_corrupt:
                raise
            log.warning("discarding the unreadable session %s: %s", session_id[:8], exc)
            self._store.delete(session_id)
            self.was_invalidated = True
            return False
        if record is None:
            return False
        if config.absolute_timeout is not None and _time() - record.created >= config.absolute_timeout:
            self._store.delete(session_id)
            self.was_invalidated = True
            return False
        self.id = session_id
        self.is_new = False
        self.created = record.created
        self.last_accessed = record.accessed
        dict.update(self, record.data)
        return True

    def _reload(self) -> None:
        dict.clear(self)
        if not self._new_id:
            record = self._store.load(self.id)
            if record is not None:
                dict.update(self, record.data)

    @property
    def namespace(self) -> Any:
        """The backend that holds the session (Beaker's ``namespace`` attribute)."""
        return self._config.backend

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
        now = _time()
        ttl = config.record_ttl(self.created, now)
        if ttl == 0:
            return  # the absolute lifetime is over: nothing more is kept
        if self._new_id:
            if not self and not self._full:
                self._changes.clear()
                return  # a new session that ended up empty needs neither a record nor a cookie
            self._store.create(self.id, self.created, now, dict(self), ttl)
            self._new_id = False
            self._send_cookie = True
        else:
            if self._full or config.auto:
                set_items = dict(self)
            else:
                set_items = {key: dict.__getitem__(self, key) for key, kept in self._changes.items() if kept}
            deleted = [key for key, kept in self._changes.items() if not kept]
            if not self._store.update(self.id, self.created, now, set_items, deleted, ttl, self._held_lock):
                log.info("session %s ended while a request was changing it; its changes are dropped", self.id[:8])
            elif config.sliding_cookie:
                self._send_cookie = True
        self._changes.clear()
        self._full = False

    def _refresh(self, force: bool) -> None:
        """Extend the idle timeout of a session this request only read, with the backend's cheap touch."""
        config = self._config
        if self._new_id:
            return
        if config.sliding_cookie:
            self._send_cookie = True
        if not config.save_accessed_time and not force or (config.timeout is None and not force):
            return
        now = _time()
        memo = config.refreshed
        last = memo.get(self.id, self.last_accessed or 0.0)
        if not force and now - last < config.refresh_interval:
            return
        ttl = config.record_ttl(self.created, now)
        if ttl == 0:
            return
        self._store.touch(self.id, ttl)
        if len(memo) >= _REFRESH_MEMO_SIZE:
            memo.clear()
        memo[self.id] = now

    def _remove_stored(self) -> None:
        if not self._new_id:
            self._store.delete(self.id)

    def _cookie_value(self) -> str | None:
        if self._new_id:
            return None
        signer = self._config.signer
        return self.id if signer is None else signer.sign(self.id)


class CookieSession(_BaseSession):
    """The whole session in one cookie, encrypted and authenticated with AES-GCM (``session.type = cookie``).

    Needs ``secret`` (or ``encrypt_key``, or Beaker's ``validate_key``). A cookie that does not decrypt with any
    configured key, or that has expired, gives a fresh empty session. A session whose cookie would exceed 4096
    bytes raises :class:`~beaker_core.exceptions.ValueTooLarge` when it is saved.
    """

    def __init__(self, request: Any, key: str | None = None, *, id: str | None = None, use_cookies: bool = True,
                 _config: SessionConfig | None = None, **options: Any):
        if key is not None:
            options["key"] = key
        options.setdefault("type", "cookie")
        config = _config_for(_config, options)
        if not config.is_cookie:
            raise ConfigurationError(f"CookieSession needs session.type = cookie, not {config.type!r}")
        self._start(request, config, use_cookies)
        if not (use_cookies and self._load(request.get("cookie"))):
            self.id = id if valid_session_id(id) else new_session_id()
            self._new_id = True
            self.is_new = True
            self.created = _time()
            self.last_accessed = None

    def _load(self, header: str | None) -> bool:
        config = self._config
        values = cookie_values(header, config.key)
        if not values:
            return False
        self._client_had_cookie = True
        now = _time()
        for value in values:
            plaintext = config.cipher.decrypt_text(value, config.key.encode("utf-8"))
            if plaintext is None:
                continue
            try:
                record = config.serializer.loads(plaintext)
                session_id, created, accessed, data = record["i"], record["c"], record["a"], record["d"]
            except Exception:  # a key we hold encrypted it, so this is a bug or a serializer change: start afresh
                continue
            if not (valid_session_id(session_id) and isinstance(data, dict)
                    and isinstance(created, (int, float)) and isinstance(accessed, (int, float))):
                continue
            if config.timeout is not None and now - accessed >= config.timeout:
                continue
            if config.absolute_timeout is not None and now - created >= config.absolute_timeout:
                continue
            self.id, self.created, self.last_accessed, self.is_new = session_id, created, accessed, False
            dict.update(self, data)
            return True
        return False

    def _reload(self) -> None:
        dict.clear(self)
        if not self._new_id:
            self._load(self.request.get("cookie"))

    def _write(self) -> None:
        if self._new_id and not self and not self._full:
            self._changes.clear()
            return
        self._cookie_text = self._encode(_time())
        self._new_id = False
        self._send_cookie = True
        self._changes.clear()
        self._full = False

    def _encode(self, now: float) -> str:
        config = self._config
        record = {"i": self.id, "c": self.created, "a": now, "d": dict(self)}
        token = config.cipher.encrypt_text(config.serializer.dumps(record), config.key.encode("utf-8"))
        header = set_cookie_header(config.key, token, config.attributes, self.cookie_expires)
        if len(header) > MAX_COOKIE_SIZE:
            raise ValueTooLarge(f"the session cookie would be {len(header)} bytes, over the {MAX_COOKIE_SIZE}-byte "
                                f"limit browsers keep; store less in the session, or use a server-side session.type")
        return token

    def _refresh(self, force: bool) -> None:
        config = self._config
        if self._new_id:
            return
        now = _time()
        stale = config.timeout is not None and now - (self.last_accessed or 0.0) >= config.refresh_interval
        if force or config.sliding_cookie or (config.save_accessed_time and stale):
            self._cookie_text = self._encode(now)
            self._send_cookie = True

    def _remove_stored(self) -> None:
        pass

    def _cookie_value(self) -> str | None:
        return None if self._new_id else self._cookie_text


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
            request = {"cookie": self._environ.get("HTTP_COOKIE"), "cookie_out": None, "set_cookie": False}
            config = self._config
            session = (CookieSession if config.is_cookie else Session)(request, _config=config)
            _set_sess(self, session)
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
