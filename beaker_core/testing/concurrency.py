"""Threads and processes that act at the same moment, for the tests of what concurrent callers must not break.

``run_in_threads(work, 8)`` starts eight threads, lets each call ``work(index)`` once all of them are running, waits
for them, and fails the test with every thread's traceback when one of them raised, or when one did not finish in
time; otherwise it returns what each call returned, in index order.

``run_scripts(directory, code, argvs)`` does the same with fresh Python processes running ``code``, one per argument
list, and returns what each printed. (The conformance suite's own worker processes, which call functions rather than
run code, are in :mod:`beaker_core.testing._workers`.)
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import traceback
from typing import Any, Callable, Sequence


def run_in_threads(work: Callable[[int], Any], count: int = 8, *, timeout: float = 60.0) -> list[Any]:
    """Run ``work(0)`` ... ``work(count - 1)`` in ``count`` threads released together by a barrier."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: dict[int, str] = {}

    def run(index: int) -> None:
        try:
            start.wait(timeout)
            results[index] = work(index)
        except BaseException:  # reported below, with the thread that raised it
            failures[index] = traceback.format_exc()

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    stuck = [index for index, thread in enumerate(threads) if thread.is_alive()]
    if stuck:
        raise AssertionError(f"threads {stuck} of {count} did not finish within {timeout} seconds")
    if failures:
        raise AssertionError(f"{len(failures)} of {count} threads failed:\n" + "\n".join(
            f"thread {index}: {failures[index]}" for index in sorted(failures)))
    return results


_WAIT_FOR_GO = """
import os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.002)
"""


def run_scripts(directory: Any, code: str, argvs: Sequence[Sequence[Any]], *, timeout: float = 60.0) -> list[str]:
    """Run ``code`` in one new Python process per argument list, all released at once, and return what each printed
    (stripped), in order. In ``code``, ``sys.argv[1]`` is the start signal's path and the arguments follow from
    ``sys.argv[2]``; ``os``, ``sys`` and ``time`` are imported. A process that fails fails the test with its stderr.
    """
    go = os.path.join(os.fspath(directory), f"go-{os.getpid()}-{threading.get_ident()}")
    script = _WAIT_FOR_GO + textwrap.dedent(code)
    processes = [subprocess.Popen([sys.executable, "-c", script, go, *map(str, argv)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for argv in argvs]
    try:
        with open(go, "w") as signal:
            signal.write("go")
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise AssertionError(f"a worker process exited with {process.returncode}:\n{err}")
            outputs.append(out.strip())
        return outputs
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if os.path.exists(go):
            os.unlink(go)
