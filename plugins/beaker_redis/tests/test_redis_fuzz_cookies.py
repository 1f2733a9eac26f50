"""Hostile ``Cookie`` headers through the WSGI and ASGI session middleware on redis: the core's fuzz test
(``tests/test_fuzz_cookies.py``, loaded from the repository by its path) against the shared redis-server.

The same checks as on the built-in backends: the application always answers 200, a session loads only from a real
cookie a response gave, no id is adopted. Instead of a data directory, the keyspace: every key under the test's
prefix is ``session:<an id a response issued>``, and no key appears outside the prefix (keys of other tests may
expire meanwhile).
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import uuid

import pytest
import redis

CORE_TEST = pathlib.Path(__file__).resolve().parents[3] / "tests" / "test_fuzz_cookies.py"


def load_core_fuzz():
    name = "beaker_core_fuzz_cookies"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CORE_TEST)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before it runs: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.slow
def test_hostile_cookie_headers_on_redis(redis_server):
    fuzz = load_core_fuzz()
    prefix = f"bkfuzz-{uuid.uuid4().hex[:12]}:"
    options = {"session.type": "redis", "session.url": redis_server.url, "session.prefix": prefix}
    raw = redis.Redis.from_url(redis_server.url)
    try:
        before = set(raw.scan_iter(count=1000))
        fuzz.fuzz_cookie_headers(options, stored_ids=fuzz.backend_session_ids(options))
        appeared = {key for key in raw.scan_iter(count=1000) if key not in before}
        outside = sorted(key for key in appeared if not key.startswith(prefix.encode()))
        assert not outside, f"keys written outside the prefix {prefix}: {outside[:10]}"
    finally:
        for key in raw.scan_iter(match=prefix + "*", count=1000):
            raw.delete(key)
        raw.close()
