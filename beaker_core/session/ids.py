"""Session ids: 32 characters of base64url from :func:`secrets.token_urlsafe` (192 bits), and the check an id from
a cookie or an application passes before it reaches a backend."""
from __future__ import annotations

import re
import secrets
from typing import Any

#: what a session id may be: 22 to 128 characters of ``A-Z a-z 0-9 _ -``
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22,128}")


def new_session_id() -> str:
    """A new session id: 192 random bits, as 32 base64url characters."""
    return secrets.token_urlsafe(24)


def valid_session_id(value: Any) -> bool:
    """Whether ``value`` may be a session id: 22 to 128 characters of ``A-Z a-z 0-9 _ -``."""
    return type(value) is str and SESSION_ID.fullmatch(value) is not None
