"""The session runtime: one :class:`SessionManager` per configuration, built once, when the middleware is built.

It holds everything a request needs already resolved, so creating a session per request costs no parsing: the
checked options (it is a :class:`~beaker_core.session.options.SessionOptions`), the backend instance, the
serializer, the record store, the signer or cipher, the lock class (with the striped locks that stand in for the
thread lock) and the memo of recent idle-timeout refreshes. Which session class serves a configuration is not its
business: :mod:`beaker_core.session.lazy` decides.
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

from ..crypto import Cipher, Signer
from ..exceptions import ConfigurationError, SerializationError
from ..locks import ThreadLock
from ..registry import Registry, default_registry
from ..util import fit_options
from .options import DIRECTORY_OPTIONS, SessionOptions, ignore_directories, session_options
from .store import make_store

_STRIPES = 64


class SessionManager(SessionOptions):
    """Checked session options, with the backend, serializer, store, lock and keys they name.

    A session reads its options and its runtime on every request through one attribute, so the manager *is* its
    options (a subclass) rather than holding them: one attribute lookup instead of two on the hot path.
    """

    def __init__(self, options: Mapping[str, Any] | None = None, *, registry: Registry | None = None,
                 strict_keys: bool = False):
        """``strict_keys=True`` refuses weak keys whatever the options and the environment say (what
        ``beaker-core check`` builds)."""
        self.registry = registry or default_registry()
        super().__init__(options, strict_keys=strict_keys)
        self.signer = self.cipher = self.backend = self.store = None
        self.stores_objects = self.atomic_records = self.atomic_update = False
        self.lock_class = None
        self._stripes: list | None = None
        self.lock_options: dict[str, Any] = {}
        #: session id -> when this process last refreshed its idle timeout (bounded; see Session._refresh)
        self.refreshed: dict[str, float] = {}
        if self.is_cookie:
            self.cipher = Cipher(self.cookie_key_material, "cookie session")
            self.serializer = self._serializer(self.data_serializer)
            return
        options = self.backend_options
        if self.secret:
            self.signer = Signer(self.secret)
        factory = self.registry.backend_class(self.type)
        backend_options = fit_options(factory, f"the {self.type} backend", options, optional=DIRECTORY_OPTIONS)
        self.backend = self.registry.open_backend(self.type, **backend_options)
        # with encrypt_key, records are serialized and encrypted even where the backend could keep objects
        self.stores_objects = bool(getattr(self.backend, "stores_objects", False)) and not self.encrypt_key
        self.atomic_records = bool(getattr(self.backend, "atomic_records", False))
        self.atomic_update = bool(getattr(self.backend, "atomic_update", False))
        self.serializer = self._serializer(self.data_serializer)
        if self.encrypt_key and not self.stores_objects:
            self.serializer = EncryptedSerializer(self.serializer, Cipher(self.encrypt_key, "stored session"))
        lock_name = self.lock_type or getattr(self.backend, "preferred_lock", "thread")
        self.lock_class = self.registry.lock_class(lock_name)
        # the lock decides its own directory (the file lock: lock_dir, else data_dir/locks): it is handed the
        # configured ones when it takes them
        self.lock_options = fit_options(self.lock_class, f"the {lock_name} lock",
                                        {name: options.get(name) for name in DIRECTORY_OPTIONS},
                                        optional=DIRECTORY_OPTIONS)
        if not getattr(self.backend, "shared", True):
            unused = {name: options.get(name) for name in DIRECTORY_OPTIONS
                      if name not in backend_options and name not in self.lock_options}
            ignore_directories(unused, f"the {self.backend.name} backend keeps sessions in this process")
        # the thread lock excludes the threads of this process: a fixed set of plain locks, picked by the
        # session id's hash, does the same for a fraction of the cost of a lock object per save
        if self.lock_class is ThreadLock:
            self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self.store = make_store(self)

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


def manager_for(manager: SessionManager | None, options: dict[str, Any]) -> SessionManager:
    """``manager``, or one built from Beaker's keyword arguments of a session made without a middleware
    (``Session(request, type='file', data_dir=...)``)."""
    if manager is not None:
        return manager
    if options.pop("namespace_class", None) is not None:
        raise ConfigurationError("namespace_class is not supported; register a backend plugin instead")
    registry = options.pop("registry", None)
    return SessionManager(session_options(None, **options), registry=registry)


class EncryptedSerializer:
    """A serializer whose bytes are encrypted with AES-GCM (server-side sessions with ``session.encrypt_key``)."""

    def __init__(self, inner: Any, cipher: Cipher):
        self.inner = inner
        self.cipher = cipher

    def dumps(self, value: Any) -> bytes:
        return self.cipher.encrypt(self.inner.dumps(value))

    def loads(self, data: bytes) -> Any:
        plaintext = self.cipher.decrypt(bytes(data))
        if plaintext is None:
            raise SerializationError("stored session data does not decrypt with any configured session.encrypt_key")
        return self.inner.loads(plaintext)
