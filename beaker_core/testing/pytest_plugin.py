"""beaker-core's pytest plugin: what a project running the conformance suite needs from pytest's configuration.

It registers the ``slow`` marker the suite puts on its tests that start processes, so that a backend distribution
can run the suite under ``--strict-markers`` without declaring the marker itself. pytest loads it through the
``pytest11`` entry point of beaker-core; without the entry point, ``pytest -p beaker_core.testing.pytest_plugin``
does the same.

This module imports nothing: pytest loads it in every session of every project where beaker-core is installed.
"""

SLOW_MARKER = "slow: starts processes or waits on real time (deselect with -m 'not slow')"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", SLOW_MARKER)
