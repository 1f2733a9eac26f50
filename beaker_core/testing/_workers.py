"""Worker processes for the conformance suite.

Workers are started with the ``forkserver`` method (``spawn`` where there is none), so every target here is a
module-level function, and it receives only picklable things: a backend name and its options, lock options, cache
keyword arguments. Each worker rebuilds what it needs through a fresh :class:`~beaker_core.registry.Registry`,
exactly as an unrelated process would. The fork server imports the core's modules and the installed plugins' once
(it creates no backend, lock, connection or thread), so a worker starts in milliseconds instead of importing them
again. This module imports nothing from pytest.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_module
import time
import traceback
import uuid
from typing import Any, Callable, Iterator, Sequence

WORKER_REGION = "bkconf_worker_region"
START_TIMEOUT = 60.0


#: modules the fork server imports before it forks workers (the plugins' modules are added by :func:`context`)
PRELOAD = ["beaker_core.testing._workers", "beaker_core.registry", "beaker_core.cache", "beaker_core.middleware",
           "beaker_core.testing.sessions"]


def context():
    """The multiprocessing context the suite starts its workers with."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD + _plugin_modules())  # no effect once the server runs
    return ctx


def _plugin_modules() -> list[str]:
    """The modules of the installed ``beaker_core`` plugins (their entry points), for the fork server to import."""
    from importlib.metadata import entry_points
    try:
        return sorted({entry.module for entry in entry_points(group="beaker_core")})
    except Exception:  # a broken installation is reported by the registry, in the worker
        return []


def _run(results, index: int, target: Callable[..., Any], args: Sequence[Any]) -> None:
    try:
        outcome = ("ok", target(*args))
    except BaseException:  # reported to the parent with its traceback
        outcome = ("error", traceback.format_exc())
    results.put((index, *outcome))


class Workers:
    """Processes running targets of this module; :meth:`results` waits for all of them and re-raises failures."""

    def __init__(self) -> None:
        self.ctx = context()
        self._results = self.ctx.Queue()
        self._processes: list[Any] = []

    def start(self, target: Callable[..., Any], *args: Any) -> Any:
        process = self.ctx.Process(target=_run, args=(self._results, len(self._processes), target, args),
                                   daemon=True)
        process.start()
        self._processes.append(process)
        return process

    def results(self, timeout: float = 120.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        outcomes: dict[int, tuple[str, Any]] = {}
        try:
            while len(outcomes) < len(self._processes):
                remaining = deadline - time.monotonic()
                try:
                    index, status, value = self._results.get(timeout=max(remaining, 0.1))
                except queue_module.Empty:
                    dead = [p.pid for p in self._processes if not p.is_alive() and p.exitcode not in (0, None)]
                    if dead or remaining <= 0:
                        raise AssertionError(
                            f"only {len(outcomes)} of {len(self._processes)} worker processes reported "
                            f"(crashed: {dead})") from None
                    continue
                outcomes[index] = (status, value)
        finally:
            self.stop()
        failures = [value for status, value in outcomes.values() if status == "error"]
        if failures:
            raise AssertionError("a worker process failed:\n" + "\n".join(failures))
        return [outcomes[index][1] for index in range(len(self._processes))]

    def crashed(self) -> bool:
        """Whether a worker has already ended with an error exit code."""
        return any(not process.is_alive() and process.exitcode not in (0, None) for process in self._processes)

    def stop(self) -> None:
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)


def run_in_processes(target: Callable[..., Any], args_list: Sequence[Sequence[Any]], *,
                     synchronized: bool = False, timeout: float = 120.0) -> list[Any]:
    """Run ``target(*args)`` in one process per ``args``; with ``synchronized`` each also gets a shared barrier
    (its last argument) to wait on, so that all of them act at the same moment once they are set up."""
    workers = Workers()
    barrier = workers.ctx.Barrier(len(args_list)) if synchronized else None
    for args in args_list:
        workers.start(target, *args, *((barrier,) if synchronized else ()))
    return workers.results(timeout)


# -- backends and locks ------------------------------------------------------------------------------------------

def _open(backend: str, options: dict[str, Any]):
    from ..registry import Registry
    registry = Registry()
    return registry, registry.backend_class(backend)(**options)


@contextlib.contextmanager
def _store_at_start(backend: str, options: dict[str, Any], start) -> Iterator[Any]:
    """The backend, opened here, once every worker reached ``start``; closed afterwards."""
    _, store = _open(backend, options)
    try:
        start.wait(START_TIMEOUT)
        yield store
    finally:
        store.close()


def lock_counter(backend: str, options: dict[str, Any], lock_type: str, lock_options: dict[str, Any],
                 lock_name: str, key: str, increments: int, start) -> int:
    """Increment a counter stored in the backend ``increments`` times, read then write, each under the lock."""
    registry, store = _open(backend, options)
    lock_class = registry.lock_class(lock_type)
    try:
        start.wait(START_TIMEOUT)
        for _ in range(increments):
            with lock_class(lock_name, backend=store, **lock_options):
                current = store.get(key)
                time.sleep(0)  # invite a switch between the read and the write
                store.set(key, str(int(current or 0) + 1).encode("ascii"))
        return increments
    finally:
        store.close()


def add_once(backend: str, options: dict[str, Any], key: str, value: bytes, start) -> bool:
    """``add`` of ``value`` under ``key``, at the same moment as the other workers."""
    with _store_at_start(backend, options, start) as store:
        return store.add(key, value, 3600)


def incr_counter(backend: str, options: dict[str, Any], key: str, increments: int, start) -> int:
    """``incr`` of ``key`` ``increments`` times."""
    with _store_at_start(backend, options, start) as store:
        for _ in range(increments):
            store.incr(key)
        return increments


def _increment(current: Any) -> bytes:
    return str(int(current or 0) + 1).encode("ascii")


def update_counter(backend: str, options: dict[str, Any], key: str, increments: int, start) -> int:
    """Increment a counter ``increments`` times through the backend's atomic ``update``."""
    with _store_at_start(backend, options, start) as store:
        for _ in range(increments):
            store.update(key, _increment, 3600)
        return increments


def try_lock(backend: str, options: dict[str, Any], lock_type: str, lock_options: dict[str, Any],
             lock_name: str, timeout: float) -> bool:
    """Whether this process can take the lock within ``timeout`` seconds (released again at once)."""
    registry, store = _open(backend, options)
    try:
        lock = registry.lock_class(lock_type)(lock_name, backend=store, **lock_options)
        taken = lock.acquire(True, timeout)
        if taken:
            lock.release()
        return taken
    finally:
        store.close()


def hold_lock(backend: str, options: dict[str, Any], lock_type: str, lock_options: dict[str, Any],
              lock_name: str, held, release, crash: bool = False) -> bool:
    """Take the lock, signal ``held``, then wait for ``release`` -- or, with ``crash``, exit without releasing."""
    registry, store = _open(backend, options)
    lock = registry.lock_class(lock_type)(lock_name, backend=store, **lock_options)
    if not lock.acquire(True, START_TIMEOUT):
        raise AssertionError(f"the worker could not take the lock {lock_name!r}")
    held.set()
    if crash:
        os._exit(0)  # no release, no cleanup: as if the process had been killed
    release.wait(START_TIMEOUT)
    lock.release()
    store.close()
    return True


# -- the caching API ---------------------------------------------------------------------------------------------

def _mark(marker_dir: str) -> None:
    """Leave one file per call, so the parent can count how many times a creator ran, in any process."""
    path = os.path.join(marker_dir, f"{os.getpid()}-{uuid.uuid4().hex}")
    with open(path, "x"):
        pass


def cache_get_or_create(cache_kwargs: dict[str, Any], namespace: str, key: str, marker_dir: str,
                        start) -> Any:
    from ..cache import Cache
    cache = Cache(namespace, **cache_kwargs)

    def creator():
        _mark(marker_dir)
        time.sleep(0.5)  # long enough for every other process to arrive while the value is being made
        return f"created by {os.getpid()}"

    start.wait(START_TIMEOUT)
    return cache.get_or_create(key, creator)


def _slow_region_body(argument: str, marker_dir: str) -> str:
    _mark(marker_dir)
    time.sleep(0.5)
    return f"{argument} computed by {os.getpid()}"


def region_function(config: dict[str, Any], argument: str, marker_dir: str, start) -> Any:
    """Call a function decorated with ``@cache_region(WORKER_REGION)`` after configuring that region."""
    from ..cache import CacheManager, cache_region
    from ..util import parse_cache_config_options
    decorated = cache_region(WORKER_REGION, "conformance")(_slow_region_body)
    CacheManager(**parse_cache_config_options(config))
    start.wait(START_TIMEOUT)
    return decorated(argument, marker_dir)


def cache_put(cache_kwargs: dict[str, Any], namespace: str, key: str, value: Any) -> None:
    from ..cache import Cache
    Cache(namespace, **cache_kwargs).put(key, value)


def cache_lookup(cache_kwargs: dict[str, Any], namespace: str, key: str) -> Any:
    """The cached value, or the string ``"<missing>"``."""
    from ..cache import Cache
    try:
        return Cache(namespace, **cache_kwargs).get(key)
    except KeyError:
        return "<missing>"


def cache_clear(cache_kwargs: dict[str, Any], namespace: str) -> None:
    from ..cache import Cache
    Cache(namespace, **cache_kwargs).clear()


# -- a killed creator and its waiters (beaker_core.testing.locks.creator_and_waiters) ----------------------------

def cache_creator(role: str, directory: str, cache_kwargs: dict[str, Any], namespace: str, lease: float | None,
                  seconds: float) -> Any:
    """``get_or_create`` of one key whose creator takes ``seconds``; leaves ``waiting-<role>-<pid>`` in ``directory``
    before asking and ``run-<role>-<pid>`` when its creator runs. ``lease`` sets
    :data:`beaker_core.locks.DEFAULT_LEASE` in this process first (None keeps the default)."""
    if lease is not None:
        from .. import locks
        locks.DEFAULT_LEASE = float(lease)
    from ..cache import Cache
    cache = Cache(namespace, **cache_kwargs)

    def create() -> str:
        open(os.path.join(directory, f"run-{role}-{os.getpid()}"), "x").close()
        time.sleep(seconds)
        return f"made by {role}"

    open(os.path.join(directory, f"waiting-{role}-{os.getpid()}"), "x").close()
    return cache.get_or_create("key", create)
