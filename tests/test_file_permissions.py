"""Permissions of what the ``file`` and ``dbm`` backends and the ``file`` lock create: 0600 files and 0700 directories
whatever the umask (a file holds its session id in clear), ``file_mode``/``dir_mode`` to widen them, directories
the operator made left as they are, with one warning at startup for a data directory wider than ``dir_mode``.

Real files under a real umask of 022, the usual default, which would give 0644 and 0755."""
from __future__ import annotations

import glob
import logging
import os
import shutil
import stat

import pytest

from beaker_core.backends.dbm import DBMBackend
from beaker_core.backends.file import FileBackend
from beaker_core.cache import Cache
from beaker_core.exceptions import ConfigurationError
from beaker_core.locks.file import FileLock
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.sessions import WSGIClient, session_app

BACKENDS = {"file": FileBackend, "dbm": DBMBackend}


@pytest.fixture(autouse=True)
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture(params=sorted(BACKENDS))
def kind(request):
    return request.param


@pytest.fixture
def registry():
    registry = Registry(load_entrypoints=False)
    yield registry
    registry.close()


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes(top) -> dict[str, set[int]]:
    """``{"directories": {modes}, "files": {modes}}`` of ``top`` and everything under it."""
    found = {"directories": {mode(top)}, "files": set()}
    for directory, subdirectories, files in os.walk(top):
        found["directories"] |= {mode(os.path.join(directory, name)) for name in subdirectories}
        found["files"] |= {mode(os.path.join(directory, name)) for name in files}
    return found


def cache_with_held_lock(kind, data_dir, registry, **options):
    """Fill a cache and return ``(cache, lock file modes seen while the creator held its lock)``."""
    cache = Cache("ns", type=kind, data_dir=str(data_dir), registry=registry, **options)
    seen = []

    def create():
        seen.extend(mode(path) for path in glob.glob(os.path.join(data_dir, "locks", "*.lock")))
        return "value"
    assert cache.get_or_create("key", create) == "value"
    return cache, seen


# -- private by default -----------------------------------------------------------------------------------------------

def test_cache_files_and_directories_are_private(kind, tmp_path, registry):
    app = tmp_path / "app"  # created by the backend, with its parent app/
    data_dir = app / "cache"
    cache, lock_files = cache_with_held_lock(kind, data_dir, registry)
    assert lock_files and set(lock_files) == {0o600}
    cache.set_value("other", [1, 2])
    assert (data_dir / "locks").is_dir()
    assert modes(app) == {"directories": {0o700}, "files": {0o600}}


def test_file_sessions_through_the_middleware_are_private(kind, tmp_path, registry):
    root = tmp_path / "app"
    app = SessionMiddleware(session_app, {"session.type": kind, "session.data_dir": str(root / "sessions"),
                                          "session.lock_dir": str(root / "locks")}, registry=registry)
    client = WSGIClient(app)
    assert [client.json("/incr"), client.json("/incr")] == [1, 2]
    client.json("/set?name=value")
    assert modes(root) == {"directories": {0o700}, "files": {0o600}}


def test_the_file_lock_alone(tmp_path):
    lock_dir = tmp_path / "run" / "app" / "locks"
    lock = FileLock("a name", lock_dir=str(lock_dir))
    with lock:
        assert mode(lock.path) == 0o600
    assert {mode(lock_dir), mode(lock_dir.parent), mode(lock_dir.parent.parent)} == {0o700}
    lock_dir.rmdir()
    with lock:  # the lock directory created again
        assert mode(lock.path) == 0o600 and mode(lock_dir) == 0o700


def test_directories_recreated_after_removal_are_private(kind, tmp_path, registry):
    root = tmp_path / "app"
    cache, _ = cache_with_held_lock(kind, root / "cache", registry)
    shutil.rmtree(root)
    cache.set_value("after", "removal")
    _, lock_files = cache_with_held_lock(kind, root / "cache", registry)  # the same backend, from the registry
    assert set(lock_files) == {0o600}
    assert modes(root) == {"directories": {0o700}, "files": {0o600}}


def test_shard_directories_recreated_after_cleanup_are_private(tmp_path):
    backend = FileBackend(data_dir=str(tmp_path / "data"))
    backend.set("key", b"v")
    backend.delete("key")
    backend.cleanup()
    assert os.listdir(backend.data_dir) == []
    backend.set("key", b"again")
    assert modes(backend.data_dir) == {"directories": {0o700}, "files": {0o600}}


def test_a_parent_the_operator_made_is_left_as_it_is(kind, tmp_path):
    operator = tmp_path / "var-cache"
    operator.mkdir()
    operator.chmod(0o755)
    BACKENDS[kind](data_dir=str(operator / "app")).set("k", b"v")
    assert mode(operator) == 0o755 and mode(operator / "app") == 0o700


# -- widened ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("file_mode, dir_mode, expected", [("0660", "0o770", (0o660, 0o770)),
                                                            (0o640, 0o750, (0o640, 0o750))], ids=["strings", "ints"])
def test_the_options_widen_the_modes(kind, tmp_path, registry, file_mode, dir_mode, expected):
    root = tmp_path / "shared"
    cache, lock_files = cache_with_held_lock(kind, root / "cache", registry, file_mode=file_mode, dir_mode=dir_mode)
    assert set(lock_files) == {expected[0]}  # the lock takes the backend's modes
    assert modes(root) == {"directories": {expected[1]}, "files": {expected[0]}}
    shutil.rmtree(root)
    cache.set_value("after", "removal")
    assert modes(root) == {"directories": {expected[1]}, "files": {expected[0]}}


def test_widened_sessions_from_configuration_strings(kind, tmp_path, registry):
    root = tmp_path / "app"
    app = SessionMiddleware(session_app, {"session.type": kind, "session.data_dir": str(root / "sessions"),
                                          "session.file_mode": "0660", "session.dir_mode": "0770"},
                            registry=registry)
    assert WSGIClient(app).json("/incr") == 1
    assert modes(root) == {"directories": {0o770}, "files": {0o660}}


def test_setgid_directories_for_a_shared_group(tmp_path):
    backend = FileBackend(data_dir=str(tmp_path / "data"), file_mode=0o660, dir_mode="2770")
    backend.set("k", b"v")
    assert modes(backend.data_dir) == {"directories": {0o2770}, "files": {0o660}}
    # a directory created under a setgid one the operator made keeps the setgid bit it inherits
    operator = tmp_path / "group-dir"
    operator.mkdir()
    operator.chmod(0o2750)
    inherited = FileBackend(data_dir=str(operator / "data"))
    inherited.set("k", b"v")
    assert modes(inherited.data_dir) == {"directories": {0o2700}, "files": {0o600}}


def test_the_lock_takes_its_own_options(tmp_path):
    lock = FileLock("name", lock_dir=str(tmp_path / "locks"), file_mode="0640", dir_mode=0o750)
    with lock:
        assert mode(lock.path) == 0o640 and mode(tmp_path / "locks") == 0o750


@pytest.mark.parametrize("option, value", [
    ("file_mode", "abc"), ("file_mode", "0o999"), ("file_mode", 0o1000), ("file_mode", -1), ("file_mode", True),
    ("file_mode", 1.5), ("file_mode", "0400"), ("file_mode", 0o4600), ("dir_mode", "rwx"), ("dir_mode", "0600"),
    ("dir_mode", 0o4700), ("dir_mode", "0o17777"), ("dir_mode", [0o700]),
])
def test_a_bad_value_names_its_option(kind, tmp_path, option, value):
    with pytest.raises(ConfigurationError, match=f"^{option} must"):
        BACKENDS[kind](data_dir=str(tmp_path / "data"), **{option: value})
    with pytest.raises(ConfigurationError, match=f"^{option} must"):
        FileLock("name", lock_dir=str(tmp_path / "locks"), **{option: value})
    assert not (tmp_path / "data").exists()  # checked before anything is created


def test_a_bad_value_from_a_configuration_file(kind, tmp_path, registry):
    with pytest.raises(ConfigurationError, match="dir_mode must keep the owner's permissions"):
        SessionMiddleware(session_app, {"session.type": kind, "session.data_dir": str(tmp_path / "s"),
                                        "session.dir_mode": "0o75"}, registry=registry)


# -- an existing data directory wider than dir_mode -------------------------------------------------------------------

def make_operator_directory(path, permissions):
    path.mkdir()
    path.chmod(permissions)
    return path


def test_one_warning_for_a_data_directory_open_to_others(kind, tmp_path, caplog):
    data_dir = make_operator_directory(tmp_path / "var-cache-app", 0o755)
    with caplog.at_level(logging.WARNING, logger="beaker_core.fs"):
        backend = BACKENDS[kind](data_dir=str(data_dir))
        backend.set("k", b"v")
        BACKENDS[kind](data_dir=str(data_dir))  # another instance: no second warning
    (record,) = caplog.records
    message = record.getMessage()
    assert str(data_dir) in message and "0755" in message and "the group read and enter it" in message
    assert f"chmod -R g-rx,o-rx {data_dir}" in message and "dir_mode" in message
    assert mode(data_dir) == 0o755  # the operator's directory is not changed
    assert modes(data_dir)["files"] == {0o600}


def test_writable_by_others_and_sticky_directories(tmp_path, caplog):
    writable = make_operator_directory(tmp_path / "writable", 0o777)
    sticky = make_operator_directory(tmp_path / "sticky", 0o1777)
    with caplog.at_level(logging.WARNING, logger="beaker_core.fs"):
        FileBackend(data_dir=str(writable))
        FileBackend(data_dir=str(sticky))
    first, second = (record.getMessage() for record in caplog.records)
    assert f"chmod -R g-rwx,o-rwx {writable}" in first and "others read, write and enter it" in first
    assert "remove or replace" in first
    assert "directory of its own" in second and "chmod" not in second


@pytest.mark.parametrize("permissions, options", [(0o700, {}), (0o770, {"dir_mode": "0770"}),
                                                  (0o750, {"dir_mode": 0o770})], ids=["0700", "0770", "0750"])
def test_no_warning_within_dir_mode(kind, tmp_path, caplog, permissions, options):
    data_dir = make_operator_directory(tmp_path / "data", permissions)
    with caplog.at_level(logging.WARNING, logger="beaker_core.fs"):
        BACKENDS[kind](data_dir=str(data_dir), **options).set("k", b"v")
    assert caplog.records == []
