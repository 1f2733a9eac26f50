"""Cookie sessions: :class:`CookieSession`, the whole session in one cookie, encrypted and authenticated with
AES-GCM."""
from __future__ import annotations

from typing import Any

from .. import clock
from ..cookies import MAX_COOKIE_SIZE, cookie_values, set_cookie_header
from ..exceptions import ConfigurationError, ValueTooLarge
from .base import BaseSession
from .ids import new_session_id, valid_session_id
from .manager import SessionManager, manager_for

__all__ = ["CookieSession"]


class CookieSession(BaseSession):
    """The whole session in one cookie, encrypted and authenticated with AES-GCM (``session.type = cookie``).

    Needs ``secret`` (or ``encrypt_key``, or Beaker's ``validate_key``). A cookie that does not decrypt with any
    configured key, or that has expired, gives a fresh empty session. A session whose cookie would exceed 4096
    bytes raises :class:`~beaker_core.exceptions.ValueTooLarge` when it is saved.
    """

    def __init__(self, request: Any, key: str | None = None, *, id: str | None = None, use_cookies: bool = True,
                 manager: SessionManager | None = None, **options: Any):
        """``manager``: the :class:`~beaker_core.session.manager.SessionManager` of a ``cookie`` configuration,
        built once (what the middleware passes); without it one is built from Beaker's keyword arguments."""
        if key is not None:
            options["key"] = key
        options.setdefault("type", "cookie")
        manager = manager_for(manager, options)
        if not manager.is_cookie:
            raise ConfigurationError(f"CookieSession needs session.type = cookie, not {manager.type!r}")
        self._start(request, manager, use_cookies)
        if not (use_cookies and self._load(request.get("cookie"))):
            self._start_new()  # as in Beaker, id= does not name a cookie session: its cookie does

    def _load(self, header: str | None) -> bool:
        manager = self._manager
        values = cookie_values(header, manager.key)
        if not values:
            return False
        now = clock.now()
        for value in values:
            plaintext = manager.cipher.decrypt_text(value, manager.key.encode("utf-8"))
            if plaintext is None:
                continue
            try:
                record = manager.serializer.loads(plaintext)
                session_id, created, accessed, data = record["i"], record["c"], record["a"], record["d"]
            except Exception:  # a key we hold encrypted it, so this is a bug or a serializer change: start afresh
                continue
            if not (valid_session_id(session_id) and isinstance(data, dict)
                    and isinstance(created, (int, float)) and isinstance(accessed, (int, float))):
                continue
            if manager.timeout is not None and now - accessed >= manager.timeout:
                continue
            if manager.absolute_timeout is not None and now - created >= manager.absolute_timeout:
                continue
            self.id, self.created, self.last_accessed, self.is_new = session_id, created, accessed, False
            self._client_had_cookie = True
            dict.update(self, data)
            return True
        return False

    def _reload(self) -> None:
        dict.clear(self)
        if not self._new_id:
            self._load(self.request.get("cookie"))

    def _write(self) -> None:
        if self._new_id and not self and not self._full and not self._manager.auto:
            self._changes.clear()
            return
        if self._deleted:
            self.id = new_session_id()
            self._deleted = False
        self._cookie_text = self._encode(clock.now())
        self._new_id = False
        self._send_cookie = True
        self._changes.clear()
        self._full = False

    def _encode(self, now: float) -> str:
        manager = self._manager
        record = {"i": self.id, "c": self.created, "a": now, "d": dict(self)}
        token = manager.cipher.encrypt_text(manager.serializer.dumps(record), manager.key.encode("utf-8"))
        header = set_cookie_header(manager.key, token, manager.attributes, self.cookie_expires)
        if len(header) > MAX_COOKIE_SIZE:
            raise ValueTooLarge(f"the session cookie would be {len(header)} bytes, over the {MAX_COOKIE_SIZE}-byte "
                                f"limit browsers keep; store less in the session, or use a server-side session.type")
        return token

    def _refresh(self, force: bool) -> None:
        manager = self._manager
        if self._new_id:
            return
        now = clock.now()
        stale = manager.timeout is not None and now - (self.last_accessed or 0.0) >= manager.refresh_interval
        if force or manager.sliding_cookie or (manager.save_accessed_time and stale):
            self._cookie_text = self._encode(now)
            self._send_cookie = True

    def _remove_stored(self) -> None:
        pass

    def _cookie_value(self) -> str | None:
        return None if self._new_id else self._cookie_text

    def _out_value(self) -> str:
        text = self.__dict__.get("_cookie_text")
        return text if text is not None and not self._new_id else self._encode(clock.now())
