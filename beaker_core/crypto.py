"""Keys, signatures and authenticated encryption for sessions.

Every secret an operator configures (``session.secret``, ``session.encrypt_key``, ``session.validate_key``) may be a
list, for rotation: the first one signs or encrypts, every one verifies or decrypts. A configured secret is never
used as a key directly: HKDF-SHA256 derives one 32-byte key per purpose from it, so the key that signs session ids
and the key that encrypts cookie sessions differ even when both come from one secret.

A weak key (see :func:`key_weakness`) still works, as it did in Beaker: it gives one
:class:`~beaker_core.exceptions.SecurityWarning` per process and problem, plus one log record, and is refused only
where ``strict`` asks for it (``session.strict_keys`` or the ``BEAKER_CORE_STRICT_KEYS`` environment variable). An
empty key is always refused.

* :class:`Signer`: HMAC-SHA256, the signature written as unpadded base64url (43 characters).
* :class:`Cipher`: AES-256-GCM from ``cryptography``. A token is ``version (1 byte) | nonce (12 bytes) |
  ciphertext | tag (16 bytes)``; the nonce is random for every encryption. The caller's associated data (for
  cookies: the cookie name) is authenticated too, so a token cannot be moved to another cookie.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import sys
import threading
import warnings
from typing import Any, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .exceptions import BeakerError, ConfigurationError, SecurityWarning
from .util import asbool

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 16
#: a key made of fewer distinct characters than this is weak, whatever its length
MIN_DISTINCT_CHARACTERS = 5
#: set to a true value (1, true, yes, on) to make every weak key an error, as ``session.strict_keys = true`` does
STRICT_KEYS_ENV = "BEAKER_CORE_STRICT_KEYS"
GENERATE_KEY_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
TOKEN_VERSION = b"\x01"
_NONCE_SIZE = 12
_TAG_SIZE = 16


def key_weakness(key: str | bytes) -> str | None:
    """Why ``key`` is too weak to be a secret, or None. Counted in characters for a str, bytes for bytes, a key is
    weak when it is shorter than 16, has fewer than 5 distinct characters, or is one shorter string repeated
    (``abcdefabcdefabcdef``)."""
    length = len(key)
    if length < MIN_SECRET_LENGTH:
        return f"it is {length} characters long, and a key needs at least {MIN_SECRET_LENGTH}"
    distinct = len(set(key))
    if distinct < MIN_DISTINCT_CHARACTERS:
        return (f"it is made of only {distinct} distinct character{'' if distinct == 1 else 's'}, "
                f"and a key needs at least {MIN_DISTINCT_CHARACTERS}")
    if (key + key).find(key, 1) < length:  # a rotation of itself before the full length: a repeated pattern
        return "it is one shorter string repeated"
    return None


def strict_keys_from_environment() -> bool:
    """Whether the ``BEAKER_CORE_STRICT_KEYS`` environment variable asks for weak keys to be errors."""
    return asbool(os.environ.get(STRICT_KEYS_ENV), STRICT_KEYS_ENV)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_from_caller(warning: Warning) -> None:
    """``warnings.warn`` attributed to the first caller outside beaker-core: the line that built the middleware or
    session, which is where the setting can be changed."""
    frame, level = sys._getframe(1), 2  # level 1 is this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


_reported: set[str] = set()
_reported_lock = threading.Lock()


def report_weak_key(message: str, strict: bool) -> None:
    """Refuse a weak key (``strict``), or warn about it: one SecurityWarning and one log record per process and
    message, however many sessions or middlewares are built with it."""
    if strict:
        raise ConfigurationError(message)
    with _reported_lock:
        if message in _reported:
            return
        _reported.add(message)
    try:
        warn_from_caller(SecurityWarning(message))
    except BaseException:  # -W error::...SecurityWarning: the warning is raised; a later build must raise it too
        with _reported_lock:
            _reported.discard(message)
        raise
    log.warning("%s", message)


def forget_reported_weak_keys() -> None:
    """Warn again about weak keys already reported in this process (for tests)."""
    with _reported_lock:
        _reported.clear()


def secret_list(name: str, value: Any, *, strict: bool | None = None) -> list[bytes]:
    """A secret option as a list of bytes: a str, bytes, or a list of them; a str holding several lines is one
    secret per line (how an INI file writes a list). Secrets are never split on spaces or commas: a passphrase may
    hold both. An empty secret is an error; a weak one (:func:`key_weakness`) is reported by
    :func:`report_weak_key`, as an error when ``strict`` is true (None: when ``BEAKER_CORE_STRICT_KEYS`` says so).
    """
    if value is None:
        return []
    if isinstance(value, str) and "\n" in value:
        items: Iterable[Any] = [line.strip() for line in value.splitlines()]
    elif isinstance(value, (str, bytes)):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ConfigurationError(f"{name} must be a string or a list of strings, not {type(value).__name__}")
    keys: list[str | bytes] = []
    for item in items:
        if not isinstance(item, (str, bytes)):
            raise ConfigurationError(f"{name} must be a string or a list of strings, not a list holding {item!r}")
        if item:
            keys.append(item)
    if not keys:
        raise ConfigurationError(f"{name} is set but empty")
    for position, key in enumerate(keys, 1):
        reason = key_weakness(key)
        if reason is not None:
            if strict is None:
                strict = strict_keys_from_environment()
            which = f"{name} (key {position} of {len(keys)})" if len(keys) > 1 else name
            report_weak_key(f"{which} is a weak key: {reason}; generate a strong one with: {GENERATE_KEY_HINT}",
                            strict)
    return [key.encode("utf-8") if isinstance(key, str) else key for key in keys]


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from a configured secret with HKDF-SHA256."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"beaker-core " + purpose.encode("ascii")).derive(secret)


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64decode(text: str) -> bytes | None:
    """Unpadded base64url to bytes, or None if ``text`` is not exactly the canonical encoding of some bytes.

    Canonical matters: the last character of an unpadded encoding carries bits that decoding ignores, so several
    texts decode to the same bytes. Only the one ``b64encode`` writes is accepted, so that a cookie changed in any
    character is a different cookie.
    """
    if not _B64URL.fullmatch(text):
        return None
    try:
        raw = text.encode("ascii")
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    return data if b64encode(data) == text else None


class Signer:
    """HMAC-SHA256 signatures with key rotation: ``sign`` uses the first key, ``verify`` accepts any."""

    def __init__(self, secrets: list[bytes], purpose: str = "session id signature"):
        if not secrets:
            raise ConfigurationError("a signer needs at least one secret")
        self._keys = [derive_key(secret, purpose) for secret in secrets]

    def signature(self, value: str, key: bytes | None = None) -> str:
        return b64encode(hmac.new(key or self._keys[0], value.encode("utf-8"), hashlib.sha256).digest())

    def sign(self, value: str) -> str:
        """``value.signature``."""
        return f"{value}.{self.signature(value)}"

    def unsign(self, signed: str) -> str | None:
        """The value of a ``value.signature`` string signed by any of the keys, or None."""
        value, dot, signature = signed.rpartition(".")
        # a signature this signer wrote is 43 ASCII characters; anything else (a byte 0x80-0xFF a client sent, a
        # surrogate) is not one, and compare_digest would refuse to compare it
        if not dot or len(signature) != 43 or not signature.isascii():
            return None
        try:
            expected = signature.encode("ascii")
            for key in self._keys:
                if hmac.compare_digest(self.signature(value, key).encode("ascii"), expected):
                    return value
        except UnicodeEncodeError:  # a lone surrogate in the value: no signature of ours covers it
            return None
        return None


class Cipher:
    """AES-256-GCM with key rotation: ``encrypt`` uses the first key, ``decrypt`` tries each."""

    def __init__(self, secrets: list[bytes], purpose: str):
        if not secrets:
            raise ConfigurationError("a cipher needs at least one key")
        self._aeads = [AESGCM(derive_key(secret, purpose)) for secret in secrets]

    def encrypt(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return TOKEN_VERSION + nonce + self._aeads[0].encrypt(nonce, plaintext, associated_data)

    def decrypt(self, token: bytes, associated_data: bytes = b"") -> bytes | None:
        """The plaintext, or None for anything that is not a token made by one of the keys."""
        if len(token) < 1 + _NONCE_SIZE + _TAG_SIZE or token[:1] != TOKEN_VERSION:
            return None
        nonce, ciphertext = token[1:1 + _NONCE_SIZE], token[1 + _NONCE_SIZE:]
        for aead in self._aeads:
            try:
                return aead.decrypt(nonce, ciphertext, associated_data)
            except InvalidTag:
                continue
        return None

    def encrypt_text(self, plaintext: bytes, associated_data: bytes = b"") -> str:
        return b64encode(self.encrypt(plaintext, associated_data))

    def decrypt_text(self, token: str, associated_data: bytes = b"") -> bytes | None:
        raw = b64decode(token)
        return None if raw is None else self.decrypt(raw, associated_data)


class CryptoModule:
    """What Beaker's ``crypto.get_crypto_module(name)`` describes: here always AES through ``cryptography``."""

    has_aes = True

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<CryptoModule {self.name!r}: AES-256-GCM from cryptography>"


def get_crypto_module(name: str) -> CryptoModule:
    """Beaker's question "which crypto library, and can it do AES?": ``default`` and ``cryptography`` answer with
    the ``cryptography`` package, which beaker-core always uses; pycrypto and nss are not supported.
    """
    if name in ("default", "cryptography"):
        return CryptoModule(name)
    raise BeakerError(f"crypto module {name!r} is not available: beaker-core encrypts with the cryptography package "
                      f"(crypto_type 'default' or 'cryptography')")
