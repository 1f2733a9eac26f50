"""Reading the ``Cookie`` header and writing ``Set-Cookie``, quickly and strictly.

The session cookie is read with a small parser instead of :class:`http.cookies.SimpleCookie`: the standard parser
drops the whole header when one unrelated cookie is malformed (so a client could lose its session because of a
tracker's cookie), and costs tens of microseconds per request. Values beaker-core writes are made only of unpadded
base64url characters and ``.``, so they never need quoting.

:class:`SignedCookie` keeps Beaker's class of that name for code that used it directly.
"""
from __future__ import annotations

import datetime
import re
from email.utils import formatdate
from http import cookies as http_cookies
from typing import Any

from . import clock
from .crypto import Signer, secret_list
from .exceptions import ConfigurationError

#: a cookie name: an RFC 6265 token
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: what a cookie attribute value (domain, path) may hold: visible ASCII except ``;``
_ATTRIBUTE = re.compile(r"^[\x21-\x3a\x3c-\x7e]+$")
#: the longest cookie a browser is required to keep (RFC 6265, section 6.1): name, value and attributes
MAX_COOKIE_SIZE = 4096
#: browsers cap Max-Age at 400 days; a cookie that "never" expires asks for that
NEVER_SECONDS = 400 * 24 * 3600
_EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"


def cookie_values(header: Any, name: str) -> list[str]:
    """Every value the ``Cookie`` header gives for ``name``, in order (browsers send the most specific path first).

    ``header`` may also be a mapping of cookie names to values, or a :class:`http.cookies.BaseCookie`, as code
    written for Beaker passes in ``request['cookie']``.
    """
    if not header or name not in header:
        return []
    if type(header) is not str:
        return _mapping_values(header, name)
    if ";" not in header:  # the usual case: this application's only cookie
        key, eq, value = header.partition("=")
        if not eq or key.strip() != name:
            return []
        value = value.strip()
        return [value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value]
    values = []
    for part in header.split(";"):
        key, eq, value = part.partition("=")
        if eq and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
    return values


def _mapping_values(cookies: Any, name: str) -> list[str]:
    try:
        value = cookies[name]
    except (KeyError, TypeError):
        return []
    value = getattr(value, "value", value)  # a Morsel of a SimpleCookie
    return [] if value is None else [str(value)]


def check_cookie_name(option: str, value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ConfigurationError(f"{option} must be a cookie name (letters, digits and !#$%&'*+-.^_`|~), "
                                 f"not {value!r}")
    return value


def check_attribute(option: str, value: Any, *, path: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip() and not path):
        return None
    if not isinstance(value, str) or not _ATTRIBUTE.match(value):
        raise ConfigurationError(f"{option} must be visible ASCII characters without ';' or spaces, not {value!r}")
    if path and not value.startswith("/"):
        raise ConfigurationError(f"{option} must start with '/', not {value!r}")
    return value


def expiry_attributes(cookie_expires: Any, now: float | None = None) -> str:
    """The ``; Max-Age=...; expires=...`` attributes for a ``cookie_expires`` value ('' for a browser-session
    cookie)."""
    if cookie_expires is True:
        return ""
    now = clock.now() if now is None else now
    max_age = _max_age(cookie_expires, now)
    return f"; Max-Age={max_age}; expires={formatdate(now + max_age, usegmt=True)}"


def _max_age(cookie_expires: Any, now: float) -> int:
    """Seconds a cookie lives, for a ``cookie_expires`` other than True."""
    if cookie_expires is False:
        return NEVER_SECONDS
    if isinstance(cookie_expires, datetime.datetime):
        return max(0, int(cookie_expires.timestamp() - now))
    return int(cookie_expires)


def set_cookie_header(name: str, value: str, attributes: str, cookie_expires: Any) -> str:
    """A ``Set-Cookie`` header value; ``attributes`` is the precomputed ``; Path=/; HttpOnly...`` part."""
    return f"{name}={value}{expiry_attributes(cookie_expires)}{attributes}"


def delete_cookie_header(name: str, attributes: str, value: str = "") -> str:
    return f"{name}={value}; Max-Age=0; expires={_EPOCH}{attributes}"


def cookie_jar(name: str, value: str, path: str, domain: str | None, secure: bool, httponly: bool,
               samesite: str | None, cookie_expires: Any) -> http_cookies.SimpleCookie:
    """The session cookie as a :class:`http.cookies.SimpleCookie` (Beaker's ``Session.cookie``)."""
    jar = http_cookies.SimpleCookie()
    jar[name] = value
    morsel = jar[name]
    morsel["path"] = path
    if domain:
        morsel["domain"] = domain
    if secure:
        morsel["secure"] = True
    if httponly:
        morsel["httponly"] = True
    if samesite:
        morsel["samesite"] = samesite
    if cookie_expires is not True:
        now = clock.now()
        max_age = _max_age(cookie_expires, now)
        morsel["expires"] = formatdate(now + max_age, usegmt=True)
        morsel["max-age"] = max_age
    return jar


def cookie_attributes(path: str, domain: str | None, secure: bool, httponly: bool, samesite: str | None) -> str:
    parts = [f"; Path={path}"]
    if domain:
        parts.append(f"; Domain={domain}")
    if secure:
        parts.append("; Secure")
    if httponly:
        parts.append("; HttpOnly")
    if samesite:
        parts.append(f"; SameSite={samesite}")
    return "".join(parts)


class _InvalidSignature:
    """What :class:`SignedCookie` gives for a value whose signature does not verify (false in a boolean test)."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "InvalidSignature"


InvalidSignature = _InvalidSignature()


class SignedCookie(http_cookies.BaseCookie):
    """A cookie jar whose values carry an HMAC-SHA256 signature (``value.signature``), as Beaker's ``SignedCookie``.

    ``secret`` may be a list: the first signs, every one verifies. A value whose signature does not verify reads as
    :data:`InvalidSignature`. Signatures are not compatible with Beaker's HMAC-SHA1 ones.
    """

    def __init__(self, secret: Any, input: Any = None):
        self.signer = Signer(secret_list("secret", secret))
        super().__init__(input)

    def value_decode(self, val: str) -> tuple[Any, str]:
        val = val.strip('"')
        if not val:
            return None, val
        value = self.signer.unsign(val)
        return (InvalidSignature if value is None else value), val

    def value_encode(self, val: Any) -> tuple[Any, str]:
        return val, self.signer.sign(str(val))
