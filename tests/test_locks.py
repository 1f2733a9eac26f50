"""The built-in locks: null, thread (one process) and file (processes and threads of one machine)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from beaker_core.backends.file import FileBackend
from beaker_core.backends.memory import MemoryBackend
from beaker_core.exceptions import BackendError, ConfigurationError, LockTimeout
from beaker_core.locks import NullLock, ThreadLock, TokenLock, _named_locks
from beaker_core.locks.file import FileLock
from beaker_core.registry import Registry
from beaker_core.testing.concurrency import run_in_threads, run_scripts


def hammer(make_lock, threads=4, rounds=100):
    """Threads increment a shared counter under locks from ``make_lock()``; return (counter, most inside at once)."""
    state = {"counter": 0, "inside": 0, "most": 0}

    def work(index):
        for _ in range(rounds):
            with make_lock():
                state["inside"] += 1
                state["most"] = max(state["most"], state["inside"])
                value = state["counter"]
                time.sleep(0)  # invite a thread switch inside the critical section
                state["counter"] = value + 1
                state["inside"] -= 1

    run_in_threads(work, threads)
    return state["counter"], state["most"]


# -- null and thread locks --------------------------------------------------------------------------------------------

def test_null_lock():
    lock = NullLock("anything")
    assert lock.acquire() is True
    assert lock.acquire(False) is True
    lock.release()
    with lock:
        with NullLock("anything"):
            pass


def test_thread_lock_excludes_and_times_out():
    first = ThreadLock("name", timeout=0.1)
    second = ThreadLock("name", timeout=0.1)
    assert first.acquire() is True
    assert second.acquire(False) is False
    started = time.monotonic()
    assert second.acquire(True, 0.1) is False
    assert time.monotonic() - started >= 0.09
    with pytest.raises(LockTimeout, match="thread lock 'name'"):
        with second:
            pass
    other = ThreadLock("other")
    assert other.acquire(False) is True  # other names are independent
    other.release()
    first.release()
    with second:
        assert first.acquire(False) is False
    with pytest.raises(RuntimeError):
        first.release()


def test_thread_lock_between_threads():
    assert hammer(lambda: ThreadLock("counter")) == (400, 1)


def test_named_lock_table_does_not_grow():
    baseline = len(_named_locks)  # 0 in a fresh process; other test files may leave a lock of theirs held
    locks = [ThreadLock(f"test-locks-name-{n}") for n in range(50)]
    for lock in locks:
        lock.acquire()
    assert len(_named_locks) == baseline + 50
    assert ThreadLock("test-locks-name-0").acquire(True, 0.01) is False  # a timed-out waiter leaves no entry
    for lock in locks:
        lock.release()
    hammer(lambda: ThreadLock("test-locks-shared"), rounds=20)
    assert len(_named_locks) == baseline


def test_lock_names_are_checked():
    for wrong in ("", None, 5):
        with pytest.raises(ConfigurationError, match="lock name"):
            ThreadLock(wrong)


# -- file lock --------------------------------------------------------------------------------------------------------

def test_file_lock_basics(tmp_path):
    lock_dir = tmp_path / "locks"
    first = FileLock("name", lock_dir=str(lock_dir), timeout=0.1)
    second = FileLock("name", lock_dir=str(lock_dir), timeout=0.1)
    assert first.acquire() is True and first.locked
    assert os.listdir(lock_dir) == [os.path.basename(first.path)]
    assert first.path == second.path and os.path.dirname(first.path) == str(lock_dir)
    assert second.acquire(False) is False
    assert second.acquire(True, 0.1) is False
    assert FileLock("other", lock_dir=str(lock_dir)).acquire(False) is True
    first.release()
    assert not first.locked
    assert second.acquire(False) is True
    second.release()
    with pytest.raises(RuntimeError, match="unheld"):
        second.release()


def test_file_lock_timeout_raises(tmp_path):
    holder = FileLock("busy", lock_dir=str(tmp_path))
    holder.acquire()
    waiter = FileLock("busy", lock_dir=str(tmp_path), timeout=0.2)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="file lock 'busy'.*0.2"):
        with waiter:
            pass
    assert time.monotonic() - started >= 0.19
    holder.release()
    with waiter:
        assert holder.acquire(False) is False


def test_file_lock_excludes_four_processes(tmp_path):
    lock_dir = tmp_path / "locks"
    counter = tmp_path / "counter"
    counter.write_text("0")
    code = """
        from beaker_core.locks.file import FileLock
        lock_dir, counter = sys.argv[2], sys.argv[3]
        for _ in range(50):
            with FileLock("counter", lock_dir=lock_dir, timeout=30):
                with open(counter) as handle:
                    value = int(handle.read())
                time.sleep(0.0005)
                with open(counter, "w") as handle:
                    handle.write(str(value + 1))
    """
    run_scripts(tmp_path, code, [[lock_dir, counter]] * 4)
    assert counter.read_text() == "200"
    assert os.listdir(lock_dir) == []


def test_file_lock_excludes_threads(tmp_path):
    lock_dir = str(tmp_path)
    assert hammer(lambda: FileLock("counter", lock_dir=lock_dir), rounds=50) == (200, 1)
    shared = FileLock("shared", lock_dir=lock_dir)  # one object used by several threads, like a threading.Lock
    assert hammer(lambda: shared, rounds=50) == (200, 1)
    assert os.listdir(lock_dir) == []


def test_lock_files_do_not_pile_up(tmp_path):
    lock_dir = tmp_path / "locks"
    for n in range(100):
        with FileLock(f"name {n}", lock_dir=str(lock_dir)):
            assert len(os.listdir(lock_dir)) == 1
    assert os.listdir(lock_dir) == []


def test_left_over_lock_file_is_reused_and_removed(tmp_path):
    lock = FileLock("left", lock_dir=str(tmp_path))
    with open(lock.path, "w"):
        pass  # as a crashed holder leaves it
    with lock:
        pass
    assert os.listdir(tmp_path) == []


def test_killed_holder_does_not_block_others(tmp_path):
    code = """
        import sys, time
        from beaker_core.locks.file import FileLock
        lock = FileLock("crash", lock_dir=sys.argv[1])
        lock.acquire()
        print("held", flush=True)
        time.sleep(60)
    """
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = FileLock("crash", lock_dir=str(tmp_path), timeout=10)
        assert lock.acquire(False) is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with lock:
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    assert os.listdir(tmp_path) == []


def test_lock_dir_from_the_backend(tmp_path):
    backend = FileBackend(data_dir=str(tmp_path / "data"))
    assert FileLock("x", backend=backend).lock_dir == str(tmp_path / "data" / "locks")
    with_lock_dir = FileBackend(data_dir=str(tmp_path / "data"), lock_dir=str(tmp_path / "elsewhere"))
    assert FileLock("x", backend=with_lock_dir).lock_dir == str(tmp_path / "elsewhere")
    assert FileLock("x", backend=backend, lock_dir=str(tmp_path / "own")).lock_dir == str(tmp_path / "own")
    with FileLock("x", backend=backend):
        backend.set("k", b"v")
        assert backend.cleanup() == 0  # the locks directory is not taken for data
        assert backend.get("k") == b"v"


def test_lock_dir_resolution_order(tmp_path):
    """The lock_dir option, else the backend's lock_dir, else the data_dir option, else the backend's data_dir;
    a data_dir gives <data_dir>/locks."""
    own, data = str(tmp_path / "own"), str(tmp_path / "data")
    plain = FileBackend(data_dir=str(tmp_path / "backend-data"))
    with_lock_dir = FileBackend(data_dir=str(tmp_path / "backend-data"), lock_dir=str(tmp_path / "backend-locks"))
    memory = MemoryBackend()  # keeps no files: no lock_dir nor data_dir of its own
    cases = [
        ({"lock_dir": own, "data_dir": data, "backend": with_lock_dir}, own),
        ({"data_dir": data, "backend": with_lock_dir}, str(tmp_path / "backend-locks")),
        ({"data_dir": data, "backend": plain}, os.path.join(data, "locks")),
        ({"data_dir": data, "backend": memory}, os.path.join(data, "locks")),
        ({"data_dir": data}, os.path.join(data, "locks")),
        ({"backend": plain}, str(tmp_path / "backend-data" / "locks")),
        ({"data_dir": "", "backend": plain}, str(tmp_path / "backend-data" / "locks")),
        ({"lock_dir": own, "backend": memory}, own),
    ]
    for options, expected in cases:
        assert FileLock("x", **options).lock_dir == expected, options
    relative = FileLock("x", data_dir="relative-data")
    assert relative.lock_dir == os.path.join(os.path.abspath("relative-data"), "locks")
    assert FileLock("x", data_dir=tmp_path / "path-object").lock_dir == str(tmp_path / "path-object" / "locks")
    with pytest.raises(ConfigurationError, match="lock_dir or data_dir"):
        FileLock("x", backend=memory)
    with pytest.raises(ConfigurationError, match="data_dir must be a directory path"):
        FileLock("x", data_dir=5)
    with pytest.raises(ConfigurationError, match="unknown option.*colour.*accepted.*data_dir"):
        FileLock("x", data_dir=data, colour="red")


def test_file_lock_options(tmp_path):
    with pytest.raises(ConfigurationError, match="lock_dir"):
        FileLock("x")
    with pytest.raises(ConfigurationError, match="lock_dir"):
        FileLock("x", backend=object())
    with pytest.raises(ConfigurationError, match="lock_dir"):
        FileLock("x", lock_dir=5)
    for wrong in ("soon", -1, float("nan"), True):
        with pytest.raises(ConfigurationError, match="timeout"):
            FileLock("x", lock_dir=str(tmp_path), timeout=wrong)
    with pytest.raises(ConfigurationError, match="expire"):
        FileLock("x", lock_dir=str(tmp_path), expire="never")
    with pytest.raises(ConfigurationError, match="unknown option.*colour.*accepted.*lock_dir"):
        FileLock("x", lock_dir=str(tmp_path), colour="red")
    with pytest.raises(ConfigurationError, match="lock name"):
        FileLock("", lock_dir=str(tmp_path))
    lock = FileLock("x", lock_dir=str(tmp_path), timeout="2.5", expire=None)
    assert lock.timeout == 2.5 and lock.expire is None
    with pytest.raises(ConfigurationError, match="timeout"):
        lock.acquire(timeout=-1)


def test_unusable_lock_dir_is_a_backend_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    lock = FileLock("x", lock_dir=str(blocker / "locks"))
    with pytest.raises(BackendError, match="file lock 'x'.*file"):
        lock.acquire()


def test_odd_names_stay_inside_lock_dir(tmp_path):
    lock_dir = tmp_path / "locks"
    for name in ("../../escape", "a/b", "\x00", "n" * 5000, "verrou 🔒"):
        lock = FileLock(name, lock_dir=str(lock_dir))
        with lock:
            assert os.path.dirname(lock.path) == str(lock_dir)
    assert os.listdir(tmp_path) == ["locks"]


def test_registered_lock_types():
    registry = Registry(load_entrypoints=False)
    assert registry.lock_class("file") is FileLock
    assert registry.lock_class("thread") is ThreadLock
    assert registry.lock_class("null") is NullLock


# -- TokenLock, the base of the locks kept in a shared store ----------------------------------------------------

class MemoryTokenLock(TokenLock):
    """A TokenLock on the memory backend: what the redis and memcached locks do, without a server."""

    kind = "memory-token"
    backend_class = MemoryBackend
    url_backends: dict = {}

    def backend_for_url(self, url):
        return self.url_backends.setdefault(url, MemoryBackend())

    def prepare(self):
        self.key = "lock:" + self.name

    def store_token(self, token):
        return token if self.backend.add(self.key, token, ttl=self.expire) else None

    def remove_token(self, token):
        if self.backend.get(self.key) != token:
            return False
        self.backend.delete(self.key)
        return True


def test_token_locks_with_one_name_exclude_each_other():
    store = MemoryBackend()
    first, second = MemoryTokenLock("job", backend=store), MemoryTokenLock("job", backend=store)
    assert first.acquire(False) is True and first.held
    assert second.acquire(False) is False and not second.held
    assert MemoryTokenLock("other", backend=store).acquire(False) is True
    first.release()
    assert not first.held
    assert second.acquire(False) is True
    second.release()


def test_token_lock_under_contention_admits_one_thread_at_a_time():
    store = MemoryBackend()
    counter, most = hammer(lambda: MemoryTokenLock("shared", backend=store, timeout=30), threads=4, rounds=50)
    assert counter == 200 and most == 1


def test_token_lock_waits_until_its_timeout():
    store = MemoryBackend()
    holder = MemoryTokenLock("job", backend=store)
    holder.acquire()
    waiter = MemoryTokenLock("job", backend=store, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="memory-token lock 'job' within 0.2 seconds"):
        with waiter:
            pass
    assert 0.2 <= time.monotonic() - started < 5
    holder.release()


def test_a_token_lock_that_expired_leaves_the_next_holder_alone_and_says_so(caplog):
    store = MemoryBackend()
    slow = MemoryTokenLock("job", backend=store, expire=0.1)
    assert slow.acquire()
    time.sleep(0.25)
    current = MemoryTokenLock("job", backend=store)
    assert current.acquire(False) is True
    slow.release()
    assert "the memory-token lock 'job' expired before it was released" in caplog.text
    assert MemoryTokenLock("job", backend=store).acquire(False) is False  # current still holds it
    current.release()


def test_releasing_an_unheld_token_lock_is_an_error():
    with pytest.raises(RuntimeError, match="release of the unheld memory-token lock 'job'"):
        MemoryTokenLock("job", backend=MemoryBackend()).release()


@pytest.mark.parametrize("options, message", [
    ({"expire": 0}, "expire must be a positive number of seconds"),
    ({"expire": None}, "expire must be a positive number of seconds"),
    ({"expire": "soon"}, "expire"),
    ({"expire": float("nan")}, "expire must be a finite number"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": float("inf")}, "timeout must be a finite number"),
])
def test_token_lock_options_are_checked(options, message):
    with pytest.raises(ConfigurationError, match=message):
        MemoryTokenLock("job", backend=MemoryBackend(), **options)


def test_token_lock_options_from_configuration_strings():
    lock = MemoryTokenLock("job", backend=MemoryBackend(), expire="2.5", timeout="1")
    assert lock.expire == 2.5 and lock.timeout == 1.0
    assert MemoryTokenLock("job", backend=MemoryBackend(), timeout=None).timeout is None


def test_token_lock_for_another_backend_needs_a_url(tmp_path):
    with pytest.raises(ConfigurationError, match="needs a memory-token backend or a url .it got a FileBackend"):
        MemoryTokenLock("job", backend=FileBackend(data_dir=str(tmp_path)))
    with pytest.raises(ConfigurationError, match="it got no backend"):
        MemoryTokenLock("job")
    first = MemoryTokenLock("job", backend=FileBackend(data_dir=str(tmp_path)), url="mem://a")
    second = MemoryTokenLock("job", url="mem://a")
    assert first.backend is second.backend
    assert first.acquire(False) and not second.acquire(False)
    first.release()


class UrlMemoryBackend(MemoryBackend):
    """A memory backend opened from a url, as a network lock opens its own backend."""

    def __init__(self, url):
        super().__init__()
        self.url = url


class UrlTokenLock(MemoryTokenLock):
    """The token lock's own url handling: one backend per backend class and url, shared by its locks."""

    backend_class = UrlMemoryBackend
    backend_for_url = TokenLock.backend_for_url  # not MemoryTokenLock's dict of its own


def test_token_locks_share_one_backend_per_url():
    first, second = UrlTokenLock("job", url="mem://shared"), UrlTokenLock("other", url="mem://shared")
    other_url = UrlTokenLock("job", url="mem://elsewhere")
    assert first.backend is second.backend and first.backend.url == "mem://shared"
    assert other_url.backend is not first.backend and other_url.backend.url == "mem://elsewhere"
    assert first.acquire(False) and not UrlTokenLock("job", url="mem://shared").acquire(False)
    assert other_url.acquire(False)  # another store
    first.release()
    other_url.release()
    with pytest.raises(ConfigurationError, match="url must be a string"):
        UrlTokenLock("job", url=5)
