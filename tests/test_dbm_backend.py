"""What is special to the ``dbm`` backend: the lock file, cross-process visibility, corrupt data, cleanup, options, and
the ``dumb`` store: a write cut short, reused space, a full disk; no error when collected at interpreter exit."""
from __future__ import annotations

import dbm
import dbm.dumb
import errno
import gc
import importlib.util
import os
import struct
import sys
import time

import pytest

from beaker_core.backends import dbm as dbm_backend
from beaker_core.backends import dumbstore
from beaker_core.backends.dbm import DBMBackend
from beaker_core.exceptions import BackendError, ConfigurationError
from beaker_core.testing.concurrency import run_scripts

ODD_KEYS = ["../../etc/passwd", "a/b", "\x00", "nul\x00inside", "k" * 5000, "clé ünï 鍵 🔑", "", "line\nbreak",
            "quote'\"", "\udcff lone surrogate"]
HAS_GNU = importlib.util.find_spec("_gdbm") is not None


@pytest.fixture
def backend(tmp_path):
    backend = DBMBackend(data_dir=str(tmp_path / "data"))
    yield backend
    backend.close()


def test_round_trips(backend):
    binary = bytes(range(256)) * 40
    backend.set("bin", binary)
    backend.set("empty", b"")
    assert backend.get("bin") == binary
    assert backend.get("empty") == b""
    assert backend.get_many(["bin", "nope", "empty"]) == [binary, None, b""]
    assert backend.add("bin", b"no") is False
    assert backend.add("new", b"yes") is True
    assert backend.delete("new") is True
    assert backend.delete("new") is False
    assert backend.incr("n") == 1
    assert backend.incr("n", 41) == 42
    assert backend.get("n") == b"42"
    backend.set("text", b"abc")
    with pytest.raises(ValueError, match="not an integer"):
        backend.incr("text")
    with pytest.raises(TypeError):
        backend.set("k", "text")
    with pytest.raises(TypeError):
        backend.get(1)
    with pytest.raises(ConfigurationError, match="ttl"):
        backend.set("k", b"v", ttl=-1)


def test_ttl(backend, fake_clock):
    backend.set("short", b"v", ttl=0.3)
    backend.set("touched", b"v", ttl=0.3)
    backend.set("counter", b"1", ttl=0.3)
    assert backend.touch("touched", 60) is True
    assert backend.incr("counter") == 2
    fake_clock.advance(0.45)
    assert backend.get("short") is None
    assert backend.get("counter") is None
    assert backend.get("touched") == b"v"
    assert backend.touch("short", 10) is False
    assert backend.delete("short") is False
    assert backend.add("short", b"again") is True
    assert backend.get("short") == b"again"


def test_odd_keys_stay_inside_data_dir(tmp_path):
    backend = DBMBackend(data_dir=str(tmp_path / "data"))
    for index, key in enumerate(ODD_KEYS):
        backend.set(key, f"value {index}".encode())
    for index, key in enumerate(ODD_KEYS):
        assert backend.get(key) == f"value {index}".encode()
    assert sorted(backend.keys()) == sorted(ODD_KEYS)
    assert os.listdir(tmp_path) == ["data"]
    names = os.listdir(tmp_path / "data")
    assert all(name.startswith("beaker.dbm") for name in names)
    assert not [d for _, dirs, _ in os.walk(tmp_path / "data") for d in dirs]
    backend.close()


def test_corrupt_value_is_a_miss_and_removed(backend):
    """A value whose checksum fails (torn, damaged, or another key's) is a miss, whatever the dbm module."""
    backend.set("good", b"v")
    backend.set("other", b"value of other")
    with backend._access(write=True) as database:
        stored = database.get(b"other")
        database[b"short"] = b"\x01"
        database[b"moved"] = stored  # whole, but the checksum covers the key
        database[b"torn"] = stored[:-3] + b"xyz"
        database[b"flags"] = dbm_backend._encode(b"flags", b"value", None)[:4] + b"\x07" + b"\x00" * 8 + b"value"
    assert backend.get("short") is None
    assert backend.get_many(["flags", "good", "moved", "torn", "other"]) == [None, b"v", None, None, b"value of other"]
    backend.delete("other")
    with backend._access(write=False) as database:
        assert sorted(database.keys()) == [b"good"]


def test_writes_of_other_processes_are_seen(tmp_path, backend):
    backend.set("k", b"before")
    assert backend.get("k") == b"before"  # the reader handle is now cached
    code = """
        from beaker_core.backends.dbm import DBMBackend
        DBMBackend(data_dir=sys.argv[2]).set("k", b"after")
    """
    run_scripts(tmp_path, code, [[backend.data_dir]])
    assert backend.get("k") == b"after"
    other = DBMBackend(data_dir=backend.data_dir)
    other.delete("k")
    assert backend.get("k") is None
    other.close()


def test_keys_and_cleanup(backend, fake_clock):
    for key in ("user:1", "user:2", "item:1"):
        backend.set(key, b"v" * 2000)
    backend.set("user:expiring", b"v", ttl=0.3)
    for n in range(40):
        backend.set("grows", b"x" * (600 * n))  # dumb appends a value that outgrows its blocks
    assert sorted(backend.keys("user:")) == ["user:1", "user:2", "user:expiring"]
    fake_clock.advance(0.45)
    assert sorted(backend.keys("user:")) == ["user:1", "user:2"]
    dat = backend.path + ".dat"
    size_before = os.path.getsize(dat) if backend.module_name == "dumb" else None
    assert backend.cleanup() == 1
    assert sorted(backend.keys()) == ["grows", "item:1", "user:1", "user:2"]
    assert backend.get("grows") == b"x" * (600 * 39)
    assert backend.get("user:1") == b"v" * 2000
    if size_before is not None:
        # later writes reuse the space of replaced values (else the 40 values of "grows" would take 470 KB), and
        # cleanup moves the live ones together and cuts the file after them
        live = sum(-(-size // 512) * 512 for size in (2013, 2013, 2013, 600 * 39 + 13))
        assert size_before < 3 * live
        assert os.path.getsize(dat) <= live
        assert sorted(os.listdir(backend.data_dir)) == [f"beaker.dbm{ext}" for ext in (".bak", ".dat", ".dir", ".lock")]
    assert backend.cleanup() == 0
    assert backend.delete_prefix("user:") == 2
    assert sorted(backend.keys()) == ["grows", "item:1"]


def index_headers(backend) -> dict[str, tuple[int, int]]:
    """``(sequence, length with the header)`` of the index in each index file of a dumb database."""
    headers = {}
    for ext in (".dir", ".bak"):
        with open(backend.path + ext, "rb") as index:
            _, _, sequence, length = struct.unpack(">4sIQQ", index.read(24))
        headers[ext] = sequence, 24 + length
    return headers


def test_dumb_a_write_cut_short_leaves_the_previous_state(backend):
    """What a writer killed while it writes the index leaves: the other index file, and the values it points to."""
    backend.set("k", b"one" * 100)
    backend.set("j", b"j")
    backend.set("k", b"two" * 100)  # the same size: dbm.dumb would have written it over the first one
    headers = index_headers(backend)
    newest = max(headers, key=lambda ext: headers[ext][0])
    for cut in (headers[newest][1] - 1, 40, 10, 2, 0):
        os.truncate(backend.path + newest, cut)
        other = DBMBackend(data_dir=backend.data_dir)
        assert other.get_many(["k", "j"]) == [b"one" * 100, b"j"]
        other.close()
    backend.set("k", b"three")  # the next write starts from the state that was read
    assert DBMBackend(data_dir=backend.data_dir).get_many(["k", "j"]) == [b"three", b"j"]


def test_dumb_reuses_the_space_of_deleted_values(backend):
    for round in range(30):
        for index in range(10):
            backend.set(f"k{index}", bytes([round]) * (500 + 100 * index))
        backend.delete(f"k{round % 10}")
    assert os.path.getsize(backend.path + ".dat") < 3 * sum(-(-(513 + 100 * index) // 512) * 512 for index in range(10))
    assert backend.get("k1") == bytes([29]) * 600


def no_room_beyond(monkeypatch, limits: dict[int, int]) -> None:
    """Make os.pwrite fail with ENOSPC past ``limits[inode]`` for those files, and past the current size of any
    other file under the test's data directory: a full disk."""
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        info = os.fstat(fd)
        limit = limits.get(info.st_ino, info.st_size)
        if offset + len(data) > limit:
            written = real_pwrite(fd, bytes(data[:max(0, limit - offset)]), offset) if offset < limit else 0
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return written
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


def test_dumb_on_a_full_disk_deletes_work_and_free_space_for_writes(backend, monkeypatch):
    for index in range(20):
        backend.set(f"k{index}", b"v" * 2000)
    dat = backend.path + ".dat"
    size = os.path.getsize(dat)
    no_room_beyond(monkeypatch, {os.stat(dat).st_ino: size})
    with pytest.raises(BackendError, match="No space left on device"):
        backend.set("big", b"b" * 15_000)
    assert backend.delete("k3") is True  # writes a shorter index over the older one: no new space needed
    backend.set("k3", b"w" * 2000)  # into the blocks k3 had
    for index in range(0, 20, 2):
        backend.delete(f"k{index}")
    # fits once the values are moved into the space of the deleted ones (a compaction, no cleanup() needed)
    backend.set("big", b"b" * 15_000)
    assert os.path.getsize(dat) <= size
    other = DBMBackend(data_dir=backend.data_dir)
    assert other.get("big") == b"b" * 15_000
    assert other.get_many([f"k{index}" for index in range(20)]) == [
        None if index % 2 == 0 else b"w" * 2000 if index == 3 else b"v" * 2000 for index in range(20)]
    other.close()


def test_no_error_when_collected_at_interpreter_exit(tmp_path, monkeypatch):
    """At exit the module's globals may be gone (None) before a backend is collected: no 'Exception ignored'."""
    backend = DBMBackend(data_dir=str(tmp_path / "data"))
    backend.get("k")  # opens the lock file
    fd = backend._lock_fd
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    for module in (dbm_backend, dumbstore):
        monkeypatch.setattr(module, "os", None)
        monkeypatch.setattr(module, "contextlib", None, raising=False)
    del backend  # with its reader, an open database
    gc.collect()
    monkeypatch.undo()
    assert unraisable == []
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_forked_child_does_not_share_the_parents_lock(backend):
    backend.get("counter")  # opens the lock file and a reader in the parent
    pid = os.fork()
    if pid == 0:  # the child inherits the backend object
        try:
            for _ in range(50):
                backend.incr("counter")
        finally:
            os._exit(0)
    for _ in range(50):
        backend.incr("counter")
    os.waitpid(pid, 0)
    assert backend.get("counter") == b"100"


def test_data_dir_under_a_regular_file_is_a_backend_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BackendError, match="dbm backend.*file"):
        DBMBackend(data_dir=str(blocker / "data"))


def test_damaged_database_is_a_backend_error(tmp_path, backend):
    backend.set("k", b"v")
    with open(backend.path + ".dir", "w") as handle:
        handle.write("this is not an index\n")
    with pytest.raises(BackendError, match="dbm backend at .*beaker.dbm.*not an index"):
        backend.get("k")
    with pytest.raises(BackendError, match="dbm backend at .*beaker.dbm.*not an index"):
        backend.set("k", b"v")
    with pytest.raises(BackendError, match="dbm backend at .*beaker.dbm.*not an index"):
        DBMBackend(data_dir=backend.data_dir).get("k")


def test_a_dbm_dumb_database_is_refused(tmp_path):
    """dbm.dumb's index is not this store's: a clear error, not an empty database written over it."""
    data = tmp_path / "data"
    data.mkdir()
    with dbm.dumb.open(str(data / "beaker.dbm"), "c") as database:
        database[b"k"] = b"v"
    backend = DBMBackend(data_dir=str(data))
    assert backend.module_name == "dumb"
    with pytest.raises(BackendError, match="not an index of beaker-core's dumb store"):
        backend.get("k")
    with open(data / "beaker.dbm.dir", "rb") as index:
        assert index.read().startswith(b"'k'")


def test_unknown_database_format_is_a_backend_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "beaker.dbm").write_bytes(b"not a database at all" * 10)
    with pytest.raises(BackendError, match="not a dbm database"):
        DBMBackend(data_dir=str(data))


def test_options(tmp_path):
    with pytest.raises(ConfigurationError, match="data_dir"):
        DBMBackend()
    with pytest.raises(ConfigurationError, match="data_dir"):
        DBMBackend(data_dir=42)
    with pytest.raises(ConfigurationError, match="lock_dir"):
        DBMBackend(data_dir=str(tmp_path), lock_dir=["x"])
    for wrong in ("berkeley", 3, ""):
        with pytest.raises(ConfigurationError, match="dbm_module"):
            DBMBackend(data_dir=str(tmp_path), dbm_module=wrong)
    with pytest.raises(ConfigurationError, match="unknown option.*flavour"):
        DBMBackend(data_dir=str(tmp_path), flavour="x")
    for option, wrong in (("file_mode", "0o999"), ("file_mode", "0200"), ("dir_mode", 0o600), ("dir_mode", "x")):
        with pytest.raises(ConfigurationError, match=f"{option} must"):
            DBMBackend(data_dir=str(tmp_path / "c"), **{option: wrong})
    backend = DBMBackend(data_dir=str(tmp_path / "a"), lock_dir=str(tmp_path / "locks"), dbm_module="dumb")
    assert backend.module_name == "dumb"
    assert backend.describe() == f"dbm backend at {tmp_path / 'a'} (dumb)"
    assert backend.preferred_lock == "file" and backend.shared is True
    backend.close()
    if not HAS_GNU:
        with pytest.raises(ConfigurationError, match="dbm_module 'gnu' is not available"):
            DBMBackend(data_dir=str(tmp_path / "b"), dbm_module="gnu")
    assert DBMBackend(data_dir=str(tmp_path / "a"), dbm_module="auto").module_name == "dumb"
    with pytest.raises(ConfigurationError, match="fsync"):
        DBMBackend(data_dir=str(tmp_path / "a"), fsync="sometimes")
    synced = DBMBackend(data_dir=str(tmp_path / "a"), fsync="true")
    assert synced.fsync is True
    synced.set("k", b"v")
    assert DBMBackend(data_dir=str(tmp_path / "a")).get("k") == b"v"
    synced.close()


def test_cleanup_keeps_the_file_mode(tmp_path, fake_clock):
    """The files a cleanup writes (dumb's compaction, gnu's reorganize) get file_mode exactly, as the first ones."""
    previous = os.umask(0o022)
    try:
        backend = DBMBackend(data_dir=str(tmp_path / "data"), file_mode="0660")
        for index in range(20):
            backend.set(f"k{index}", b"v" * 600, ttl=60 if index % 2 else None)
        fake_clock.advance(120)
        assert backend.cleanup() == 10
        backend.set("after", b"v")
        names = os.listdir(backend.data_dir)
        assert {os.stat(os.path.join(backend.data_dir, name)).st_mode & 0o7777 for name in names} == {0o660}
        assert os.stat(backend.data_dir).st_mode & 0o7777 == 0o700
    finally:
        os.umask(previous)


# Tests of dbm.gnu exist only where this Python has it (the missing-module error is checked above): a test that
# cannot apply here is not collected rather than skipped.
if HAS_GNU:
    def test_module_of_an_existing_database_is_kept(tmp_path):
        DBMBackend(data_dir=str(tmp_path), dbm_module="gnu").close()
        assert DBMBackend(data_dir=str(tmp_path)).module_name == "gnu"
        with pytest.raises(ConfigurationError, match="written with dbm_module 'gnu'"):
            DBMBackend(data_dir=str(tmp_path), dbm_module="dumb")
        DBMBackend(data_dir=str(tmp_path / "other")).close()
        with pytest.raises(ConfigurationError, match="written with dbm_module 'dumb'"):
            DBMBackend(data_dir=str(tmp_path / "other"), dbm_module="gnu")
        assert DBMBackend(data_dir=str(tmp_path / "other")).module_name == "dumb"

    def test_gnu_module(tmp_path, fake_clock):
        backend = DBMBackend(data_dir=str(tmp_path), dbm_module="gnu")
        backend.set("k", b"v", ttl=0.3)
        backend.set("keep", b"v")
        assert backend.get("k") == b"v"
        fake_clock.advance(0.45)
        assert backend.cleanup() == 1
        assert list(backend.keys()) == ["keep"]
