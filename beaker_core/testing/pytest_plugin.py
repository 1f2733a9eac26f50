"""beaker-core's pytest plugin: what a project running the conformance suite needs from pytest's configuration.

It provides the ``fake_clock`` fixture (:mod:`beaker_core.testing.clock`) and registers the ``slow`` marker the
suite puts on its tests that start processes, so that a backend distribution can run the suite under
``--strict-markers`` without declaring the marker itself. pytest loads it through the
``pytest11`` entry point of beaker-core; without the entry point, ``pytest -p beaker_core.testing.pytest_plugin``
does the same.

This module imports nothing at import time (pytest only once a test session configures it): pytest loads it in every session of every project where beaker-core is installed.
"""

SLOW_MARKER = "slow: starts processes or waits on real time (deselect with -m 'not slow')"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", SLOW_MARKER)
    config.pluginmanager.register(_fixtures(), "beaker_core.fixtures")


def _fixtures():
    """The fixtures: ``fake_clock``, a :class:`beaker_core.testing.clock.FakeClock` in effect for the test."""
    import pytest

    class Fixtures:
        @pytest.fixture
        def fake_clock(self):
            from .clock import fake_clock
            with fake_clock() as clock:
                yield clock

    return Fixtures()

