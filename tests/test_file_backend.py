"""What is special to the ``file`` backend: layout, odd keys, corrupt files, cleanup, processes, errors, options."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from beaker_core.backends.file import FileBackend, decode_entry, encode_entry
from beaker_core.exceptions import BackendError, ConfigurationError
from beaker_core.registry import Registry

ODD_KEYS = ["../../etc/passwd", "a/b", "/abs/path", "\x00", "nul\x00inside", "k" * 5000, "clé ünï 鍵 🔑",
            ".", "..", "", " ", "line\nbreak", "back\\slash", "\udcff lone surrogate"]


@pytest.fixture
def backend(tmp_path):
    return FileBackend(data_dir=str(tmp_path / "data"))


def data_files(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def run_workers(tmp_path, code, argvs, timeout=60):
    """Start one Python process per argv, release them together, and return their outputs."""
    go = tmp_path / "go"
    script = textwrap.dedent("""
        import os, sys, time
        go = sys.argv[1]
        while not os.path.exists(go):
            time.sleep(0.002)
    """) + textwrap.dedent(code)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(go), *map(str, argv)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    go.write_text("go")
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    return outputs


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


def test_ttl_expiry_removes_the_file(backend):
    backend.set("short", b"v", ttl=0.3)
    backend.set("long", b"v", ttl=60)
    assert backend.get("short") == b"v"
    assert len(data_files(backend.data_dir)) == 2
    time.sleep(0.45)
    assert backend.get("short") is None
    assert backend.get("long") == b"v"
    assert len(data_files(backend.data_dir)) == 1
    assert backend.touch("short", 10) is False
    assert backend.add("short", b"again", ttl=10) is True


def test_touch_and_expired_add(backend):
    backend.set("k", b"v", ttl=0.3)
    assert backend.touch("k", 60) is True
    time.sleep(0.45)
    assert backend.get("k") == b"v"
    assert backend.touch("k", 0.3) is True
    time.sleep(0.45)
    assert backend.get("k") is None
    assert backend.touch("missing", 1) is False
    backend.set("gone", b"old", ttl=0.3)
    time.sleep(0.45)
    assert backend.add("gone", b"new") is True  # an expired entry does not block add
    assert backend.get("gone") == b"new"
    assert backend.delete("gone") is True


def test_incr(backend):
    assert backend.incr("n") == 1
    assert backend.incr("n", 10) == 11
    assert backend.incr("n", -12) == -1
    assert backend.get("n") == b"-1"
    backend.set("ttl", b"5", ttl=0.3)
    assert backend.incr("ttl") == 6
    time.sleep(0.45)
    assert backend.get("ttl") is None  # incr keeps the deadline
    backend.set("text", b"abc")
    with pytest.raises(ValueError, match="not an integer"):
        backend.incr("text")
    assert backend.get("text") == b"abc"
    with pytest.raises(TypeError):
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


def test_file_format(backend):
    backend.set("key", b"value", ttl=100)
    (path,) = data_files(backend.data_dir)
    with open(path, "rb") as handle:
        raw_key, value, expires = decode_entry(handle.read())
    assert (raw_key, value) == (b"key", b"value")
    assert time.time() + 99 < expires <= time.time() + 100


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip_value", "bad_magic", "trailing", "nan_deadline"])
def test_corrupt_file_is_a_miss_and_removed(backend, damage):
    backend.set("key", b"some value")
    (path,) = data_files(backend.data_dir)
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    if damage == "truncate":
        data = data[:-3]
    elif damage == "empty":
        data = b""
    elif damage == "flip_value":
        data[-1] ^= 0xFF
    elif damage == "bad_magic":
        data[:4] = b"XXXX"
    elif damage == "trailing":
        data += b"junk"
    elif damage == "nan_deadline":
        data = encode_entry(b"key", b"some value", float("nan"))
    with open(path, "wb") as handle:
        handle.write(data)
    assert backend.get("key") is None
    assert not os.path.exists(path)
    backend.set("key", b"again")
    assert backend.get("key") == b"again"


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


def test_keys_and_delete_prefix(backend):
    for key in ("user:1", "user:2", "user:3", "item:1"):
        backend.set(key, b"v")
    backend.set("user:expiring", b"v", ttl=0.3)
    assert sorted(backend.keys("user:")) == ["user:1", "user:2", "user:3", "user:expiring"]
    time.sleep(0.45)
    assert sorted(backend.keys("user:")) == ["user:1", "user:2", "user:3"]
    assert sorted(backend.keys()) == ["item:1", "user:1", "user:2", "user:3"]
    assert backend.delete_prefix("user:") == 3
    assert list(backend.keys()) == ["item:1"]


def test_cleanup(backend):
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
    time.sleep(0.45)

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


# -- processes --------------------------------------------------------------------------------------------------------

def test_incr_from_four_processes(tmp_path, backend):
    code = """
        from beaker_core.backends.file import FileBackend
        backend = FileBackend(data_dir=sys.argv[2])
        for _ in range(50):
            backend.incr("counter")
    """
    run_workers(tmp_path, code, [[backend.data_dir]] * 4)
    assert backend.get("counter") == b"200"
    assert not [f for f in data_files(backend.data_dir) if ".tmp-" in f]


def test_threads_share_one_backend(backend):
    import threading
    errors = []

    def work():
        try:
            for _ in range(50):
                backend.incr("counter")
                if backend.get("counter") is None:
                    errors.append("a counter read missed")
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert backend.get("counter") == b"200"


def test_add_from_several_processes_has_one_winner(tmp_path, backend):
    code = """
        from beaker_core.backends.file import FileBackend
        backend = FileBackend(data_dir=sys.argv[2])
        print(backend.add("race", sys.argv[3].encode()))
    """
    outputs = run_workers(tmp_path, code, [[backend.data_dir, f"worker{n}"] for n in range(6)])
    assert sorted(outputs) == ["False"] * 5 + ["True"]
    assert backend.get("race") == f"worker{outputs.index('True')}".encode()


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
    outputs = run_workers(tmp_path, code, [[backend.data_dir, "write"]] * 2 + [[backend.data_dir, "read"]] * 2)
    assert outputs[2:] == ["0", "0"]


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
    for wrong in ("abc", "0o999", 0o1000, -1, True, 1.5):
        with pytest.raises(ConfigurationError, match="file_mode"):
            FileBackend(data_dir=str(tmp_path), file_mode=wrong)
    with pytest.raises(ConfigurationError, match="fsync"):
        FileBackend(data_dir=str(tmp_path), fsync="maybe")
    with pytest.raises(ConfigurationError, match="unknown option.*colour.*accepted: data_dir"):
        FileBackend(data_dir=str(tmp_path), colour="blue")

    backend = FileBackend(data_dir=str(tmp_path / "d"), lock_dir=str(tmp_path / "locks"), file_mode="0640",
                          fsync="true")
    assert backend.lock_dir == str(tmp_path / "locks") and backend.fsync is True
    backend.set("k", b"v")
    (path,) = data_files(backend.data_dir)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert FileBackend(data_dir=str(tmp_path / "e"), file_mode=0o600).file_mode == 0o600
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
