"""The wall clock every expiry in beaker-core reads.

Deadlines of stored entries (memory, file and dbm backends), cached values' freshness, session timeouts and cookie
expiry dates are all taken from :data:`now`, a module attribute that defaults to :func:`time.time`. Code reads it
as ``clock.now()`` at each call (never ``from .clock import now``), so a test can move time forward without sleeping::

    from beaker_core.testing.clock import fake_clock

    with fake_clock() as clock:
        backend.set("k", b"v", ttl=60)
        clock.advance(61)
        assert backend.get("k") is None

Timeouts that measure a duration in this process (lock waits, lock leases, a hung server's back-off) use
:func:`time.monotonic` and are not affected. A server that expires entries itself (redis, memcached) follows its
own clock: a test of that expiry has to wait for real.
"""
from __future__ import annotations

import time
from typing import Callable

#: Seconds since the epoch, as :func:`time.time`. Replaced by :func:`beaker_core.testing.clock.fake_clock`.
now: Callable[[], float] = time.time

__all__ = ["now"]
