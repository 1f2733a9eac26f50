"""Session options: Beaker's ``session.*`` settings, found and checked, with no I/O.

:class:`SessionOptions` turns the settings into checked values (and what follows from them: the cookie attributes,
the refresh interval, the record TTL); :class:`~beaker_core.session.manager.SessionManager` opens what they name.

Options (after the ``session.`` / ``beaker.session.`` prefix is removed; see docs/sessions.md for the full story):

:param type: ``memory``, ``file``, ``dbm``, ``cookie`` or any installed backend (``redis``, ``ext:redis``...).
    Default: ``file`` when ``data_dir`` is set, else ``memory``.
:param key: the cookie name (default ``beaker.session.id``).
:param secret: signs the session-id cookie (HMAC-SHA256); for ``cookie`` sessions, the encryption key material
    when ``encrypt_key`` is unset. A list (or one secret per line) rotates: the first signs, all verify.
:param encrypt_key: ``cookie`` sessions: the AES-GCM key material (takes precedence over ``secret``). Server-side
    sessions: encrypt the stored record with it. A list rotates.
:param validate_key: Beaker's HMAC key of cookie sessions; used as the key material of ``cookie`` sessions when
    neither ``encrypt_key`` nor ``secret`` is set, and otherwise not needed (AES-GCM authenticates by itself).
:param timeout: idle timeout in seconds, enforced by the server and by the backend's TTL. Server-side sessions
    default to 31 days (``DEFAULT_TIMEOUT``), so that the store does not grow without bound; ``none`` keeps them
    until they are deleted. Cookie sessions default to none (the browser holds them).
:param absolute_timeout: lifetime in seconds from the session's creation that no activity extends (None: none).
:param save_accessed_time: refresh the idle timeout on requests that only read the session (default true).
:param auto: save every key of a session each time a request used it, which catches changes made inside nested
    values, at the price of a write per request (default false; changes to top-level keys are always saved).
:param cookie_expires: True (a browser-session cookie, the default), False (never expires), seconds, timedelta,
    or datetime.
:param cookie_domain: the cookie's Domain attribute (default none: this host only).
:param cookie_path: the cookie's Path (default ``/``).
:param secure: send the cookie over HTTPS only (default false).
:param httponly: hide the cookie from JavaScript (default true).
:param samesite: ``Lax`` (default), ``Strict``, ``None`` (requires ``secure``), or empty for no attribute.
:param data_serializer: ``json`` (default) or ``pickle`` or any registered serializer, or an object with
    ``dumps``/``loads``.
:param invalidate_corrupt: a stored record that cannot be read starts a fresh session instead of raising
    (default true).
:param lock_type: the lock that serializes saves of one session (default: the backend's preferred lock).
:param lock_timeout: seconds to wait for that lock (default 30).
:param webtest_varname: also expose the session to WebTest under this name.
:param strict_keys: refuse a weak ``secret``, ``encrypt_key`` or ``validate_key`` (shorter than 16 characters,
    fewer than 5 distinct characters, or a repeated pattern) instead of warning about it (default false; the
    ``BEAKER_CORE_STRICT_KEYS=1`` environment variable does the same). An empty key is always refused.
:param encrypt_nonce_bits, crypto_type, log_file, id: Beaker options, accepted and not used.
:param cookie_on_exception, constant_csrf_token: pyramid_beaker's options, kept here for a Pyramid integration and
    never handed to the backend.

Every other option (``url``, ``data_dir``, ``lock_dir``, ``table_name``...) is kept in
:attr:`SessionOptions.backend_options` for the backend's constructor, which rejects what it does not know.
``data_dir`` and ``lock_dir`` are Beaker's shared options: the backend and the lock each get them when they take
them, and where they can mean nothing (cookie sessions, a process-local backend such as ``memory``) they are ignored
with a warning.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

from .. import cookies
from ..crypto import secret_list, strict_keys_from_environment, warn_from_caller
from ..exceptions import ConfigurationError
from ..util import coerce_bool, coerce_cookie_expires, coerce_expire, coerce_float, coerce_int, coerce_str

DEFAULT_KEY = "beaker.session.id"
#: the idle timeout of a server-side session whose configuration names none: 31 days
DEFAULT_TIMEOUT = 31 * 24 * 3600
#: options the session layer reads itself; the others (``url``, ``data_dir``, ``lock_dir``...) belong to the backend
SESSION_OPTIONS = frozenset({
    "type", "key", "secret", "encrypt_key", "validate_key", "timeout", "absolute_timeout", "save_accessed_time",
    "auto", "cookie_expires", "cookie_domain", "cookie_path", "secure", "httponly", "samesite", "data_serializer",
    "invalidate_corrupt", "lock_type", "lock_timeout", "webtest_varname", "encrypt_nonce_bits", "crypto_type",
    "log_file", "id", "strict_keys", "cookie_on_exception", "constant_csrf_token",
})
#: Beaker's shared directory options, which some backends and locks take and others do not
DIRECTORY_OPTIONS = ("data_dir", "lock_dir")
_UNSET = object()
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_CRYPTO_TYPES = ("default", "cryptography", "pycrypto", "nss")


def session_options(config: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Beaker's rules for finding session options: ``beaker.session.X`` and ``session.X`` keys of ``config`` and of
    the keyword arguments, plus unprefixed keyword arguments (``key='sid'``). Other keys of ``config`` (``cache.*``,
    an application's own settings) are ignored; ``session_X`` keys still work, with a DeprecationWarning.
    """
    if config is not None and not isinstance(config, Mapping):
        raise ConfigurationError(f"the session configuration must be a mapping, not {type(config).__name__}")
    options: dict[str, Any] = {}
    for source, unprefixed in ((config or {}, False), (kwargs, True)):
        for key, value in source.items():
            if not isinstance(key, str):
                continue
            if key.startswith("beaker.session."):
                options[key[len("beaker.session."):]] = value
            elif key.startswith("session."):
                options[key[len("session."):]] = value
            elif key.startswith("session_"):
                warnings.warn(f"session options should start with 'session.', not 'session_' ({key})",
                              DeprecationWarning, stacklevel=3)
                options[key[len("session_"):]] = value
            elif unprefixed:
                options[key] = value
    return options


def ignore_directories(options: dict[str, Any], why: str) -> None:
    """Remove Beaker's ``data_dir`` and ``lock_dir`` from ``options`` with a warning, where they mean nothing."""
    ignored = [name for name in DIRECTORY_OPTIONS if options.pop(name, None) is not None]
    if ignored:
        names = " and ".join(f"session.{name}" for name in ignored)
        warn_from_caller(UserWarning(f"{names} {'is' if len(ignored) == 1 else 'are'} ignored: {why}"))


def _samesite(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("", "false", "off"):
            return None
        if lowered in _SAMESITE:
            return _SAMESITE[lowered]
    raise ConfigurationError(f"session.samesite must be Lax, Strict, None or empty, not {value!r}")


class SessionOptions:
    """Checked session options (no backend is opened, no file touched).

    The key options are kept as lists of secrets (``secret``, ``encrypt_key``, ``validate_key``), the serializer as
    it was named (``data_serializer``), and the options that are not the session's own in ``backend_options``.
    """

    def __init__(self, options: Mapping[str, Any] | None = None, *, strict_keys: bool = False):
        """``strict_keys=True`` refuses weak keys whatever the options and the environment say (what
        ``beaker-core check`` builds)."""
        options = dict(options or {})
        take = options.pop
        self.type = coerce_str("session.type", take("type", None))
        if not self.type:
            self.type = "file" if options.get("data_dir") else "memory"
        self.is_cookie = self.type == "cookie"
        self.key = cookies.check_cookie_name("session.key", take("key", DEFAULT_KEY))
        timeout = take("timeout", _UNSET)
        if timeout is _UNSET:
            # a server-side record needs a lifetime, or the store grows with every visitor it ever had
            timeout = None if self.is_cookie else DEFAULT_TIMEOUT
        self.timeout = coerce_expire("session.timeout", timeout)
        self.absolute_timeout = coerce_expire("session.absolute_timeout", take("absolute_timeout", None))
        self.save_accessed_time = coerce_bool("session.save_accessed_time", take("save_accessed_time", True))
        self.auto = coerce_bool("session.auto", take("auto", False))
        self.cookie_expires = coerce_cookie_expires("session.cookie_expires", take("cookie_expires", True))
        self.cookie_domain = cookies.check_attribute("session.cookie_domain", take("cookie_domain", None))
        self.cookie_path = cookies.check_attribute("session.cookie_path", take("cookie_path", "/"), path=True)
        self.secure = coerce_bool("session.secure", take("secure", False))
        self.httponly = coerce_bool("session.httponly", take("httponly", True))
        self.samesite = _samesite(take("samesite", "Lax"))
        if self.samesite == "None" and not self.secure:
            raise ConfigurationError("session.samesite = None requires session.secure = true "
                                     "(browsers reject SameSite=None cookies that are not Secure)")
        self.invalidate_corrupt = coerce_bool("session.invalidate_corrupt", take("invalidate_corrupt", True))
        self.lock_timeout = coerce_float("session.lock_timeout", take("lock_timeout", 30.0), minimum=0.0)
        self.webtest_varname = coerce_str("session.webtest_varname", take("webtest_varname", None))
        nonce_bits = take("encrypt_nonce_bits", None)
        if nonce_bits is not None:
            coerce_int("session.encrypt_nonce_bits", nonce_bits, minimum=48)
        crypto_type = take("crypto_type", None)
        if crypto_type is not None and crypto_type not in _CRYPTO_TYPES:
            raise ConfigurationError(f"session.crypto_type must be one of {', '.join(_CRYPTO_TYPES)}, "
                                     f"not {crypto_type!r}")
        take("log_file", None)
        take("id", None)
        #: pyramid_beaker's: save the session and send its cookie when the view raised (default true)
        self.cookie_on_exception = coerce_bool("session.cookie_on_exception", take("cookie_on_exception", True))
        #: pyramid_beaker's: false, true (one CSRF token for the session's life), or the token itself
        self.constant_csrf_token = take("constant_csrf_token", False)
        if not isinstance(self.constant_csrf_token, (bool, str)):
            raise ConfigurationError(f"session.constant_csrf_token must be a boolean or a string, "
                                     f"not {self.constant_csrf_token!r}")
        self.attributes = cookies.cookie_attributes(self.cookie_path, self.cookie_domain, self.secure,
                                                    self.httponly, self.samesite)
        #: a cookie whose expiry is relative is sent again whenever the session is saved or refreshed
        self.sliding_cookie = not isinstance(self.cookie_expires, bool) and isinstance(self.cookie_expires, float)
        # how stale the stored access time may grow before a read-only request refreshes it
        self.refresh_interval = self.timeout / 10 if self.timeout else None
        #: records get a TTL
        self.expires = self.timeout is not None or self.absolute_timeout is not None

        strict = coerce_bool("session.strict_keys", take("strict_keys", False))
        strict = strict_keys or strict_keys_from_environment() or strict
        self.secret = secret_list("session.secret", take("secret", None), strict=strict)
        self.encrypt_key = secret_list("session.encrypt_key", take("encrypt_key", None), strict=strict)
        self.validate_key = secret_list("session.validate_key", take("validate_key", None), strict=strict)
        self.data_serializer = take("data_serializer", None)
        self.lock_type = coerce_str("session.lock_type", take("lock_type", None))

        if self.is_cookie:
            if not self.cookie_key_material:
                raise ConfigurationError("cookie sessions need session.secret (or session.encrypt_key): the key "
                                         "that encrypts and authenticates the cookie")
            ignore_directories(options, "cookie sessions store nothing on the server")
            if options:
                raise ConfigurationError(
                    f"cookie sessions store nothing on the server; remove {', '.join(sorted(options))} "
                    f"(session.{next(iter(sorted(options)))}...)")
            if self.lock_type is not None:
                raise ConfigurationError("cookie sessions take no lock; remove session.lock_type")
        #: the options that are not the session's own: the backend's (and ``lock_dir``, which may be the lock's)
        self.backend_options = options

    @property
    def cookie_key_material(self) -> list | None:
        """The keys of a cookie session's cipher: ``encrypt_key``, else ``secret``, else ``validate_key``."""
        return self.encrypt_key or self.secret or self.validate_key

    def record_ttl(self, created: float, now: float) -> float | None:
        """The backend TTL of a record: the idle timeout, cut short by what remains of the absolute lifetime.

        Returns 0 when the absolute lifetime is over.
        """
        ttl = self.timeout
        if self.absolute_timeout is not None:
            remaining = created + self.absolute_timeout - now
            if remaining <= 0:
                return 0
            ttl = remaining if ttl is None else min(ttl, remaining)
        return ttl
