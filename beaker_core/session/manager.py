"""Session configuration: Beaker's ``session.*`` keys, checked once, when the middleware is built.

A :class:`SessionConfig` holds everything a request needs already resolved (the backend instance, the serializer,
the lock factory, the derived keys, the cookie attributes), so creating a session per request costs no parsing.

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

Every other option (``url``, ``data_dir``, ``lock_dir``, ``table_name``...) goes to the backend's constructor, which
rejects what it does not know. ``data_dir`` and ``lock_dir`` are Beaker's shared options: a backend that does not
take them is not given them, and where they can mean nothing (cookie sessions, a process-local backend such as
``memory``) they are ignored with a warning.
"""
from __future__ import annotations

import inspect
import threading
import warnings
from typing import Any, Mapping

from . import cookies
from .crypto import Cipher, Signer, secret_list, strict_keys_from_environment, warn_from_caller
from .exceptions import ConfigurationError
from .locks import ThreadLock
from .registry import Registry, default_registry
from .util import coerce_bool, coerce_expire, coerce_float, coerce_int, coerce_str, fit_options

DEFAULT_KEY = "beaker.session.id"
#: the idle timeout of a server-side session whose configuration names none: 31 days
DEFAULT_TIMEOUT = 31 * 24 * 3600
_UNSET = object()
_STRIPES = 64
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_CRYPTO_TYPES = ("default", "cryptography", "pycrypto", "nss")
#: options the session layer reads itself; the others (``url``, ``data_dir``, ``lock_dir``...) belong to the backend
SESSION_OPTIONS = frozenset({
    "type", "key", "secret", "encrypt_key", "validate_key", "timeout", "absolute_timeout", "save_accessed_time",
    "auto", "cookie_expires", "cookie_domain", "cookie_path", "secure", "httponly", "samesite", "data_serializer",
    "invalidate_corrupt", "lock_type", "lock_timeout", "webtest_varname", "encrypt_nonce_bits", "crypto_type",
    "log_file", "id", "strict_keys", "cookie_on_exception", "constant_csrf_token",
})
#: Beaker's shared directory options, which some backends take and others do not
_DIRECTORY_OPTIONS = ("data_dir", "lock_dir")


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


class SessionConfig:
    """Checked session options, with the backend, serializer, lock and keys they name."""

    def __init__(self, options: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
                 strict_keys: bool = False):
        """``strict_keys=True`` refuses weak keys whatever the options and the environment say (what
        ``beaker-core check`` builds)."""
        options = dict(options or {})
        self.registry = registry or default_registry()
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
        self.cookie_expires = cookies.coerce_cookie_expires("session.cookie_expires", take("cookie_expires", True))
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
        secret = secret_list("session.secret", take("secret", None), strict=strict)
        encrypt_key = secret_list("session.encrypt_key", take("encrypt_key", None), strict=strict)
        validate_key = secret_list("session.validate_key", take("validate_key", None), strict=strict)
        serializer = take("data_serializer", None)
        self.lock_type = coerce_str("session.lock_type", take("lock_type", None))

        self.signer = self.cipher = self.backend = self.store = None
        self.stores_objects = self.atomic_records = self.atomic_update = False
        self.lock_class = None
        self._stripes: list | None = None
        self.lock_options: dict[str, Any] = {}
        if self.is_cookie:
            material = encrypt_key or secret or validate_key
            if not material:
                raise ConfigurationError("cookie sessions need session.secret (or session.encrypt_key): the key "
                                         "that encrypts and authenticates the cookie")
            self.cipher = Cipher(material, "cookie session")
            _ignore_directories(options, "cookie sessions store nothing on the server")
            if options:
                raise ConfigurationError(
                    f"cookie sessions store nothing on the server; remove {', '.join(sorted(options))} "
                    f"(session.{next(iter(sorted(options)))}...)")
            if self.lock_type is not None:
                raise ConfigurationError("cookie sessions take no lock; remove session.lock_type")
            self.serializer = self._serializer(serializer)
            self.stores_objects = False
        else:
            if secret:
                self.signer = Signer(secret)
            factory = self.registry.backend_class(self.type)
            backend_options = fit_options(factory, f"the {self.type} backend", options,
                                          optional=("data_dir", "lock_dir"))
            self.backend = self.registry.open_backend(self.type, **backend_options)
            # with encrypt_key, records are serialized and encrypted even where the backend could keep objects
            self.stores_objects = bool(getattr(self.backend, "stores_objects", False)) and not encrypt_key
            self.atomic_records = bool(getattr(self.backend, "atomic_records", False))
            self.atomic_update = bool(getattr(self.backend, "atomic_update", False))
            self.serializer = self._serializer(serializer)
            if encrypt_key and not self.stores_objects:
                self.serializer = EncryptedSerializer(self.serializer, Cipher(encrypt_key, "stored session"))
            lock_name = self.lock_type or getattr(self.backend, "preferred_lock", "thread")
            self.lock_class = self.registry.lock_class(lock_name)
            # the file lock finds its directory on the backend (lock_dir, else data_dir/locks); a lock_dir the
            # backend did not take is handed to a lock that names it as a parameter
            lock_dir = options.get("lock_dir")
            if lock_dir is not None and "lock_dir" not in backend_options and _takes(self.lock_class, "lock_dir"):
                self.lock_options = {"lock_dir": lock_dir}
            if not getattr(self.backend, "shared", True):
                unused = {name: options.get(name) for name in _DIRECTORY_OPTIONS
                          if name not in backend_options and name not in self.lock_options}
                _ignore_directories(unused, f"the {self.backend.name} backend keeps sessions in this process")
            # the thread lock excludes the threads of this process: a fixed set of plain locks, picked by the
            # session id's hash, does the same for a fraction of the cost of a lock object per save
            if self.lock_class is ThreadLock:
                self._stripes = [threading.Lock() for _ in range(_STRIPES)]
            from .session_store import make_store
            self.store = make_store(self)
            #: session id -> when this process last refreshed its idle timeout (bounded; see Session._refresh)
            self.refreshed: dict[str, float] = {}

    @property
    def session_class(self) -> type:
        """The class of this configuration's sessions: Session, or CookieSession for ``type = cookie``."""
        cls = self.__dict__.get("_session_class")
        if cls is None:
            from .session import CookieSession, Session
            cls = self.__dict__["_session_class"] = CookieSession if self.is_cookie else Session
        return cls

    def _serializer(self, value: Any) -> Any:
        if value is None:
            value = "json"
        if isinstance(value, str):
            return self.registry.serializer(value)
        if callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None)):
            return value
        raise ConfigurationError(f"session.data_serializer must be a serializer name (json, pickle...) or an object "
                                 f"with dumps() and loads(), not {value!r}")

    def lock(self, session_id: str) -> Any:
        """A lock that serializes saves of one session across whatever the lock type covers."""
        if self._stripes is not None:
            # held for the few microseconds of an in-process read-modify-write: no timeout needed
            return self._stripes[hash(session_id) % _STRIPES]
        return self.lock_class(f"beaker-session:{session_id}", backend=self.backend, expire=self.lock_timeout or 30.0,
                               timeout=self.lock_timeout, **self.lock_options)

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


def _ignore_directories(options: dict[str, Any], why: str) -> None:
    """Remove Beaker's ``data_dir`` and ``lock_dir`` from ``options`` with a warning, where they mean nothing."""
    ignored = [name for name in _DIRECTORY_OPTIONS if options.pop(name, None) is not None]
    if ignored:
        names = " and ".join(f"session.{name}" for name in ignored)
        warn_from_caller(UserWarning(f"{names} {'is' if len(ignored) == 1 else 'are'} ignored: {why}"))


def _takes(factory: Any, parameter: str) -> bool:
    try:
        return parameter in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


class EncryptedSerializer:
    """A serializer whose bytes are encrypted with AES-GCM (server-side sessions with ``session.encrypt_key``)."""

    def __init__(self, inner: Any, cipher: Cipher):
        self.inner = inner
        self.cipher = cipher

    def dumps(self, value: Any) -> bytes:
        return self.cipher.encrypt(self.inner.dumps(value))

    def loads(self, data: bytes) -> Any:
        from .exceptions import SerializationError
        plaintext = self.cipher.decrypt(bytes(data))
        if plaintext is None:
            raise SerializationError("stored session data does not decrypt with any configured session.encrypt_key")
        return self.inner.loads(plaintext)
