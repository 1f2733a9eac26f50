"""Keys, signatures and authenticated encryption for sessions.

Every secret an operator configures (``session.secret``, ``session.encrypt_key``, ``session.validate_key``) may be a
list, for rotation: the first one signs or encrypts, every one verifies or decrypts. A configured secret is never
used as a key directly: HKDF-SHA256 derives one 32-byte key per purpose from it, so the key that signs session ids
and the key that encrypts cookie sessions differ even when both come from one secret.

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
import os
import re
from typing import Any, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .exceptions import ConfigurationError

MIN_SECRET_LENGTH = 16
TOKEN_VERSION = b"\x01"
_NONCE_SIZE = 12
_TAG_SIZE = 16


def secret_list(name: str, value: Any) -> list[bytes]:
    """A secret option as a list of bytes: a str, bytes, or a list of them; a str holding several lines is one
    secret per line (how an INI file writes a list). Secrets are never split on spaces or commas: a passphrase may
    hold both. Each must be at least 16 characters long.
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
    secrets_out = []
    for item in items:
        if isinstance(item, str):
            raw = item.encode("utf-8")
        elif isinstance(item, bytes):
            raw = item
        else:
            raise ConfigurationError(f"{name} must be a string or a list of strings, not a list holding {item!r}")
        if not raw:
            continue
        if len(raw) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"{name} is too short to be a secret ({len(raw)} characters; at least {MIN_SECRET_LENGTH} are "
                f"required; generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        secrets_out.append(raw)
    if not secrets_out:
        raise ConfigurationError(f"{name} is set but empty")
    return secrets_out


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
        if not dot or len(signature) != 43:
            return None
        for key in self._keys:
            if hmac.compare_digest(self.signature(value, key), signature):
                return value
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
    from .exceptions import BeakerError
    raise BeakerError(f"crypto module {name!r} is not available: beaker-core encrypts with the cryptography package "
                      f"(crypto_type 'default' or 'cryptography')")
