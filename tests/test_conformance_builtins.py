"""The conformance suite against the built-in backends (memory, file, dbm), plus two things the suite cannot
check generically: that odd keys never reach outside ``data_dir``, and Beaker parity of the caching API; and how
the suite chooses the tests it generates for a backend's capabilities, and its pytest plugin."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from beaker_core.cache import Cache
from beaker_core.registry import Registry
from beaker_core.testing import BackendConformance
from beaker_core.testing.backend import ODD_KEYS, ConformanceBase, requires


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


def test_beaker_parity_lifetime_is_fixed_when_the_value_is_stored(beaker_cache, fake_clock):
    """Beaker 1.14.1: ``get(key, expiretime=N)`` applies N only to a value that this get creates. A value put for an
    hour is still served to ``get(key, expiretime=1)`` a second later, and a value put for one second is gone for
    ``get(key, expiretime=3600)``."""
    beaker_cache.put("hour", "h", expiretime=3600)
    beaker_cache.put("second", "s", expiretime=1)
    fake_clock.advance(1.3)
    assert beaker_cache.get("hour", expiretime=1) == "h"
    with pytest.raises(KeyError):
        beaker_cache.get("second", expiretime=3600)


def test_beaker_parity_deleting_a_missing_key_is_silent(beaker_cache):
    del beaker_cache["never stored"]


# -- which tests the suite generates for a backend ----------------------------------------------------------------

CROSS_PROCESS_TESTS = [
    "test_processes_incrementing_under_the_lock_reach_the_exact_total",
    "test_lock_held_by_another_process_excludes_this_one",
    "test_lock_of_a_crashed_holder_does_not_block_forever",
    "test_get_or_create_runs_the_creator_once_for_eight_processes",
    "test_values_and_clear_cross_processes",
    "test_decorated_function_runs_once_for_eight_processes",
    "test_session_concurrent_processes_keep_every_key",
]
CROSS_PROCESS_UPDATE_TEST = "test_concurrent_updates_from_processes_lose_nothing"
RECORD_TESTS = [name for name in dir(BackendConformance) if name.startswith("test_record_")]
UPDATE_TESTS = [name for name in dir(BackendConformance)
                if name.startswith(("test_update_", "test_concurrent_updates"))]


def generated(cls, name):
    return callable(getattr(cls, name))


def test_every_capability_test_exists_in_the_full_suite():
    assert len(RECORD_TESTS) == 5 and len(UPDATE_TESTS) == 4 and CROSS_PROCESS_UPDATE_TEST in UPDATE_TESTS
    keys_tests = ["test_keys_lists_live_keys_under_a_prefix", "test_delete_prefix_removes_only_that_prefix",
                  "test_keys_unsupported_is_not_implemented"]
    for name in CROSS_PROCESS_TESTS + RECORD_TESTS + UPDATE_TESTS + keys_tests:
        assert generated(BackendConformance, name), name  # no backend named: nothing removed


def test_process_local_backend_has_no_cross_process_tests():
    for name in CROSS_PROCESS_TESTS + [CROSS_PROCESS_UPDATE_TEST]:
        assert getattr(TestMemoryBackend, name) is None, name
    for name in CROSS_PROCESS_TESTS:
        assert generated(TestFileBackend, name) and generated(TestDBMBackend, name), name


@pytest.mark.parametrize("cls", [TestMemoryBackend, TestFileBackend, TestDBMBackend], ids=lambda cls: cls.backend)
def test_record_and_update_tests_follow_what_the_backend_class_declares(cls):
    backend_class = Registry().backend_class(cls.backend)
    for names, capability in ((RECORD_TESTS, "atomic_records"), (UPDATE_TESTS, "atomic_update")):
        expected = set()
        if getattr(backend_class, capability):
            expected = {name for name in names if backend_class.shared or name != CROSS_PROCESS_UPDATE_TEST}
        assert {name for name in names if generated(cls, name)} == expected, capability


def test_keys_tests_follow_supports_keys():
    assert generated(TestFileBackend, "test_keys_lists_live_keys_under_a_prefix")
    assert generated(TestFileBackend, "test_delete_prefix_removes_only_that_prefix")
    assert TestFileBackend.test_keys_unsupported_is_not_implemented is None

    class WithoutKeys(TestFileBackend):
        supports_keys = False

    assert WithoutKeys.test_keys_lists_live_keys_under_a_prefix is None
    assert WithoutKeys.test_delete_prefix_removes_only_that_prefix is None
    assert generated(WithoutKeys, "test_keys_unsupported_is_not_implemented")


def test_removed_tests_are_not_collected():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", f"{__file__}::TestMemoryBackend"],
                            capture_output=True, text=True, timeout=120)
    collected = {line.rpartition("::")[2].partition("[")[0] for line in result.stdout.splitlines() if "::" in line}
    removed = {name for name in dir(TestMemoryBackend) if name.startswith("test") and
               getattr(TestMemoryBackend, name) is None}
    assert set(CROSS_PROCESS_TESTS) | {"test_keys_unsupported_is_not_implemented"} <= removed
    assert "test_get_missing_is_none" in collected, result.stdout + result.stderr
    assert not collected & removed
    assert "skipped" not in result.stdout


def test_a_subclass_naming_another_backend_gets_its_own_choice():
    class SharedAgain(TestMemoryBackend):
        backend = "file"

    class LocalAgain(TestFileBackend):
        backend = "memory"

    for name in CROSS_PROCESS_TESTS:
        assert generated(SharedAgain, name), name
        assert getattr(LocalAgain, name) is None, name
    assert generated(TestMemoryBackend, "test_get_missing_is_none")  # the parents are left as they were
    assert TestMemoryBackend.test_values_and_clear_cross_processes is None
    assert generated(TestFileBackend, "test_values_and_clear_cross_processes")


def test_requirements_on_tests_and_on_a_mixin_add_up():
    class ObjectStores(ConformanceBase):
        requires_capability = "stores_objects"

        def test_objects(self):
            pass

        @requires("shared")
        def test_objects_and_shared(self):
            pass

    class Plain(ConformanceBase):
        @requires("no_stores_objects", "shared")
        def test_bytes_and_shared(self):
            pass

        @requires("keys")
        @requires("no_shared")
        def test_keys_and_local(self):
            pass

        def test_always(self):
            pass

    class OnMemory(ObjectStores, Plain):
        backend = "memory"  # stores objects, process-local

    class OnFile(ObjectStores, Plain):
        backend = "file"  # stores bytes, shared

    def kept(cls):
        return sorted(name for name in dir(cls) if name.startswith("test_") and callable(getattr(cls, name)))

    assert kept(OnMemory) == ["test_always", "test_keys_and_local", "test_objects"]
    assert kept(OnFile) == ["test_always", "test_bytes_and_shared"]


def test_unknown_capability_is_an_error_at_once():
    with pytest.raises(ValueError, match="unknown capability 'sharde'.*atomic_records"):
        requires("sharde")
    with pytest.raises(ValueError, match="Typo.requires_capability: unknown capability 'no_atomic'"):
        class Typo(ConformanceBase):
            requires_capability = ("shared", "no_atomic")


def test_backend_the_registry_cannot_find_keeps_every_test():
    class Misnamed(TestMemoryBackend):
        backend = "no-such-backend"

    for name in CROSS_PROCESS_TESTS + RECORD_TESTS + ["test_keys_unsupported_is_not_implemented"]:
        assert generated(Misnamed, name), name
    assert Misnamed._conformance_capabilities is None


def test_backend_class_gives_the_capabilities_of_a_backend_the_registry_does_not_find():
    """For a backend registered only in an overridden ``registry`` fixture."""
    from beaker_core.backends.memory import MemoryBackend

    class RegisteredInAFixture(BackendConformance):
        backend = "registered-in-a-fixture"
        backend_class = MemoryBackend

    for name in CROSS_PROCESS_TESTS + ["test_keys_unsupported_is_not_implemented"]:
        assert getattr(RegisteredInAFixture, name) is None, name
    assert generated(RegisteredInAFixture, "test_keys_lists_live_keys_under_a_prefix")


def run_pytest(tmp_path, source, *args, env=None):
    """Run pytest on one test module in a fresh process, outside this project's configuration."""
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp_path / "test_module.py").write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-c", str(tmp_path / "pytest.ini"),
                           "--rootdir", str(tmp_path), *args, str(tmp_path / "test_module.py")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, env={**os.environ, **(env or {})})


def test_instance_declaring_other_capabilities_than_its_class_fails(tmp_path):
    result = run_pytest(tmp_path, """
        import pytest
        from beaker_core.backends.memory import MemoryBackend
        from beaker_core.registry import Registry
        from beaker_core.testing import BackendConformance

        class SharedWhenBuilt(MemoryBackend):
            def __init__(self, **options):
                super().__init__(**options)
                self.shared = True

        class TestMemoryClaimingShared(BackendConformance):
            backend = "memory"

            @pytest.fixture
            def registry(self):
                registry = Registry(builtins=False, load_entrypoints=False)
                registry.register("backend", "memory", SharedWhenBuilt)
                return registry
        """, "-k", "test_get_missing_is_none")
    assert "1 error" in result.stdout, result.stdout + result.stderr  # the store fixture fails
    assert "declares {'shared': True}, its class the opposite" in result.stdout


# -- the pytest plugin ---------------------------------------------------------------------------------------------

SLOW_TEST = """
    import pytest

    @pytest.mark.slow
    def test_marked():
        pass
    """


def test_pytest_plugin_registers_the_slow_marker(tmp_path):
    """The plugin is loaded through beaker-core's ``pytest11`` entry point, with nothing on the command line."""
    result = run_pytest(tmp_path, SLOW_TEST, "--strict-markers")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    markers = run_pytest(tmp_path, SLOW_TEST, "--markers")
    assert "@pytest.mark.slow: starts processes" in markers.stdout


def test_without_the_plugin_strict_markers_refuses_slow(tmp_path):
    """The control for the test above: nothing else registers the marker in that run."""
    result = run_pytest(tmp_path, SLOW_TEST, "--strict-markers", env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.returncode != 0
    assert "'slow' not found in `markers`" in result.stdout + result.stderr


def test_pytest_plugin_imports_nothing_heavy():
    code = ("import sys; before = set(sys.modules); import beaker_core.testing.pytest_plugin; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(result.stdout.split())
    assert "beaker_core.testing.pytest_plugin" in imported
    assert not {"pytest", "_pytest", "beaker_core.testing.backend", "beaker_core.registry"} & imported, imported
