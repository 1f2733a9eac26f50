"""The Python 3 half of Beaker's ``beaker._compat`` names, for code and tests that import them from Beaker.

beaker-core runs on Python 3 only, so each name is the plain Python 3 object (``string_type`` is ``str``...).
Nothing in beaker-core itself uses this module.
"""
from __future__ import annotations

import base64
import http.cookies as http_cookies
import pickle
import sys
from typing import Any
from urllib.parse import quote as url_quote, unquote as url_unquote, urlencode as url_encode, urlparse as url_parse

__all__ = ["PY2", "PYVER", "JYTHON", "pickle", "xrange_", "NoneType", "string_type", "unicode_text", "byte_string",
           "url_encode", "url_quote", "url_unquote", "url_parse", "http_cookies", "b64decode", "b64encode", "u_",
           "bytes_", "dictkeyslist"]

PY2 = False
PYVER = sys.version_info[:2]
JYTHON = False
xrange_ = range
NoneType = type(None)
string_type = str
unicode_text = str
byte_string = bytes


def b64decode(text: str) -> bytes:
    """Standard base64 text to bytes."""
    return base64.b64decode(text.encode("ascii"))


def b64encode(data: bytes) -> str:
    """Bytes to standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def u_(value: Any) -> str:
    return str(value)


def bytes_(value: Any) -> bytes:
    """Bytes as they are; anything else as its ASCII text."""
    return value if isinstance(value, bytes) else str(value).encode("ascii", "strict")


def dictkeyslist(mapping: Any) -> list:
    return list(mapping.keys())
