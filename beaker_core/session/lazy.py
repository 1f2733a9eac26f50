"""The lazy session: :class:`SessionObject`, what a middleware puts in the request, and :func:`lazy_session`.

Nothing is read until the application uses the session: a request that never touches it does no backend I/O and
parses no cookie. On first use the real session is created: a :class:`~beaker_core.session.cookie.CookieSession`
for ``session.type = cookie``, else a :class:`~beaker_core.session.server.Session` (the choice is made here, not by
the manager, which knows neither class).
"""
from __future__ import annotations

from typing import Any

from .base import BaseSession
from .cookie import CookieSession
from .ids import valid_session_id
from .manager import SessionManager, manager_for
from .server import Session


class SessionObject:
    """The lazy session in ``environ['beaker.session']``: nothing is read until the application uses it.

    Every attribute and item access is passed to the real :class:`Session` (or :class:`CookieSession`), created on
    first use. ``manager`` is the :class:`~beaker_core.session.manager.SessionManager` built once by the
    middleware; without it one is built from Beaker's keyword arguments (``params``).

    A middleware ends the request with :attr:`loaded` (None: nothing to save, no cookie to send), then that
    session's :meth:`~beaker_core.session.base.BaseSession.persist` and
    :meth:`~beaker_core.session.base.BaseSession.cookie_header`.
    """

    # ``loaded``: the real session once the application used it in this request, else None. A public read-only slot
    # rather than a method: the middleware reads it on every request, and a method call on a class with
    # ``__getattr__`` costs several times a slot read. (Assigning ``loaded`` goes to the session, as any attribute.)
    __slots__ = ("_environ", "_manager", "loaded")

    def __init__(self, environ: dict, manager: SessionManager | None = None, **params: Any):
        _set_environ(self, environ)
        _set_manager(self, manager_for(manager, params))
        _set_loaded(self, None)

    def _session(self) -> BaseSession:
        session = self.loaded
        if session is None:
            manager = self._manager
            request = {"cookie": self._environ.get("HTTP_COOKIE"), "cookie_out": None, "set_cookie": False}
            session = (CookieSession if manager.is_cookie else Session)(request, manager=manager)
            _set_loaded(self, session)
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
        return repr(self._session()) if self.loaded is not None else "<SessionObject (not loaded)>"

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
        session = Session({}, id=id, use_cookies=False, manager=self._manager)
        return None if session.is_new else session

    def accessed(self) -> bool:
        """Whether the application used the session in this request."""
        return self.loaded is not None

    def dirty(self) -> bool:
        """Whether this request changed the session."""
        session = self.loaded
        return session is not None and session.dirty()

    def persist(self) -> None:
        """Save a used session (the middleware calls this before the response starts)."""
        if self.loaded is not None:
            self.loaded.persist()

    def cookie_header(self) -> str | None:
        """The ``Set-Cookie`` value this request must send, or None."""
        session = self.loaded
        return None if session is None else session.cookie_header()


def _expose_request(session: SessionObject, request: dict) -> None:
    """Give a subclass that has a ``__dict__`` Beaker's ``_headers`` entry: pyramid_beaker's session reads the cookie
    to send from ``self.__dict__['_headers']``."""
    try:
        object.__getattribute__(session, "__dict__")["_headers"] = request
    except AttributeError:
        pass


_set_environ = SessionObject._environ.__set__
_set_manager = SessionObject._manager.__set__
_set_loaded = SessionObject.loaded.__set__
_new_object = object.__new__


def lazy_session(environ: dict, manager: SessionManager) -> SessionObject:
    """A :class:`SessionObject` for one request, made as cheaply as Python allows (the middleware's hot path)."""
    session = _new_object(SessionObject)
    _set_environ(session, environ)
    _set_manager(session, manager)
    _set_loaded(session, None)
    return session
