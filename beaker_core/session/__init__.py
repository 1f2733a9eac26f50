"""Sessions with Beaker's API: :class:`Session` (server-side), :class:`CookieSession`, :class:`SessionObject`.

A session is a dict that remembers which top-level keys this request set or deleted. Saving applies exactly those
changes to the stored record (see :mod:`beaker_core.session.store`), so concurrent requests that change different
keys keep both changes, and nothing is written when nothing changed. Changes are saved at the end of the request
without an explicit ``save()``. A change *inside* a value (``session['cart'].append(item)``) is not seen: assign the
key again (``session['cart'] = cart``), call ``session.changed('cart')``, call ``session.save()``, or configure
``session.auto = true``.

The request dict follows Beaker's protocol: the session reads the ``Cookie`` header from ``request['cookie']`` and
leaves the ``Set-Cookie`` value to send in ``request['cookie_out']`` (with ``request['set_cookie'] = True``).

Session ids are 32 characters of base64url from :func:`secrets.token_urlsafe` (192 bits). An id from a cookie is
checked (charset, length, signature when ``session.secret`` is set) before it reaches a backend, and an id the store
does not know is never adopted: the client gets a new one.

This package's modules, one concept each: ``options`` (the ``session.*`` settings, checked), ``manager`` (the
runtime a configuration opens: backend, serializer, store, locks), ``ids``, ``base`` (what both kinds of session
share), ``server`` (:class:`Session`), ``cookie`` (:class:`CookieSession`), ``lazy`` (:class:`SessionObject`) and
``store`` (the stored records). This module only re-exports their public names.
"""
from __future__ import annotations

from ..cookies import InvalidSignature, SignedCookie
from .cookie import CookieSession
from .ids import new_session_id, valid_session_id
from .lazy import SessionObject, lazy_session
from .manager import SessionManager
from .options import DEFAULT_KEY, DEFAULT_TIMEOUT, SessionOptions, session_options
from .server import MAX_COOKIE_CANDIDATES, Session
from .store import KEY_PREFIX

__all__ = ["Session", "CookieSession", "SessionObject", "SignedCookie", "InvalidSignature", "new_session_id",
           "valid_session_id", "lazy_session", "SessionManager", "SessionOptions", "session_options",
           "MAX_COOKIE_CANDIDATES", "KEY_PREFIX", "DEFAULT_KEY", "DEFAULT_TIMEOUT"]
