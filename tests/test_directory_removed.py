"""A data or lock directory removed while the application runs (a tmp cleaner, a deploy, Beaker's
``test_directory_goes_away``): the ``file`` and ``dbm`` backends, the instances shared through the registry and the
``file`` lock create it again on the next write and keep working; reads meanwhile are misses."""
from __future__ import annotations

import datetime
import os
import shutil
import stat

import pytest

from beaker_core.backends.dbm import DBMBackend
from beaker_core.backends.file import FileBackend
from beaker_core.cache import Cache, CacheManager
from beaker_core.exceptions import BackendError
from beaker_core.locks.file import FileLock
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.concurrency import run_scripts
from beaker_core.testing.sessions import WSGIClient, session_app

BACKENDS = {"file": FileBackend, "dbm": DBMBackend}


@pytest.fixture(params=sorted(BACKENDS))
def kind(request):
    return request.param


@pytest.fixture
def registry():
    registry = Registry(load_entrypoints=False)
    yield registry
    registry.close()


@pytest.fixture
def root(tmp_path):
    """The directory a tmp cleaner removes: data and lock directories live below it."""
    return tmp_path / "app"


def open_backend(kind, data_dir, **options):
    return BACKENDS[kind](data_dir=str(data_dir), **options)


def modes(top):
    """``{relative path: permission bits}`` of every directory and file under ``top`` (lock files aside)."""
    found = {".": stat.S_IMODE(os.stat(top).st_mode)}
    for directory, subdirectories, files in os.walk(top):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, top)] = stat.S_IMODE(os.stat(path).st_mode)
    return found


# -- caches -----------------------------------------------------------------------------------------------------------

def test_beaker_directory_goes_away(kind, root):
    """Beaker's own test, on a region: the value computed after the removal is a new one, and it is cached."""
    cache = CacheManager(cache_regions={"short_term_without_key_length": {
        "expire": 60, "type": kind, "data_dir": str(root / "cache/data"), "lock_dir": str(root / "cache/lock")}})

    @cache.region("short_term_without_key_length")
    def load_with_str_expire(person):
        return "Hi there %s, its currently %s" % (person, datetime.datetime.now())

    msg = load_with_str_expire("fred")
    msg2 = load_with_str_expire("fred")
    shutil.rmtree(root)
    msg3 = load_with_str_expire("fred")
    assert msg == msg2 and msg2 != msg3
    assert load_with_str_expire("fred") == msg3


def test_cache_keeps_working(kind, root, registry):
    data_dir, lock_dir = root / "data", root / "lock"
    cache = Cache("ns", type=kind, data_dir=str(data_dir), lock_dir=str(lock_dir), registry=registry)
    created = []

    def creator():
        created.append(len(created) + 1)
        return created[-1]

    assert [cache.get_or_create("k", creator), cache.get_or_create("k", creator)] == [1, 1]
    cache.put("other", "before")
    shutil.rmtree(root)
    assert not cache.has_key("other") and not cache.has_key("k")
    assert [cache.get_or_create("k", creator), cache.get_or_create("k", creator)] == [2, 2]
    assert data_dir.is_dir() and lock_dir.is_dir()
    shutil.rmtree(root)
    cache.put("other", "after")
    assert cache.get("other") == "after"
    shutil.rmtree(root)
    cache.clear()
    cache.put("third", 3)
    assert cache.get("third") == 3
    cache.clear()
    assert not cache.has_key("third")


def test_caches_sharing_one_backend_keep_working(kind, root, registry):
    options = {"type": kind, "data_dir": str(root / "data"), "registry": registry}
    first, second = Cache("ns", **options), Cache("ns", **options)
    assert first.backend is second.backend
    first.put("k", "v1")
    assert second.get("k") == "v1"
    shutil.rmtree(root)
    first.put("k", "v2")
    assert second.get("k") == "v2"
    shutil.rmtree(root)
    assert second.get_or_create("j", lambda: "made by second") == "made by second"
    assert first.get("j") == "made by second"


# -- the backends -----------------------------------------------------------------------------------------------------

def test_read_of_a_removed_directory_is_a_miss_and_creates_nothing(kind, root):
    data_dir = root / "data"
    backend = open_backend(kind, data_dir)
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
    shutil.rmtree(root)
    assert backend.get("k") is None
    assert backend.get_many(["k", "j"]) == [None, None]
    assert list(backend.keys()) == []
    assert backend.cleanup() == 0
    assert not root.exists()
    backend.set("k", b"again")
    assert backend.get("k") == b"again" and list(backend.keys()) == ["k"]


def test_every_write_recreates_the_directory(kind, root):
    backend = open_backend(kind, root / "data")
    writes = [
        ("set", lambda: backend.set("k", b"v", ttl=60), lambda: backend.get("k") == b"v"),
        ("add", lambda: backend.add("a", b"v") is True, lambda: backend.get("a") == b"v"),
        ("incr", lambda: backend.incr("n", 5) == 5, lambda: backend.get("n") == b"5"),
        ("set_many", lambda: backend.set_many({"x": b"1", "y": b"2"}), lambda: backend.get_many(["x", "y"]) == [
            b"1", b"2"]),
    ]
    if backend.atomic_update:
        writes.append(("update", lambda: backend.update("u", lambda current: b"new") is True,
                       lambda: backend.get("u") == b"new"))
    for name, write, check in writes:
        backend.set("before", b"x")
        shutil.rmtree(root)
        assert write() is not False, name
        assert check(), name
        assert backend.get("before") is None, name
    shutil.rmtree(root)
    assert backend.touch("k", 60) is False and backend.delete("k") is False  # nothing to touch or delete
    backend.set("k", b"v")
    shutil.rmtree(root)
    backend.set("j", b"w")
    assert backend.touch("j", 60) is True and backend.delete("j") is True


def test_a_second_instance_sees_what_the_first_writes_after_the_removal(kind, root):
    """Two backend objects on one directory (two registries, two applications): the reader's open handles must not
    keep it on the removed files."""
    writer, reader = open_backend(kind, root / "data"), open_backend(kind, root / "data")
    writer.set("k", b"before")
    assert reader.get("k") == b"before"
    shutil.rmtree(root)
    writer.set("k", b"after")
    assert reader.get("k") == b"after"
    reader.set("j", b"from the reader")
    assert writer.get("j") == b"from the reader"
    assert open_backend(kind, root / "data").get_many(["k", "j"]) == [b"after", b"from the reader"]


READ_AND_WRITE = """
    from beaker_core.backends.dbm import DBMBackend
    from beaker_core.backends.file import FileBackend
    backend = {"file": FileBackend, "dbm": DBMBackend}[sys.argv[2]](data_dir=sys.argv[3])
    print(backend.get("from the parent"))
    backend.set("from the child", sys.argv[4].encode())
    print(backend.get("from the child"))
"""


def test_directory_removed_between_two_processes_writes(kind, root, tmp_path):
    data_dir = root / "data"
    backend = open_backend(kind, data_dir)
    backend.set("from the parent", b"1")
    assert run_scripts(tmp_path, READ_AND_WRITE, [[kind, data_dir, "first"]]) == ["b'1'\nb'first'"]
    assert backend.get("from the child") == b"first"
    shutil.rmtree(root)
    assert run_scripts(tmp_path, READ_AND_WRITE, [[kind, data_dir, "second"]]) == ["None\nb'second'"]
    assert backend.get("from the child") == b"second"  # written by the child into the recreated directory
    shutil.rmtree(root)
    backend.set("from the parent", b"2")
    assert run_scripts(tmp_path, READ_AND_WRITE, [[kind, data_dir, "third"]]) == ["b'2'\nb'third'"]
    assert backend.get("from the child") == b"third"


def test_recreated_with_the_permissions_of_a_first_start(kind, tmp_path):
    options = {"file_mode": 0o640} if kind == "file" else {}
    fresh, removed = tmp_path / "fresh" / "data", tmp_path / "removed" / "data"
    open_backend(kind, fresh, **options).set("k", b"v")
    backend = open_backend(kind, removed, **options)
    backend.set("other", b"x")
    shutil.rmtree(removed.parent)
    backend.set("k", b"v")
    assert modes(removed.parent) == modes(fresh.parent)
    if kind == "file":
        assert set(modes(removed).values()) >= {0o640}


# -- what is in the way -----------------------------------------------------------------------------------------------

def test_directory_replaced_by_a_file_is_a_clear_error(kind, root):
    data_dir = root / "data"
    backend = open_backend(kind, data_dir)
    backend.set("k", b"v")
    shutil.rmtree(data_dir)
    data_dir.write_text("not a directory")
    with pytest.raises(BackendError, match=f"{data_dir} exists and is not a directory"):
        backend.set("k", b"v")
    shutil.rmtree(root)
    root.write_text("not a directory either")
    with pytest.raises(BackendError, match=f"{root} exists and is not a directory"):
        backend.set("k", b"v")
    root.unlink()
    backend.set("k", b"works again")
    assert backend.get("k") == b"works again"


def test_directory_replaced_by_a_link_to_elsewhere_is_a_clear_error(kind, root, tmp_path):
    data_dir, elsewhere = root / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    backend = open_backend(kind, data_dir)
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
    shutil.rmtree(data_dir)
    data_dir.symlink_to(elsewhere)
    with pytest.raises(BackendError, match=f"{data_dir} is a symbolic link to {elsewhere}"):
        backend.set("k", b"v")
    assert list(elsewhere.iterdir()) == []  # nothing written, no directory made there


def test_a_data_directory_that_is_a_link_stays_one(kind, tmp_path):
    """A link configured as the data directory is allowed. When what it leads to is removed, a write does not guess
    and create that through the link: it names the link, and works again once its target is back."""
    target = tmp_path / "volume" / "data"
    target.mkdir(parents=True)
    link = tmp_path / "data"
    link.symlink_to(target)
    backend = open_backend(kind, link)
    backend.set("k", b"v")
    shutil.rmtree(target)
    assert backend.get("k") is None
    with pytest.raises(BackendError, match=f"{link} is a symbolic link to {target}, which is not a directory"):
        backend.set("k", b"v")
    target.mkdir()
    backend.set("k", b"again")
    assert backend.get("k") == b"again" and any(target.iterdir())


# -- the file lock ----------------------------------------------------------------------------------------------------

def test_file_lock_recreates_its_directory(root):
    lock_dir = root / "locks"
    lock, other = FileLock("name", lock_dir=str(lock_dir), timeout=5), FileLock("name", lock_dir=str(lock_dir))
    with lock:
        assert other.acquire(blocking=False) is False
    shutil.rmtree(root)
    with lock:
        assert lock_dir.is_dir()
        assert other.acquire(blocking=False) is False
    assert other.acquire(blocking=False) is True
    shutil.rmtree(root)  # while held: the release still works, and the next holder starts over
    other.release()
    with lock:
        assert other.acquire(blocking=False) is False


def test_file_lock_directory_replaced_by_a_file_or_a_link(root, tmp_path):
    lock_dir, elsewhere = root / "locks", tmp_path / "elsewhere"
    elsewhere.mkdir()
    lock = FileLock("name", lock_dir=str(lock_dir))
    with lock:
        pass
    shutil.rmtree(lock_dir)
    lock_dir.write_text("not a directory")
    with pytest.raises(BackendError, match=f"file lock 'name'.*{lock_dir} exists and is not a directory"):
        lock.acquire()
    lock_dir.unlink()
    lock_dir.symlink_to(elsewhere / "missing")
    with pytest.raises(BackendError, match=f"{lock_dir} is a symbolic link to {elsewhere / 'missing'}"):
        lock.acquire()
    assert list(elsewhere.iterdir()) == []
    lock_dir.unlink()
    assert lock.acquire() is True
    lock.release()


# -- sessions through the middleware ----------------------------------------------------------------------------------

def test_sessions_start_fresh_and_keep_working(kind, root, registry):
    app = SessionMiddleware(session_app, {"session.type": kind, "session.data_dir": str(root / "sessions"),
                                          "session.lock_dir": str(root / "locks")}, registry=registry)
    client = WSGIClient(app)
    assert [client.json("/incr"), client.json("/incr")] == [1, 2]
    old_id = client.json("/id")
    shutil.rmtree(root)
    assert [client.json("/incr"), client.json("/incr"), client.json("/incr")] == [1, 2, 3]
    assert client.json("/id") != old_id
    shutil.rmtree(root)
    other = WSGIClient(app)
    assert [other.json("/incr"), client.json("/incr"), other.json("/incr")] == [1, 1, 2]
