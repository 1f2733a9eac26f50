"""Locks under contention: the lock a backend prefers, from threads and from processes.

The lock under test is ``registry.lock_class(lock_type)(name, backend=store, **lock_options)``, where ``lock_type``
is the backend's ``preferred_lock`` (or the class attribute ``lock_type``) and ``lock_options`` come from
:meth:`~beaker_core.testing.backend.ConformanceBase.make_lock_options`. A shared backend (``store.shared``) is used
by many processes, so its lock must exclude other processes too; those tests are only generated for a shared
backend (``@requires("shared")``): a process-local backend has no other process to exclude.

A network lock is a lease (see :class:`~beaker_core.locks.TokenLock`): the tests give it a short ``lease`` when its
constructor takes one, and check that a holder working longer keeps the lock while a killed one frees it within the
lease. :func:`creator_and_waiters` runs that last scenario through the caching API, for the plugins' own tests too.
"""
from __future__ import annotations

import inspect
import os
import threading
import time
import uuid
from typing import Any, NamedTuple

import pytest

from ..exceptions import LockTimeout
from . import _workers
from .backend import ConformanceBase, requires
from .concurrency import run_in_threads


class CreatorAndWaiters(NamedTuple):
    elapsed: float  # seconds from the holder's kill (or the waiters' start) until every waiter had its value
    runs: int  # how many waiters ran the creator
    values: list  # what each waiter got


def creator_and_waiters(directory: Any, cache_kwargs: dict[str, Any], *, waiters: int = 8, kill: bool = True,
                        holder_seconds: float = 600.0, waiter_seconds: float = 0.5, lease: float | None = None,
                        timeout: float = 120.0) -> CreatorAndWaiters:
    """A process creates a value through ``Cache(namespace, **cache_kwargs).get_or_create`` while ``waiters`` other
    processes ask for the same value; with ``kill`` the creator is killed (SIGKILL) once they all wait.

    ``lease`` sets :data:`beaker_core.locks.DEFAULT_LEASE` in every process (None keeps the default). Creator runs
    are counted with files in ``directory``, so any backend will do. The processes are the suite's workers
    (:mod:`beaker_core.testing._workers`): each builds its own ``Cache``, as an unrelated process would.
    """
    directory = os.fspath(directory)
    namespace = f"lease-{uuid.uuid4().hex[:12]}"

    def args(role: str, seconds: float) -> tuple:
        return (role, directory, cache_kwargs, namespace, lease, seconds)

    def files(start: str) -> list[str]:
        return [name for name in os.listdir(directory) if name.startswith(start)]

    holder = _workers.context().Process(target=_workers.cache_creator, args=args("holder", holder_seconds),
                                        daemon=True)
    holder.start()
    try:
        _wait_until(lambda: files("run-holder-") or not holder.is_alive(), timeout)
        assert holder.is_alive(), f"the creator ended (exit code {holder.exitcode}) before it was killed"
        workers = _workers.Workers()
        for index in range(waiters):
            workers.start(_workers.cache_creator, *args(f"w{index}", waiter_seconds))
        _wait_until(lambda: len(files("waiting-w")) == waiters or workers.crashed(), timeout)
        time.sleep(0.5)  # every waiter is past its read, waiting for the lock
        started = time.monotonic()
        if kill:
            holder.kill()  # SIGKILL
        values = workers.results(timeout)
        elapsed = time.monotonic() - started
        holder.join(timeout)
        assert kill or holder.exitcode == 0, f"the creator failed with exit code {holder.exitcode}"
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join()
    return CreatorAndWaiters(elapsed, len(files("run-w")), values)


def _wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} seconds")
        time.sleep(0.01)


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

    def lease_options(self, registry, lock_type: str, lease: float) -> dict[str, Any]:
        """``lease`` (with a long ``expire``) for a lock type that takes one; nothing for the others."""
        if "lease" not in inspect.signature(registry.lock_class(lock_type)).parameters:
            return {}
        return {"lease": lease, "expire": 60}

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

    @pytest.mark.slow
    def test_holder_working_longer_than_its_lease_keeps_the_lock(self, make_lock, registry, tested_lock_type,
                                                                 prefix):
        holder = make_lock(prefix + "lock", **self.lease_options(registry, tested_lock_type, 0.8))
        assert holder.acquire(True, 5)
        try:
            deadline = time.monotonic() + 2.5 * getattr(holder, "lease", 0.8)
            while time.monotonic() < deadline:
                assert _in_thread(make_lock(prefix + "lock").acquire, False) is False
                time.sleep(0.1)
        finally:
            holder.release()
        assert _in_thread(make_lock(prefix + "lock").acquire, True, 5) is True

    @pytest.mark.slow
    @requires("shared")
    def test_killed_creator_leaves_one_waiter_to_create_the_value(
            self, tmp_path, make_lock, registry, backend_options, tested_lock_type):
        lease = 1.0
        probe = make_lock("probe", **self.lease_options(registry, tested_lock_type, lease))
        outcome = creator_and_waiters(tmp_path, {"type": self.backend, "lock_type": tested_lock_type,
                                                 **backend_options}, lease=lease)
        assert outcome.runs == 1, outcome
        assert len(set(outcome.values)) == 1, outcome
        # within the lease (a file lock frees at once), not after the waiters' lock_timeout of 30 seconds
        assert outcome.elapsed < getattr(probe, "lease", 0.0) + self.ttl_resolution + 6, outcome
