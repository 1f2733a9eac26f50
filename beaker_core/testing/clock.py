"""A clock a test moves by hand: expiry tests of in-process stores and of the core's own deadlines run without
sleeping. See :mod:`beaker_core.clock`.

The pytest plugin of beaker-core provides it as the ``fake_clock`` fixture::

    def test_expiry(fake_clock):
        ...
        fake_clock.advance(61)
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

from .. import clock as _clock_module


class FakeClock:
    """A wall clock that stands still until :meth:`advance` moves it. Calling it gives the time, as
    :func:`time.time` does."""

    def __init__(self, start: float | None = None) -> None:
        self.value = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward (never backward); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, not by {seconds!r} seconds")
        self.value += seconds
        return self.value

    def __repr__(self) -> str:
        return f"FakeClock({self.value!r})"


@contextlib.contextmanager
def fake_clock(start: float | None = None) -> Iterator[FakeClock]:
    """Replace :data:`beaker_core.clock.now` with a :class:`FakeClock` for the duration of the block; nested uses
    restore the clock they found."""
    fake = FakeClock(start)
    previous = _clock_module.now
    _clock_module.now = fake
    try:
        yield fake
    finally:
        _clock_module.now = previous


def is_fake() -> bool:
    """Whether :func:`fake_clock` is in effect."""
    return isinstance(_clock_module.now, FakeClock)
