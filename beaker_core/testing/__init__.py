"""The conformance suite every backend runs: ``from beaker_core.testing import BackendConformance``.

A backend distribution subclasses :class:`BackendConformance` in one of its test modules, names its backend and
gives its options; pytest then runs the whole suite against it (the backend contract, TTL expiry, odd and long keys,
binary values, locks under contention, the caching API, sessions through the middleware)::

    from beaker_core.testing import BackendConformance

    class TestRedisBackend(BackendConformance):
        backend = "redis"
        options = {"url": "redis://127.0.0.1:6379/0"}
        ttl_resolution = 1.0

The base class is not collected by itself (its name does not start with ``Test``), and the subclass may live in any
module. Tests that do not apply to the backend are not generated for the subclass at all (not skipped): the
cross-process tests for a process-local backend, the record and update tests for a backend that does not declare
``atomic_records`` or ``atomic_update``, the enumeration tests that contradict ``supports_keys``; see
:func:`beaker_core.testing.backend.requires`.

The backend is built through a :class:`~beaker_core.registry.Registry` that loads installed plugins, so the test
also proves that the distribution's entry point works.

The suite's modules are imported on first use of ``BackendConformance``, after pytest has been told to rewrite their
``assert`` statements, so that failures show the values compared.
"""
from __future__ import annotations

from typing import Any

_SUITE_MODULES = ("backend", "caching", "locks", "records", "regions", "sessions", "suite")

__all__ = ["BackendConformance"]


def __getattr__(name: str) -> Any:
    if name == "BackendConformance":
        import sys

        import pytest
        fresh = [f"{__name__}.{module}" for module in _SUITE_MODULES if f"{__name__}.{module}" not in sys.modules]
        if fresh:
            pytest.register_assert_rewrite(*fresh)
        from .suite import BackendConformance
        globals()[name] = BackendConformance
        return BackendConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
