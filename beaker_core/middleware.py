"""WSGI middleware: Beaker's ``SessionMiddleware`` and ``CacheMiddleware``.

``SessionMiddleware(app, config=None, environ_key='beaker.session', **kwargs)`` puts a lazy
:class:`~beaker_core.session.SessionObject` in ``environ['beaker.session']`` and a factory of detached sessions in
``environ['beaker.get_session']``. Options are Beaker's ``session.*`` / ``beaker.session.*`` keys of ``config``
and of the keyword arguments (unprefixed keyword arguments work too); see :mod:`beaker_core.session.options`.

A request whose application never touches its session costs one small object and a wrapped ``start_response``:
no backend call, no cookie parsing, no ``Set-Cookie``. A session that was used is saved when the application
calls ``start_response``, and its cookie is added to the headers only when it must change in the browser.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Mapping

from .registry import Registry
from .session import Session, SessionManager, lazy_session, session_options
from .util import coerce_session_params, parse_cache_config_options

log = logging.getLogger(__name__)

__all__ = ["SessionMiddleware", "CacheMiddleware", "session_filter_factory", "session_filter_app_factory"]


class SessionMiddleware:
    """Sessions for a WSGI application.

    :param wrap_app: the WSGI application.
    :param config: a mapping of configuration (an INI section); its ``session.*`` and ``beaker.session.*`` keys are
        used, other keys ignored.
    :param environ_key: where the session goes in the environ.
    :param registry: the plugin registry to resolve ``session.type`` with (default: the process-wide one).
    """

    def __init__(self, wrap_app: Callable, config: Mapping[str, Any] | None = None,
                 environ_key: str = "beaker.session", *, registry: Registry | None = None, **kwargs: Any):
        self.wrap_app = self.app = wrap_app
        self.options = session_options(config, **kwargs)
        self.session_manager = SessionManager(self.options, registry=registry)
        coerce_session_params(self.options)  # Beaker's options hold coerced values, and code reads them
        self.environ_key = environ_key
        self._webtest_varname = self.session_manager.webtest_varname
        self._server_checked = False
        self._get_session_bound = self._get_session

    def _get_session(self) -> Session:
        """A session not tied to the request's cookie (Beaker's ``environ['beaker.get_session']()``)."""
        return Session({}, use_cookies=False, manager=self.session_manager)

    def _check_server(self, environ: dict) -> None:
        """Warn once when sessions kept in one process's memory are served by several processes."""
        self._server_checked = True
        backend = self.session_manager.backend
        if backend is not None and not getattr(backend, "shared", True) and environ.get("wsgi.multiprocess"):
            message = (f"sessions are kept in {backend.describe()}, but this server runs several processes "
                       f"(wsgi.multiprocess): a request served by another process will not find its session. "
                       f"Use a shared store: session.type = file (one machine), redis or memcached")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log.warning(message)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if not self._server_checked:
            self._check_server(environ)
        session = lazy_session(environ, self.session_manager)
        environ[self.environ_key] = session
        environ["beaker.get_session"] = self._get_session_bound
        if self._webtest_varname:
            environ.setdefault("paste.testing_variables", {})[self._webtest_varname] = session

        def session_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            used = session.loaded
            if used is not None:
                used.persist()
                cookie = used.cookie_header()
                if cookie:
                    headers.append(("Set-Cookie", cookie))
            return start_response(status, headers, exc_info)

        return self.wrap_app(environ, session_start_response)


def session_filter_factory(global_conf: Mapping[str, Any], **kwargs: Any) -> Callable:
    """PasteDeploy ``filter_factory``: ``[filter:session] use = egg:beaker-core#beaker_session``."""
    def filter(app: Callable) -> SessionMiddleware:
        return SessionMiddleware(app, global_conf, **kwargs)
    return filter


def session_filter_app_factory(app: Callable, global_conf: Mapping[str, Any], **kwargs: Any) -> SessionMiddleware:
    """PasteDeploy ``filter_app_factory``."""
    return SessionMiddleware(app, global_conf, **kwargs)


class CacheMiddleware:
    """WSGI middleware that puts a :class:`~beaker_core.cache.CacheManager` in ``environ['beaker.cache']``.

    Configuration keys are ``cache.*`` or ``beaker.cache.*``, from ``config`` and keyword arguments.
    """

    def __init__(self, wrap_app: Callable, config: Mapping[str, Any] | None = None,
                 environ_key: str = "beaker.cache", **kwargs: Any):
        from .cache import CacheManager  # here: an application using sessions only does not load the caching layer

        self.app = wrap_app
        settings = dict(config or {})
        for key, value in kwargs.items():
            settings[key if key.startswith(("cache.", "beaker.cache.")) else f"cache.{key}"] = value
        self.cache_manager = CacheManager(**parse_cache_config_options(settings))
        self.environ_key = environ_key

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        environ[self.environ_key] = self.cache_manager
        return self.app(environ, start_response)
