"""Writers of the ``file`` and ``dbm`` backends killed with SIGKILL at random moments, about thirty times each.

A writer process loops over a few cache keys and one session, writing values of random sizes (a few bytes to about
a megabyte, so that some writes go in place and others to a new file) while it holds a ``file`` lock; before each
write it appends ``key generation`` to a log. Each value carries its key, its generation and a SHA-256 of itself,
so a partial or mixed write is detectable. A kill from outside rarely lands inside a write system call, so every
other writer also kills itself, now and then, after writing only a part of the bytes of one ``os.pwrite`` (what
SIGKILL does to a write it interrupts).

After each kill, this process checks:

* no torn read: every key reads a whole value, either the one the killed writer was writing or the one before it;
  the session loads (not a fresh one) with such a value;
* no stale lock: the ``file`` lock the writer held, and the backend's own locks (the key file's ``flock``, the dbm
  lock file), are taken at once (well under a second) by a new writer, since the kernel released the dead
  process's ``flock``s.

The next writer continues from there, with higher generations.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from beaker_core.backends.dbm import DBMBackend
from beaker_core.backends.file import FileBackend
from beaker_core.locks.file import FileLock
from beaker_core.session import Session

KILLS = 30
TIME_BUDGET = 40.0  # seconds per backend; the kills stop there (at least MIN_KILLS are required)
MIN_KILLS = 10
LOCK_NAME = "kill-writers"
CACHE_KEYS = ("cache:small", "cache:grows", "cache:big")
SESSION_KEY = "session"  # the log's name for the session's payload
# sizes of the payload: small ones are written in place, a change of size class moves the key to a new file
SIZES = (10, 200, 3000, 40_000, 300_000, 1_000_000)
PROMPT_ACQUIRE = 1.0
TEAR = 0.05  # every other writer kills itself in the middle of one write in twenty (about)

WRITER = r"""
import hashlib, os, random, signal, sys
from beaker_core.backends.dbm import DBMBackend
from beaker_core.backends.file import FileBackend
from beaker_core.locks.file import FileLock
from beaker_core.session import Session

kind, data_dir, lock_dir, log_path, session_id = sys.argv[1:6]
generation, seed, tear = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
backend = (FileBackend if kind == "file" else DBMBackend)(data_dir=data_dir)
lock = FileLock({lock_name!r}, lock_dir=lock_dir)
log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
rng = random.Random(seed)
real_pwrite = os.pwrite


def pwrite_or_die_halfway(fd, data, offset):
    # what SIGKILL does to a write in the middle of it: a part of the bytes, then nothing
    if tear and len(data) > 1 and rng.random() < tear:
        real_pwrite(fd, bytes(data[:rng.randrange(1, len(data))]), offset)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_pwrite(fd, data, offset)


os.pwrite = pwrite_or_die_halfway
{make_value}
while True:
    for key in {keys!r}:
        generation += 1
        value = make_value(key, generation, rng.choice({sizes!r}))
        os.write(log, f"{{key}} {{generation}}\n".encode())
        with lock:
            if key == {session_key!r}:
                session = Session({{}}, id=session_id, type=kind, data_dir=data_dir)
                session["payload"] = value.decode("ascii")
                session.persist()
            elif generation % 3 or not backend.atomic_update:  # update: the path of session saves
                backend.set(key, value)
            else:
                backend.update(key, lambda current: value)
"""



def make_value(key: str, generation: int, size: int) -> bytes:
    """``key|generation|size|`` and a pattern of the generation, then the SHA-256 of all that (ASCII).

    The writer's script runs this function's source.
    """
    pattern = (f"{generation:016x}" * (size // 16 + 1))[:size]
    body = f"{key}|{generation}|{size}|{pattern}".encode("ascii")
    return body + hashlib.sha256(body).hexdigest().encode("ascii")


def generation_of(key: str, value: bytes | None) -> int | None:
    """The generation of a whole value of ``key``; None for a miss. A torn value fails the test."""
    if value is None:
        return None
    body, digest = value[:-64], value[-64:]
    assert hashlib.sha256(body).hexdigest().encode("ascii") == digest, \
        f"torn value under {key!r}: {len(value)} bytes, starting {value[:60]!r}"
    stored_key, generation, size, pattern = body.decode("ascii").split("|", 3)
    assert stored_key == key and len(pattern) == int(size), (stored_key, key, size, len(pattern))
    return int(generation)


def within(seconds: float, action, what: str):
    """Run ``action`` in a thread; fail unless it returns within ``seconds`` (a stale lock would block it)."""
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            outcome["result"] = action()
        except BaseException as exc:  # reported below
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(max(seconds * 10, 10.0))
    assert "elapsed" in outcome, f"{what} still blocked after {max(seconds * 10, 10.0)} s: a stale lock"
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["elapsed"] < seconds, f"{what} took {outcome['elapsed']:.2f} s: a stale lock"
    return outcome.get("result")


class Writers:
    """Starts and kills writers, and knows which generations each key may hold after a kill."""

    def __init__(self, kind: str, root, session_id: str):
        self.kind = kind
        self.data_dir = str(root / "data")
        self.lock_dir = str(root / "locks")
        self.log_path = str(root / "log")
        self.session_id = session_id
        self.generation = 0
        self.rng = random.Random(f"kill-writers-{kind}")
        self.script = WRITER.format(lock_name=LOCK_NAME, make_value=inspect.getsource(make_value),
                                    keys=CACHE_KEYS + (SESSION_KEY,), sizes=SIZES, session_key=SESSION_KEY)
        # what each key held when last checked (None: a miss)
        self.verified: dict[str, int | None] = {key: None for key in CACHE_KEYS + (SESSION_KEY,)}

    def run_and_kill(self, tear: float = 0.0) -> tuple[dict[str, list[int]], bool]:
        """Start a writer, let it write for a random moment, SIGKILL it: the generations it started, per key, and
        whether it killed itself inside a write.

        With ``tear``, each ``os.pwrite`` of the writer may (with that probability) write only a part of its bytes
        and kill the writer: a kill inside a write, which random kills from outside rarely hit.
        """
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)
        start = self.generation
        self.generation += 1_000_000
        writer = subprocess.Popen(
            [sys.executable, "-c", self.script, self.kind, self.data_dir, self.lock_dir, self.log_path,
             self.session_id, str(start), str(self.rng.randrange(1 << 30)), str(tear)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while not (os.path.exists(self.log_path) and os.path.getsize(self.log_path)):
                assert writer.poll() is None, f"the writer died: {writer.stderr.read().decode()}"
                assert time.monotonic() < deadline, "the writer did not start writing"
                time.sleep(0.002)
            time.sleep(self.rng.uniform(0.0, 0.12))
            killed_itself = writer.poll() is not None
            if not killed_itself:
                writer.send_signal(signal.SIGKILL)
            else:  # it killed itself in the middle of a write (tear), or failed
                assert writer.returncode == -signal.SIGKILL, f"the writer died: {writer.stderr.read().decode()}"
        finally:
            if writer.poll() is None:
                writer.kill()
            writer.wait()
            writer.stderr.close()
        assert writer.returncode == -signal.SIGKILL
        started: dict[str, list[int]] = {}
        with open(self.log_path) as log:
            for line in log:
                if line.endswith("\n"):  # a line cut by the kill names a write that never began
                    key, generation = line.split()
                    started.setdefault(key, []).append(int(generation))
        return started, killed_itself

    def allowed(self, key: str, started: list[int]) -> set[int | None]:
        """The generations ``key`` may hold: the last write started, or what it held before that write."""
        if not started:
            return {self.verified[key]}
        before = started[-2] if len(started) > 1 else self.verified[key]
        return {started[-1], before}


def check_after_kill(writers: Writers, backend, started: dict[str, list[int]]) -> bool:
    """Check every key and the locks after a kill; whether the killed writer's last write was left undone."""
    last = max(((generation, key) for key, generations in started.items() for generation in generations),
               default=(None, None))
    found = {key: generation_of(key, backend.get(key)) for key in CACHE_KEYS}
    session = Session({}, id=writers.session_id, type=writers.kind, data_dir=writers.data_dir)
    assert not session.is_new, "the session was lost (a fresh one was started)"
    found[SESSION_KEY] = generation_of(SESSION_KEY, session["payload"].encode("ascii"))
    for key, generation in found.items():
        allowed = writers.allowed(key, started.get(key, []))
        assert generation in allowed, f"{key} holds generation {generation}, expected one of {allowed}"
    writers.verified.update(found)

    lock = FileLock(LOCK_NAME, lock_dir=writers.lock_dir)
    assert within(PROMPT_ACQUIRE, functools.partial(lock.acquire, timeout=PROMPT_ACQUIRE * 5),
                  "taking the file lock the writer held")
    lock.release()
    # each key written again as it is: the key file's flock (file) or the lock file's (dbm) must be free
    for key in CACHE_KEYS:
        if found[key] is None:
            within(PROMPT_ACQUIRE, functools.partial(backend.delete, key), f"deleting {key}")
        else:
            value = make_value(key, found[key], 10)
            within(PROMPT_ACQUIRE, functools.partial(backend.set, key, value), f"writing {key}")
    session.changed("payload")
    within(PROMPT_ACQUIRE, session.persist, "saving the session")
    return last[1] is not None and found[last[1]] != last[0]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "dbm"])
def test_killed_writers_leave_whole_values_and_no_stale_lock(kind, tmp_path):
    backend = (FileBackend if kind == "file" else DBMBackend)(data_dir=str(tmp_path / "data"))
    first = Session({}, type=kind, data_dir=str(tmp_path / "data"))
    first["payload"] = make_value(SESSION_KEY, 0, 10).decode("ascii")
    first.save()
    writers = Writers(kind, tmp_path, first.id)
    writers.verified[SESSION_KEY] = 0
    started_at = time.monotonic()
    kills = cuts = torn = 0
    try:
        while kills < KILLS and time.monotonic() - started_at < TIME_BUDGET:
            started, killed_itself = writers.run_and_kill(tear=TEAR if kills % 2 else 0.0)
            kills += 1
            torn += killed_itself
            cuts += check_after_kill(writers, backend, started)
    finally:
        backend.close()
    assert kills >= MIN_KILLS, f"only {kills} kills within {TIME_BUDGET} s"
    # the log line goes just before the write: a kill between them, or inside the write, leaves the last write
    # undone, which the kills must have done at least once for the test to have tested anything
    assert cuts, f"none of the {kills} kills interrupted a write"
    assert torn, f"none of the {kills} writers died inside a write"
