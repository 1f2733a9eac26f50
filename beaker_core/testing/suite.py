"""``BackendConformance``: every part of the conformance suite in one class to subclass.

The parts stay separate mixins (each a ``...Tests`` class) so that a backend distribution can also pick only some of
them; ``pytest -k`` on the test names selects within them.
"""
from __future__ import annotations

from .backend import BackendContractTests
from .caching import CachingConformanceTests
from .locks import LockConformanceTests
from .records import AtomicRecordTests, AtomicUpdateTests
from .regions import RegionConformanceTests
from .sessions import SessionConformance


class BackendConformance(BackendContractTests, AtomicRecordTests, AtomicUpdateTests, LockConformanceTests,
                         CachingConformanceTests, RegionConformanceTests, SessionConformance):
    """The whole conformance suite. Subclass it in a module whose class name starts with ``Test``::

        from beaker_core.testing import BackendConformance

        class TestFileBackend(BackendConformance):
            backend = "file"

            def make_options(self, tmp_path):
                return {"data_dir": str(tmp_path / "data")}

    See :class:`~beaker_core.testing.backend.ConformanceBase` for the attributes that declare what a backend
    cannot do (``supports_keys``, ``ttl_resolution``, ``native_expiry``...). Tests that start processes are marked
    ``slow``.
    """
