"""ASGI middleware: sessions for Starlette, FastAPI and any ASGI application, configured like the WSGI one.

``SessionMiddleware(app, config=None, **kwargs)`` takes the same ``session.*`` options as
:class:`beaker_core.middleware.SessionMiddleware` and puts the session in ``scope["session"]``, the mapping that
Starlette's and FastAPI's ``request.session`` returns (and in ``scope["beaker.session"]``, as WSGI code expects)::

    app = Starlette(routes=..., middleware=[Middleware(SessionMiddleware, config={"session.type": "file",
                                                                                  "session.data_dir": "/var/lib/app"})])

Backend calls never block the event loop:

* on backends that do no I/O in this process's loop (``memory``) and for ``cookie`` sessions, the session is lazy, as
  in WSGI: a request that does not use it costs nothing;
* on every other backend, a request that carries a session cookie has its session read in a worker thread before
  the application runs (a request without one gets a new, empty session at no cost), and the save runs in a worker
  thread too.

The session is saved when the application starts its response; the ``Set-Cookie`` header is added to that
``http.response.start`` message. Sessions in a ``websocket`` scope are saved when the connection's application
returns (no cookie can be set there). A session that was loaded but neither changed nor read through
``request.session`` (which marks it accessed) is not refreshed.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from .cookies import cookie_values
from .registry import Registry
from .session import CookieSession, Session, SessionManager, SessionObject, session_options

__all__ = ["SessionMiddleware"]

try:
    from anyio.to_thread import run_sync as _run_in_thread
except ImportError:  # pragma: no cover - anyio comes with every ASGI framework
    import asyncio

    async def _run_in_thread(func: Callable, *args: Any) -> Any:
        return await asyncio.to_thread(func, *args)


def _cookie_header(scope: Mapping[str, Any]) -> str | None:
    values = [value.decode("latin-1") for name, value in scope.get("headers") or () if name == b"cookie"]
    return "; ".join(values) if values else None


class SessionMiddleware:
    """Sessions for an ASGI application.

    :param app: the ASGI application.
    :param config: a mapping with ``session.*`` / ``beaker.session.*`` keys (other keys are ignored).
    :param registry: the plugin registry (default: the process-wide one).
    :param kwargs: more options, prefixed or not (``type="cookie"``, ``secret=...``).
    """

    def __init__(self, app: Callable, config: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
                 **kwargs: Any):
        self.app = app
        self.options = session_options(config, **kwargs)
        self.session_manager = SessionManager(self.options, registry=registry)
        # cookie sessions and process-local stores are read without I/O, so they can stay lazy on the loop
        self.lazy = self.session_manager.is_cookie or not getattr(self.session_manager.backend, "shared", True)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        config = self.session_manager
        header = _cookie_header(scope)
        holder: Any
        if self.lazy:
            holder = SessionObject({"HTTP_COOKIE": header}, config)
        else:
            request = {"cookie": header, "cookie_out": None, "set_cookie": False}
            if cookie_values(header, config.key):
                holder = await _run_in_thread(self._load, request)
            else:
                holder = Session(request, manager=config)
        scope["session"] = holder
        scope["beaker.session"] = holder

        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                session = self._used_session(holder)
                if session is not None:
                    await self._persist(session)
            return

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                session = self._used_session(holder)
                if session is not None:
                    await self._persist(session)
                    cookie = session.cookie_header()
                    if cookie:
                        headers = list(message.get("headers") or ())
                        headers.append((b"set-cookie", cookie.encode("latin-1")))
                        message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _load(self, request: dict) -> Session:
        return Session(request, manager=self.session_manager)

    @staticmethod
    def _used_session(holder: Any) -> Session | CookieSession | None:
        if isinstance(holder, SessionObject):
            return holder.loaded  # created only if the application used it
        return holder if holder.needs_persist() else None

    async def _persist(self, session: Any) -> None:
        if self.lazy:
            session.persist()
        else:
            await _run_in_thread(session.persist)
