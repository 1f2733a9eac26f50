"""Locks under contention: the lock a backend prefers, from threads and from processes.

The lock under test is ``registry.lock_class(lock_type)(name, backend=store, **lock_options)``, where ``lock_type``
is the backend's ``preferred_lock`` (or the class attribute ``lock_type``) and ``lock_options`` come from
:meth:`~beaker_core.testing.backend.ConformanceBase.make_lock_options`. A shared backend (``store.shared``) is used
by many processes, so its lock must exclude other processes too; those tests are only generated for a shared
backend (``@requires("shared")``): a process-local backend has no other process to exclude.
"""
from __future__ import annotations

import inspect
import threading
import time
from typing import Any

import pytest

from ..exceptions import LockTimeout
from . import _workers
from .backend import ConformanceBase, requires
from .concurrency import run_in_threads


def _in_thread(function, *args: Any) -> Any:
    """Run ``function`` in another thread and return its result (or raise its exception)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the thread hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class LockConformanceTests(ConformanceBase):
    """The backend's preferred lock excludes, times out and survives contention."""

    @pytest.fixture
    def tested_lock_type(self, store) -> str:
        return self.lock_type or store.preferred_lock

    @pytest.fixture
    def lock_options(self, tmp_path, registry, tested_lock_type) -> dict[str, Any]:
        options = self.make_lock_options(tmp_path)
        parameters = inspect.signature(registry.lock_class(tested_lock_type)).parameters
        if "lock_dir" in options and "lock_dir" not in parameters:
            del options["lock_dir"]  # a directory means nothing to a thread or network lock
        return options

    @pytest.fixture
    def make_lock(self, registry, store, tested_lock_type, lock_options):
        lock_class = registry.lock_class(tested_lock_type)

        def make(name: str, **options: Any):
            return lock_class(name, backend=store, **{**lock_options, **options})
        return make

    def test_acquire_release_and_acquire_again(self, make_lock, prefix):
        lock = make_lock(prefix + "lock")
        assert lock.acquire(True, 5) is True
        lock.release()
        assert lock.acquire(True, 5) is True
        lock.release()
        with lock:
            pass
        with lock:
            pass

    def test_held_lock_excludes_another_thread_until_released(self, make_lock, prefix):
        holder = make_lock(prefix + "lock")
        contender = make_lock(prefix + "lock")
        assert holder.acquire(True, 5)
        try:
            assert _in_thread(contender.acquire, True, 0.3) is False
            assert _in_thread(contender.acquire, False) is False
        finally:
            holder.release()

        def acquire_then_release() -> bool:
            taken = contender.acquire(True, 10)
            if taken:
                contender.release()
            return taken
        assert _in_thread(acquire_then_release) is True

    def test_with_raises_lock_timeout_while_held(self, make_lock, prefix):
        holder = make_lock(prefix + "lock")
        contender = make_lock(prefix + "lock", timeout=0.3)

        def enter() -> None:
            with contender:
                pass

        with holder:
            with pytest.raises(LockTimeout) as raised:
                _in_thread(enter)
        assert "lock" in str(raised.value).lower()
        _in_thread(enter)  # free again once the holder left its block

    def test_lock_is_released_when_the_block_raises(self, make_lock, prefix):
        lock = make_lock(prefix + "lock")
        with pytest.raises(ZeroDivisionError):
            with lock:
                1 / 0
        assert _in_thread(make_lock(prefix + "lock").acquire, True, 5) is True

    def test_different_names_do_not_exclude_each_other(self, make_lock, prefix):
        with make_lock(prefix + "one"):
            other = make_lock(prefix + "two")
            assert _in_thread(other.acquire, True, 2) is True
            other.release()

    def test_odd_lock_names(self, make_lock, prefix):
        for suffix in ("../../x y", "line\nbreak\x00", "ключ/🔑", "n" * 400):
            holder = make_lock(prefix + suffix)
            with holder:
                assert _in_thread(make_lock(prefix + suffix).acquire, True, 0.2) is False
            contender = make_lock(prefix + suffix)
            assert contender.acquire(True, 5) is True
            contender.release()

    def test_threads_incrementing_under_the_lock_reach_the_exact_total(self, make_lock, store, prefix):
        threads_count, increments = 8, 25
        key = prefix + "counter"

        def work(index: int) -> None:
            for _ in range(increments):
                with make_lock(prefix + "lock"):
                    current = store.get(key)
                    time.sleep(0)  # invite a switch between the read and the write
                    store.set(key, str(int(current or 0) + 1).encode("ascii"))

        run_in_threads(work, threads_count, timeout=120)
        assert int(store.get(key)) == threads_count * increments

    @pytest.mark.slow
    @requires("shared")
    def test_processes_incrementing_under_the_lock_reach_the_exact_total(
            self, store, backend_options, tested_lock_type, lock_options, prefix):
        increments = 20
        key = prefix + "counter"
        args = (self.backend, backend_options, tested_lock_type, lock_options, prefix + "lock", key, increments)
        done = _workers.run_in_processes(_workers.lock_counter, [args] * self.processes, synchronized=True)
        assert done == [increments] * self.processes
        assert int(store.get(key)) == self.processes * increments

    @pytest.mark.slow
    @requires("shared")
    def test_lock_held_by_another_process_excludes_this_one(
            self, store, make_lock, backend_options, tested_lock_type, lock_options, prefix):
        workers = _workers.Workers()
        held, release = workers.ctx.Event(), workers.ctx.Event()
        workers.start(_workers.hold_lock, self.backend, backend_options, tested_lock_type, lock_options,
                      prefix + "lock", held, release)
        try:
            assert held.wait(_workers.START_TIMEOUT), "the worker never took the lock"
            contender = make_lock(prefix + "lock")
            assert contender.acquire(True, 0.3) is False
            with pytest.raises(LockTimeout):
                with make_lock(prefix + "lock", timeout=0.2):
                    pass
        finally:
            release.set()
        assert workers.results() == [True]
        assert contender.acquire(True, 10) is True
        contender.release()

    @pytest.mark.slow
    @requires("shared")
    def test_lock_of_a_crashed_holder_does_not_block_forever(
            self, store, make_lock, backend_options, tested_lock_type, lock_options, prefix):
        expire = max(1.0, 2 * self.ttl_resolution)
        options = {**lock_options, "expire": expire}
        workers = _workers.Workers()
        held, release = workers.ctx.Event(), workers.ctx.Event()
        process = workers.start(_workers.hold_lock, self.backend, backend_options, tested_lock_type, options,
                                prefix + "lock", held, release, True)
        assert held.wait(_workers.START_TIMEOUT), "the worker never took the lock"
        process.join(30)
        workers.stop()
        lock = make_lock(prefix + "lock", expire=expire)
        assert lock.acquire(True, expire + self.ttl_resolution + 5) is True
        lock.release()
