"""The conformance suite against the built-in backends (memory, file, dbm), plus two things the suite cannot
check generically: that odd keys never reach outside ``data_dir``, and Beaker parity of the caching API."""
import os
import time

import pytest

from beaker_core.cache import Cache
from beaker_core.testing import BackendConformance
from beaker_core.testing.backend import ODD_KEYS


class TestMemoryBackend(BackendConformance):
    backend = "memory"


class StaysInsideDataDir:
    """For backends that keep files under ``data_dir``: no key, however odd, names a path outside it."""

    def test_odd_keys_create_nothing_outside_data_dir(self, store, prefix, tmp_path):
        outside_before = set(os.listdir(tmp_path.parent))
        absolute_before = os.path.exists("/tmp/absolute")
        for suffix in [suffix for _, suffix in ODD_KEYS] + ["../escape-1", "../../escape-2", "data/../../escape-3"]:
            store.set(suffix, b"x")  # without the prefix: "../../../../etc/passwd" as it is
            store.set(prefix + suffix, b"x")
        assert set(os.listdir(tmp_path.parent)) == outside_before
        assert set(os.listdir(tmp_path)) <= {"data", "locks"}
        assert os.path.exists("/tmp/absolute") == absolute_before
        for directory, _, files in os.walk(tmp_path):
            assert not any(name in ("passwd", "windows", "absolute") or name.startswith("escape-")
                           for name in files), directory


class TestFileBackend(StaysInsideDataDir, BackendConformance):
    backend = "file"

    def make_options(self, tmp_path):
        return {"data_dir": str(tmp_path / "data")}


class TestDBMBackend(StaysInsideDataDir, BackendConformance):
    backend = "dbm"

    def make_options(self, tmp_path):
        return {"data_dir": str(tmp_path / "data")}


# -- Beaker parity: behaviour of Beaker 1.14.1 the caching API keeps ------------------------------------------------

@pytest.fixture(params=["memory", "file"])
def beaker_cache(request, tmp_path):
    options = {"data_dir": str(tmp_path / "data")} if request.param == "file" else {}
    return Cache(f"parity-{os.getpid()}-{time.time_ns()}", type=request.param, **options)


def test_beaker_parity_lifetime_is_fixed_when_the_value_is_stored(beaker_cache):
    """Beaker 1.14.1: ``get(key, expiretime=N)`` applies N only to a value that this get creates. A value put for an
    hour is still served to ``get(key, expiretime=1)`` a second later, and a value put for one second is gone for
    ``get(key, expiretime=3600)``."""
    beaker_cache.put("hour", "h", expiretime=3600)
    beaker_cache.put("second", "s", expiretime=1)
    time.sleep(1.3)
    assert beaker_cache.get("hour", expiretime=1) == "h"
    with pytest.raises(KeyError):
        beaker_cache.get("second", expiretime=3600)


def test_beaker_parity_deleting_a_missing_key_is_silent(beaker_cache):
    del beaker_cache["never stored"]
