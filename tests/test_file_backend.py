"""What is special to the ``file`` backend: layout, odd keys, corrupt files, cleanup, processes, errors, options."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zlib

import pytest

from beaker_core import fs
from beaker_core.backends import file as file_backend
from beaker_core.backends.file import FileBackend, _entry, decode_file, encode_slot, read_heads
from beaker_core.exceptions import BackendError, ConfigurationError
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.concurrency import run_scripts
from beaker_core.testing.sessions import RefusedLock, WSGIClient, session_app

ODD_KEYS = ["../../etc/passwd", "a/b", "/abs/path", "\x00", "nul\x00inside", "k" * 5000, "clé ünï 鍵 🔑",
            ".", "..", "", " ", "line\nbreak", "back\\slash", "\udcff lone surrogate"]
FILE_HEADER = 16  # b"BKF2", slot size, checksum
SLOT_HEADER = 37  # two checksums, sequence, flags, deadline, key length, value length


@pytest.fixture
def backend(tmp_path):
    return FileBackend(data_dir=str(tmp_path / "data"))


def data_files(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


# -- round trips and TTL ----------------------------------------------------------------------------------------------

def test_round_trips(backend):
    binary = bytes(range(256)) * 3
    big = os.urandom(300_000)  # larger than the first read
    backend.set("bin", binary)
    backend.set("empty", b"")
    backend.set("big", big)
    backend.set("view", memoryview(b"mv"))
    assert backend.get("bin") == binary
    assert backend.get("empty") == b""
    assert backend.get("big") == big
    assert backend.get("view") == b"mv"
    assert backend.get_many(["big", "nope", "empty"]) == [big, None, b""]
    backend.set("bin", b"replaced")
    assert backend.get("bin") == b"replaced"
    assert backend.add("bin", b"no") is False
    assert backend.add("fresh", b"yes") is True
    assert backend.get("fresh") == b"yes"
    assert backend.delete("fresh") is True
    assert backend.delete("fresh") is False
    assert backend.get("fresh") is None


def test_ttl_expiry_removes_the_file(backend, fake_clock):
    backend.set("short", b"v", ttl=0.3)
    backend.set("long", b"v", ttl=60)
    assert backend.get("short") == b"v"
    assert len(data_files(backend.data_dir)) == 2
    fake_clock.advance(0.45)
    assert backend.get("short") is None
    assert backend.get("long") == b"v"
    assert len(data_files(backend.data_dir)) == 1
    assert backend.touch("short", 10) is False
    assert backend.add("short", b"again", ttl=10) is True


def test_touch_and_expired_add(backend, fake_clock):
    backend.set("k", b"v", ttl=0.3)
    assert backend.touch("k", 60) is True
    fake_clock.advance(0.45)
    assert backend.get("k") == b"v"
    assert backend.touch("k", 0.3) is True
    fake_clock.advance(0.45)
    assert backend.get("k") is None
    assert backend.touch("missing", 1) is False
    backend.set("gone", b"old", ttl=0.3)
    fake_clock.advance(0.45)
    assert backend.add("gone", b"new") is True  # an expired entry does not block add
    assert backend.get("gone") == b"new"
    assert backend.delete("gone") is True


def test_incr(backend, fake_clock):
    assert backend.incr("n") == 1
    assert backend.incr("n", 10) == 11
    assert backend.incr("n", -12) == -1
    assert backend.get("n") == b"-1"
    backend.set("ttl", b"5", ttl=0.3)
    assert backend.incr("ttl") == 6
    fake_clock.advance(0.45)
    assert backend.get("ttl") is None  # incr keeps the deadline
    backend.set("text", b"abc")
    with pytest.raises(ValueError, match="not an integer"):
        backend.incr("text")
    assert backend.get("text") == b"abc"
    with pytest.raises(ConfigurationError, match="integer delta"):
        backend.incr("n", 1.5)
    assert not [f for f in data_files(backend.data_dir) if ".tmp-" in f]


def test_wrong_arguments(backend):
    with pytest.raises(TypeError, match="bytes"):
        backend.set("k", "text")
    with pytest.raises(TypeError, match="str"):
        backend.get(b"bytes-key")
    for ttl in (0, -1, "10", True):
        with pytest.raises(ConfigurationError, match="ttl"):
            backend.set("k", b"v", ttl=ttl)
    assert backend.get("k") is None


# -- layout and odd keys ----------------------------------------------------------------------------------------------

def test_odd_keys_stay_inside_data_dir(tmp_path):
    backend = FileBackend(data_dir=tmp_path / "data")
    for index, key in enumerate(ODD_KEYS):
        backend.set(key, f"value {index}".encode())
    for index, key in enumerate(ODD_KEYS):
        assert backend.get(key) == f"value {index}".encode()
    assert sorted(backend.keys()) == sorted(ODD_KEYS)
    assert os.listdir(tmp_path) == ["data"]
    root = os.path.realpath(backend.data_dir)
    files = data_files(root)
    assert len(files) == len(ODD_KEYS)
    for path in files:
        assert os.path.realpath(path).startswith(root + os.sep)
        relative = os.path.relpath(path, root).split(os.sep)
        assert len(relative) == 3 and relative[2].startswith(relative[0] + relative[1]) and len(relative[2]) == 64
    for key in ODD_KEYS:
        assert backend.delete(key) is True
    assert data_files(root) == []


def file_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def slots_of(path):
    """``(slot size, [(sequence, key, value) or None, ...])`` of a data file: None for a damaged slot header, key
    and value None for a slot that is unused or not whole."""
    data, size, heads = read_heads(file_bytes(path))

    def plain(head):
        if head is None:
            return None
        entry = _entry(data, None, size, head)
        return (head[2],) + ((None, None) if entry is None else entry[:2])
    return size, [plain(head) for head in heads]


def slot_offset(index, size=512):
    return FILE_HEADER + index * size


def overwrite(path, offset, data):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_file_format(backend):
    backend.set("key", b"value", ttl=100)
    (path,) = data_files(backend.data_dir)
    raw = file_bytes(path)
    assert raw[:4] == b"BKF2"
    size, slots = slots_of(path)
    assert size == 512 and len(raw) == FILE_HEADER + 2 * size
    assert slots == [(1, b"key", b"value"), (0, None, None)]
    raw_key, value, expires = decode_file(raw)
    assert (raw_key, value) == (b"key", b"value")
    assert time.time() + 99 < expires <= time.time() + 100

    inode = os.stat(path).st_ino
    backend.set("key", b"second")
    assert slots_of(path) == (512, [(1, b"key", b"value"), (2, b"key", b"second")])
    backend.set("key", b"third")
    assert slots_of(path) == (512, [(3, b"key", b"third"), (2, b"key", b"second")])
    assert backend.touch("key", 50) is True
    assert slots_of(path) == (512, [(3, b"key", b"third"), (4, b"key", b"third")])
    assert decode_file(file_bytes(path))[2] <= time.time() + 50
    assert os.stat(path).st_ino == inode  # every update of the key was written in place
    assert backend.get("key") == b"third"


def test_a_slot_written_by_the_documented_layout_reads_back(backend):
    """The entry checksum is the crc32 of the key continued over the value (``zlib.crc32(value, zlib.crc32(key))``),
    one number over both: a file written that way by hand is read, and the backend writes the same bytes."""
    backend.set("key", b"first")
    path = backend._path("key")[1]
    key, value, expires = b"key", b"written by hand", time.time() + 100
    fields = struct.pack(">IQBdIQ", zlib.crc32(value, zlib.crc32(key)), 7, 1, expires, len(key), len(value))
    slot = struct.pack(">I", zlib.crc32(fields)) + fields + key + value
    assert slot == encode_slot(7, key, value, expires)
    overwrite(path, slot_offset(1), slot)
    assert backend.get("key") == value
    backend.set("key", b"next")
    assert slots_of(path)[1] == [(8, b"key", b"next"), (7, b"key", value)]


def test_keys_of_a_str_subclass_name_the_same_file(backend):
    class Key(str):
        pass

    backend.set(Key("key"), b"value")
    assert backend.get("key") == b"value"
    backend.set("other", b"1")
    assert backend.get(Key("other")) == b"1"
    assert data_files(backend.data_dir) == sorted([backend._path("key")[1], backend._path("other")[1]])


@pytest.mark.parametrize("key", [b"bytes", 5, None, ["a", "list"]], ids=repr)
def test_a_key_that_is_not_a_str_is_a_clear_error(backend, key):
    with pytest.raises(TypeError, match="keys must be str"):
        backend.get(key)
    with pytest.raises(TypeError, match="keys must be str"):
        backend.set(key, b"value")


def test_the_memo_of_key_paths_stays_bounded(backend):
    from beaker_core.backends.file import _PATH_MEMO_SIZE

    for number in range(_PATH_MEMO_SIZE * 2 + 10):
        backend._path(f"key {number}")
    assert 0 < len(backend._paths) <= _PATH_MEMO_SIZE
    raw_key, path = backend._path("key 3")
    assert raw_key == b"key 3" and path.endswith(hashlib.sha256(b"key 3").hexdigest())


def test_slot_grows_and_shrinks_with_the_value(backend):
    backend.set("key", b"s")
    path = backend._path("key")[1]
    inode = os.stat(path).st_ino
    backend.set("key", b"x" * 400)  # still fits the 512-byte slot
    assert os.stat(path).st_ino == inode and backend.get("key") == b"x" * 400
    backend.set("key", b"y" * 1000)
    assert os.stat(path).st_ino != inode
    assert slots_of(path) == (1792, [(1, b"key", b"y" * 1000), (0, None, None)])
    assert backend.get("key") == b"y" * 1000
    big, bigger = os.urandom(200_000), os.urandom(250_000)  # slots past the first read of a file
    backend.set("key", big)
    assert backend.get("key") == big
    inode = os.stat(path).st_ino
    backend.set("key", bigger)
    assert os.stat(path).st_ino == inode and backend.get("key") == bigger
    assert slots_of(path)[1][0][0] == 1 and slots_of(path)[1][1][0] == 2
    backend.set("key", b"small")  # a quarter of the slot or less: a smaller file
    assert os.stat(path).st_ino != inode and slots_of(path)[0] == 512
    assert backend.get("key") == b"small"


@pytest.mark.parametrize("damage", ["flip_value", "cut_off", "nan_deadline", "torn_write", "older_header"])
def test_damaged_slot_reads_the_other_version_and_is_mended(backend, damage):
    """A slot that does not validate without a writer holding the file is a crash's remnant."""
    backend.set("key", b"version 1")
    backend.set("key", b"version 2")
    path = backend._path("key")[1]
    expected = b"version 1"
    if damage == "flip_value":
        overwrite(path, slot_offset(1) + SLOT_HEADER + 3 + 4, b"X")
    elif damage == "cut_off":
        os.truncate(path, slot_offset(1) + 20)
    elif damage == "nan_deadline":  # a checksum that matches, a deadline that is not a time
        overwrite(path, slot_offset(1), encode_slot(2, b"key", b"version 2", float("nan")))
    elif damage == "torn_write":  # a writer died in the middle of writing version 3 into the older slot
        overwrite(path, slot_offset(0), encode_slot(3, b"key", b"version 3", None)[:40])
        expected = b"version 2"
    elif damage == "older_header":
        overwrite(path, slot_offset(0) + 10, b"\xff")
        expected = b"version 2"
    inode = os.stat(path).st_ino
    assert backend.get("key") == expected
    slots = slots_of(path)[1]
    assert max(slots)[1:] == (b"key", expected)
    assert all(slot is not None and slot[1] == b"key" for slot in slots)  # mended: a whole copy in the other slot
    assert os.stat(path).st_ino == inode
    backend.set("key", b"version 4")
    assert backend.get("key") == b"version 4"


@pytest.mark.parametrize("damage", ["both_slots", "bad_magic", "header_checksum", "old_format", "empty",
                                    "cut_in_first_slot"])
def test_damaged_file_is_a_miss_and_removed(backend, damage):
    backend.set("key", b"some value")
    backend.set("key", b"other value")
    (path,) = data_files(backend.data_dir)
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    if damage == "both_slots":
        data[slot_offset(0) + SLOT_HEADER] ^= 0xFF
        data[slot_offset(1) + SLOT_HEADER] ^= 0xFF
    elif damage == "bad_magic":
        data[:4] = b"XXXX"
    elif damage == "header_checksum":
        data[11] ^= 0x01  # the slot size, without its checksum
    elif damage == "old_format":
        body = b"keysome value"
        data = struct.pack(">4sBdIQI", b"BKF1", 0, 0.0, 3, 10, zlib.crc32(body)) + body
    elif damage == "empty":
        data = b""
    elif damage == "cut_in_first_slot":
        data = data[:FILE_HEADER + 20]
    with open(path, "wb") as handle:
        handle.write(data)
    assert backend.get("key") is None
    assert not os.path.exists(path)
    backend.set("key", b"again")
    assert backend.get("key") == b"again"


def test_reads_wait_for_a_writer_only_while_a_slot_does_not_validate(backend):
    backend.set("key", b"version 1")
    backend.set("key", b"version 2")
    path = backend._path("key")[1]
    results = []
    reader = threading.Thread(target=lambda: results.append(backend.get("key")))
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a writer holds while it writes
        assert backend.get("key") == b"version 2"  # both slots whole: no lock taken
        slot = encode_slot(3, b"key", b"version 3", None)
        os.pwrite(fd, slot[:30], slot_offset(0))  # the write of version 3 has begun
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and results == []  # waiting for the writer's lock
        os.pwrite(fd, slot, slot_offset(0))
    finally:
        os.close(fd)  # the write is complete: the lock goes
    reader.join(10)
    assert results == [b"version 3"]
    assert slots_of(path)[1] == [(3, b"key", b"version 3"), (2, b"key", b"version 2")]


def test_a_file_this_process_cannot_write_is_replaced(tmp_path):
    """A data file written by another user with a mode that lets this one read it only (the directories being
    writable by both, through dir_mode): the new version goes to a new file, as rewriting in place is not allowed."""
    root = tempfile.mkdtemp(prefix="beaker-core-mode-")
    try:
        os.chmod(root, 0o777)
        backend = FileBackend(data_dir=os.path.join(root, "data"), file_mode=0o644, dir_mode=0o777)
        backend.set("key", b"old")
        path = backend._path("key")[1]
        for directory in (backend.data_dir, os.path.dirname(os.path.dirname(path)), os.path.dirname(path)):
            assert os.stat(directory).st_mode & 0o777 == 0o777
        os.chmod(path, 0o444)
        code = """
            from beaker_core.backends.file import FileBackend
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)  # root may write any file: act as another user
            backend = FileBackend(data_dir=sys.argv[2], file_mode=0o644, dir_mode=0o777)
            backend.set("key", b"new")
            print(backend.update("key", lambda current: current + b"er", None), backend.get("key").decode())
        """
        assert run_scripts(tmp_path, code, [[backend.data_dir]]) == ["True newer"]
        assert backend.get("key") == b"newer"
    finally:
        shutil.rmtree(root)


# -- atomic update ----------------------------------------------------------------------------------------------------

def test_update(backend):
    assert backend.atomic_update is True
    assert backend.update("k", lambda current: None) is False
    assert backend.get("k") is None and data_files(backend.data_dir) == []
    seen = []

    def append(current):
        seen.append(current)
        return (current or b"") + b"+"
    assert backend.update("k", append, 60) is True
    path = backend._path("k")[1]
    inode = os.stat(path).st_ino
    assert backend.update("k", append, None) is True
    assert seen == [None, b"+"] and backend.get("k") == b"++"
    assert decode_file(file_bytes(path))[2] is None  # stored with the ttl given: none
    assert os.stat(path).st_ino == inode
    assert backend.update("k", lambda current: bytearray(current + b"!")) is True
    assert backend.get("k") == b"++!"


def test_update_errors_leave_the_value(backend):
    backend.set("k", b"v")

    def fail(current):
        raise RuntimeError("the change failed")
    with pytest.raises(RuntimeError, match="the change failed"):
        backend.update("k", fail)
    with pytest.raises(TypeError, match="stores bytes, not str"):
        backend.update("k", lambda current: "text")
    calls = []
    for ttl in (0, -5, "10", True):
        with pytest.raises(ConfigurationError, match="ttl"):
            backend.update("k", lambda current: calls.append(current) or b"x", ttl)
    assert calls == [] and backend.get("k") == b"v"


def test_update_of_an_expired_key_gets_none(backend, fake_clock):
    backend.set("k", b"old", ttl=0.2)
    fake_clock.advance(0.3)
    seen = []
    assert backend.update("k", lambda current: seen.append(current) or b"new", 0.2) is True
    assert seen == [None] and backend.get("k") == b"new"
    fake_clock.advance(0.3)
    assert backend.get("k") is None


def test_file_sessions_save_with_one_update_and_no_lock(tmp_path):
    registry = Registry(load_entrypoints=False)
    registry.register("lock", "refused", RefusedLock)
    data_dir = tmp_path / "data"
    app = SessionMiddleware(session_app, {"session.type": "file", "session.data_dir": str(data_dir),
                                          "session.lock_type": "refused"}, registry=registry)
    client = WSGIClient(app)
    assert [client.request("/incr")[2] for _ in range(3)] == [b"1", b"2", b"3"]
    (path,) = data_files(data_dir)
    inode = os.stat(path).st_ino
    assert client.request("/incr")[2] == b"4"
    assert os.stat(path).st_ino == inode  # saved in place
    assert app.session_manager.atomic_update is True
    assert sorted(os.listdir(data_dir)) == [os.path.relpath(path, data_dir)[:2]]  # no lock directory
    registry.close()


def test_another_keys_file_is_a_miss_and_kept(backend):
    """Simulates a sha256 collision: the file at a key's path holds another key."""
    backend.set("a", b"value of a")
    backend.set("b", b"value of b")
    path_a = backend._path("a")[1]
    path_b = backend._path("b")[1]
    os.replace(path_b, path_a)
    assert backend.get("a") is None
    assert os.path.exists(path_a)
    assert backend.delete("a") is False
    assert os.path.exists(path_a)
    assert list(backend.keys()) == ["b"]


def test_keys_and_delete_prefix(backend, fake_clock):
    for key in ("user:1", "user:2", "user:3", "item:1"):
        backend.set(key, b"v")
    backend.set("user:expiring", b"v", ttl=0.3)
    assert sorted(backend.keys("user:")) == ["user:1", "user:2", "user:3", "user:expiring"]
    fake_clock.advance(0.45)
    assert sorted(backend.keys("user:")) == ["user:1", "user:2", "user:3"]
    assert sorted(backend.keys()) == ["item:1", "user:1", "user:2", "user:3"]
    assert backend.delete_prefix("user:") == 3
    assert list(backend.keys()) == ["item:1"]


def test_cleanup(backend, fake_clock):
    backend.set("live", b"v")
    backend.set("expiring", b"v", ttl=0.3)
    backend.set("corrupt", b"v")
    corrupt_path = backend._path("corrupt")[1]
    with open(corrupt_path, "r+b") as handle:
        handle.truncate(5)
    shard = os.path.dirname(backend._path("live")[1])
    stale_temp = os.path.join(shard, ".tmp-stale")
    fresh_temp = os.path.join(shard, ".tmp-fresh")
    for temp in (stale_temp, fresh_temp):
        with open(temp, "wb") as handle:
            handle.write(b"partial")
    old = time.time() - 3600
    os.utime(stale_temp, (old, old))
    empty_shard = os.path.join(backend.data_dir, "ff", "ee")
    os.makedirs(empty_shard)
    other = os.path.join(backend.data_dir, "locks")
    os.makedirs(other)
    fake_clock.advance(0.45)

    assert backend.cleanup() == 2
    assert backend.get("live") == b"v"
    assert not os.path.exists(corrupt_path)
    assert not os.path.exists(stale_temp)
    assert os.path.exists(fresh_temp)
    assert not os.path.exists(os.path.join(backend.data_dir, "ff"))
    assert os.path.isdir(other)
    assert os.path.isdir(shard)
    os.unlink(fresh_temp)
    assert backend.delete("live") is True
    assert backend.cleanup() == 0
    assert sorted(os.listdir(backend.data_dir)) == ["locks"]
    backend.set("after", b"v")  # shard directories are created again
    assert backend.get("after") == b"v"


def empty_directories(root):
    return sorted(d for d, subdirectories, files in os.walk(root) if not subdirectories and not files and d != root)


def shard_directories(root):
    return {os.path.relpath(d, root) for d, _, files in os.walk(root) if d != root}


@pytest.fixture
def later(fake_clock):
    """Move the clock forward by two minutes: values written with a TTL of a minute have expired (temporary files,
    which cleanup() removes after five minutes, have not)."""
    return lambda: fake_clock.advance(120)


def test_cleanup_leaves_no_empty_shard_directory(backend, later):
    for index in range(300):
        backend.set(f"expiring:{index}", b"v", ttl=60)
    live = [f"live:{index}" for index in range(5)]
    for key in live:
        backend.set(key, b"kept")
    later()
    assert backend.cleanup() == 300
    assert empty_directories(backend.data_dir) == []
    live_files = [backend._path(key)[1] for key in live]
    assert shard_directories(backend.data_dir) == {
        os.path.relpath(directory, backend.data_dir)
        for path in live_files for directory in (os.path.dirname(path), os.path.dirname(os.path.dirname(path)))}
    assert [backend.get(key) for key in live] == [b"kept"] * 5
    for key in live:
        backend.delete(key)
    assert backend.cleanup() == 0
    assert os.listdir(backend.data_dir) == []  # the data directory itself stays


def test_clear_and_delete_prefix_remove_the_shard_directories_they_empty(backend):
    for index in range(50):
        backend.set(f"a:{index}", b"v")
        backend.set(f"b:{index}", b"v")
    other = os.path.join(backend.data_dir, "ab", "not-a-shard")  # not one of the backend's: left alone
    os.makedirs(other)
    assert backend.delete_prefix("a:") == 50
    assert empty_directories(backend.data_dir) == [other]
    assert len(shard_directories(backend.data_dir) - {"ab", "ab/not-a-shard"}) <= 100
    assert backend.clear() == 50
    assert empty_directories(backend.data_dir) == [other] and os.listdir(backend.data_dir) == ["ab"]
    assert backend.get("b:1") is None
    backend.set("b:1", b"again")
    assert backend.get("b:1") == b"again"


def test_a_writer_recreates_the_shard_directory_cleanup_removes_under_it(backend, monkeypatch):
    """cleanup() removes a shard directory a writer has just created, before the writer's file is in it: twice
    between the directory and the file, once between the two levels of directories."""
    make_directory = file_backend.make_directory
    set_directory_mode = fs.set_directory_mode
    races = {"after the directory": 2, "between the levels": 1}

    def racing_make_directory(path, *args, **kwargs):
        make_directory(path, *args, **kwargs)
        if races["after the directory"]:
            races["after the directory"] -= 1
            backend.cleanup()
            assert not os.path.exists(path)

    def racing_set_directory_mode(directory, mode):
        set_directory_mode(directory, mode)
        if races["between the levels"] and os.path.dirname(directory) == backend.data_dir:
            races["between the levels"] -= 1
            os.rmdir(directory)

    monkeypatch.setattr(file_backend, "make_directory", racing_make_directory)
    monkeypatch.setattr(fs, "set_directory_mode", racing_set_directory_mode)
    backend.set("key", b"written")
    assert races == {"after the directory": 0, "between the levels": 0}
    assert backend.get("key") == b"written"


WRITE_UNTIL_STOPPED = """
    from beaker_core.backends.file import FileBackend
    backend = FileBackend(data_dir=sys.argv[2])
    index = 0
    while index < int(sys.argv[4]) and (index < 10 or not os.path.exists(sys.argv[3])):
        backend.set(f"process:{index}", str(index).encode())
        index += 1
    print(index)
"""


def test_a_concurrent_writer_never_loses_a_write_to_cleanup(backend, later, fake_clock, tmp_path):
    """A writer process and a writer thread create new keys (so new shard directories) while cleanup() runs again
    and again, removing expired entries and the shard directories it empties: every key written is there after."""
    most = 1000  # keys per writer: each cleanup pass reads every file, the writers' included
    written_at = fake_clock.value

    def add_expiring(first, count):
        # written as of the real time, so expired at the clock that later() moved two minutes on
        now, fake_clock.value = fake_clock.value, written_at
        for index in range(first, first + count):
            backend.set(f"expiring:{index}", b"v", ttl=60)
        fake_clock.value = now

    add_expiring(0, 100)
    later()
    stop = tmp_path / "stop"
    stopped = threading.Event()
    written = {}

    def write_from_a_process():
        written["process"] = int(run_scripts(tmp_path, WRITE_UNTIL_STOPPED, [[backend.data_dir, stop, most]])[0])

    def write_from_a_thread():
        writer = FileBackend(data_dir=backend.data_dir)
        index = 0
        while index < most and (index < 10 or not stopped.is_set()):
            writer.set(f"thread:{index}", str(index).encode())
            index += 1
        written["thread"] = index

    threads = [threading.Thread(target=write_from_a_process), threading.Thread(target=write_from_a_thread)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while backend.get("process:0") is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the process has started writing
    removed = 0
    for round_ in range(5):
        removed += backend.cleanup()
        add_expiring(100 + 20 * round_, 20)
    removed += backend.cleanup()
    stop.touch()
    stopped.set()
    for thread in threads:
        thread.join(60)
    assert removed == 200
    assert written["process"] > 10 and written["thread"] > 10
    for prefix, count in written.items():
        assert [backend.get(f"{prefix}:{index}") for index in range(count)] == \
            [str(index).encode() for index in range(count)], prefix
    backend.cleanup()
    assert empty_directories(backend.data_dir) == []


# -- processes --------------------------------------------------------------------------------------------------------

def test_incr_from_four_processes(tmp_path, backend):
    code = """
        from beaker_core.backends.file import FileBackend
        backend = FileBackend(data_dir=sys.argv[2])
        for _ in range(50):
            backend.incr("counter")
    """
    run_scripts(tmp_path, code, [[backend.data_dir]] * 4)
    assert backend.get("counter") == b"200"
    assert not [f for f in data_files(backend.data_dir) if ".tmp-" in f]


def test_readers_never_see_a_partial_value(tmp_path, backend):
    backend.set("shared", b"a" * 1000)
    code = """
        from beaker_core.backends.file import FileBackend
        backend = FileBackend(data_dir=sys.argv[2])
        if sys.argv[3] == "write":
            for n in range(150):
                backend.set("shared", bytes([97 + n % 26]) * (1000 + 7919 * (n % 13)))
        else:
            bad = 0
            for _ in range(600):
                value = backend.get("shared")
                if value is None or len(set(value)) != 1 or (len(value) - 1000) % 7919:
                    bad += 1
            print(bad)
    """
    outputs = run_scripts(tmp_path, code, [[backend.data_dir, "write"]] * 2 + [[backend.data_dir, "read"]] * 2)
    assert outputs[2:] == ["0", "0"]


def test_concurrent_writes_of_varying_sizes_are_read_whole(tmp_path, backend):
    """Writers replace one key with values of many sizes (in place, and in new files when a value outgrows or
    shrinks its slot) while readers read it without pause: every value read was written in full."""
    code = """
        import hashlib, random
        from beaker_core.backends.file import FileBackend
        backend = FileBackend(data_dir=sys.argv[2])
        role, stop = sys.argv[3], sys.argv[4]
        SIZES = (0, 20, 300, 450, 1500, 5000, 70000, 140000)

        def make(rng):  # mostly sizes that one slot of a 60000-byte value holds: written in place
            size = rng.randrange(30000, 60000) if rng.random() < 0.6 else rng.choice(SIZES) + rng.randrange(64)
            body = rng.randbytes(size)
            return body + hashlib.sha256(body).digest()

        def whole(value):
            return value is not None and len(value) >= 32 and hashlib.sha256(value[:-32]).digest() == value[-32:]

        if role == "write":
            rng = random.Random(int(sys.argv[5]))
            for n in range(250):
                if n % 3:
                    backend.set("shared", make(rng))
                else:  # a torn value seen by a writer is stored as b"torn", which readers count
                    backend.update("shared", lambda current: make(rng) if whole(current) else b"torn")
            print("written")
        else:
            reads = bad = 0
            while not os.path.exists(stop):
                reads += 1
                bad += not whole(backend.get("shared"))
            print(reads, bad)
    """
    first = os.urandom(100)
    backend.set("shared", first + hashlib.sha256(first).digest())
    go, stop = tmp_path / "go", tmp_path / "stop"
    script = f"import os, sys, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.002)\n"
    script += textwrap.dedent(code)

    writers = [subprocess.Popen([sys.executable, "-c", script, str(go), backend.data_dir, "write", str(stop),
                                 str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for seed in range(3)]
    readers = [subprocess.Popen([sys.executable, "-c", script, str(go), backend.data_dir, "read", str(stop)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    go.write_text("go")
    try:
        for proc in writers:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0 and out.strip() == "written", err
    finally:
        stop.write_text("stop")
    for proc in readers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        reads, bad = map(int, out.split())
        assert reads > 0 and bad == 0
    value = backend.get("shared")
    assert hashlib.sha256(value[:-32]).digest() == value[-32:]
    assert not [f for f in data_files(backend.data_dir) if ".tmp-" in f]


# -- errors and options -----------------------------------------------------------------------------------------------

def test_data_dir_under_a_regular_file_is_a_backend_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(BackendError, match="file backend.*not-a-dir"):
        FileBackend(data_dir=str(blocker / "data"))
    with pytest.raises(BackendError, match="file backend"):
        FileBackend(data_dir=str(blocker))


def test_write_errors_name_backend_and_path(backend):
    path = backend._path("key")[1]
    top = os.path.dirname(os.path.dirname(path))
    with open(top, "w") as handle:  # a regular file where the key's shard directory belongs
        handle.write("x")
    with pytest.raises(BackendError, match=f"file backend at .*{os.path.basename(top)}"):
        backend.set("key", b"v")
    with pytest.raises(BackendError, match="file backend"):
        backend.get("key")
    with pytest.raises(BackendError, match="file backend"):
        backend.incr("key")


def test_data_dir_removed_while_running_is_recreated(backend):
    import shutil
    backend.set("k", b"v")
    shutil.rmtree(backend.data_dir)
    assert backend.get("k") is None
    backend.set("k", b"v2")
    assert backend.get("k") == b"v2"


def test_options(tmp_path):
    with pytest.raises(ConfigurationError, match="data_dir"):
        FileBackend()
    for wrong in (123, "", "  ", b"/tmp/x", "a\x00b"):
        with pytest.raises(ConfigurationError, match="data_dir"):
            FileBackend(data_dir=wrong)
    with pytest.raises(ConfigurationError, match="lock_dir"):
        FileBackend(data_dir=str(tmp_path), lock_dir=5)
    for wrong in ("abc", "0o999", 0o1000, -1, True, 1.5, "0400"):
        with pytest.raises(ConfigurationError, match="file_mode must"):
            FileBackend(data_dir=str(tmp_path), file_mode=wrong)
    for wrong in ("abc", "0o640", 0o4700, "0o10700"):
        with pytest.raises(ConfigurationError, match="dir_mode must"):
            FileBackend(data_dir=str(tmp_path), dir_mode=wrong)
    with pytest.raises(ConfigurationError, match="fsync"):
        FileBackend(data_dir=str(tmp_path), fsync="maybe")
    with pytest.raises(ConfigurationError, match="unknown option.*colour.*accepted: data_dir"):
        FileBackend(data_dir=str(tmp_path), colour="blue")

    backend = FileBackend(data_dir=str(tmp_path / "d"), lock_dir=str(tmp_path / "locks"), file_mode="0640",
                          fsync="true")
    assert backend.lock_dir == str(tmp_path / "locks") and backend.fsync is True
    backend.set("k", b"v")
    backend.set("k", b"v2")  # in place, flushed
    (path,) = data_files(backend.data_dir)
    assert os.stat(path).st_mode & 0o777 == 0o640 and backend.get("k") == b"v2"
    assert FileBackend(data_dir=str(tmp_path / "e"), file_mode=0o600).file_mode == 0o600
    assert (backend.file_mode, backend.dir_mode) == (0o640, 0o700)  # dir_mode unset: the default
    assert FileBackend(data_dir=str(tmp_path / "f"), dir_mode="0o2770").dir_mode == 0o2770
    assert backend.describe() == f"file backend at {tmp_path / 'd'}"
    assert backend.preferred_lock == "file" and backend.shared is True


def test_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backend = FileBackend(data_dir="rel")
    assert backend.data_dir == str(tmp_path / "rel")
    monkeypatch.chdir("/")
    backend.set("k", b"v")
    assert os.listdir(tmp_path / "rel")


def test_opened_through_the_registry(tmp_path):
    registry = Registry(load_entrypoints=False)
    backend = registry.open_backend("file", data_dir=str(tmp_path))
    assert isinstance(backend, FileBackend)
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
