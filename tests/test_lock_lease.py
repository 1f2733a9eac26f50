"""The lease of the token locks (the base of the redis and memcached locks), without a server.

A token lock's key lives ``lease`` seconds and the process's lease thread renews it while the lock is held, for at
most ``expire`` seconds: a dead holder frees the lock within the lease, a live one keeps it. The locks here keep
their token in the memory backend; the plugins' tests do the same against real servers and killed processes.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from beaker_core import locks
from beaker_core.backends.memory import MemoryBackend
from beaker_core.exceptions import BackendError, ConfigurationError
from beaker_core.locks import TokenLock, _leases
from beaker_core.testing.concurrency import run_in_threads


class MemoryTokenLock(TokenLock):
    """A token lock on the memory backend without ``renew_token``: its key lives ``expire`` seconds, unrenewed."""

    kind = "memory-token"
    backend_class = MemoryBackend

    def prepare(self):
        self.key = "lock:" + self.name

    def store_token(self, token):
        return token if self.backend.add(self.key, token, ttl=self.lease) else None

    def remove_token(self, token):
        if self.backend.get(self.key) != token:
            return False
        self.backend.delete(self.key)
        return True


class LeasedMemoryLock(MemoryTokenLock):
    """A renewing token lock on the memory backend; counts its renewals, and can be told to fail them."""

    kind = "memory-lease"

    def prepare(self):
        super().prepare()
        self.renewals = 0
        self.renewal_error = None

    def renew_token(self, token, ttl):
        self.renewals += 1
        renewed = self.backend.get(self.key) == token and self.backend.touch(self.key, ttl)
        if self.renewal_error is not None:
            raise self.renewal_error  # after renewing, like a reply lost on the way back
        return renewed


def hammer(make_lock, threads=4, rounds=100):
    """Threads increment a counter under locks from ``make_lock()``; return (counter, most inside at once)."""
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


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.01)


def test_lease_defaults_and_bounds():
    store = MemoryBackend()
    assert locks.DEFAULT_LEASE == 5.0
    lock = LeasedMemoryLock("job", backend=store)
    assert lock.renews and lock.lease == 5.0 and lock.expire == locks.DEFAULT_EXPIRE
    assert LeasedMemoryLock("job", backend=store, lease="0.5").lease == 0.5
    assert LeasedMemoryLock("job", backend=store, expire=2).lease == 2.0  # never longer than expire
    # a lock without renew_token is not renewed: its key lives expire seconds, as before leases
    plain = MemoryTokenLock("job", backend=store, expire=7, lease=1)
    assert not plain.renews and plain.lease == 7.0


@pytest.mark.parametrize("lease, message", [
    (0, "lease must be a positive number of seconds"),
    (-1, "lease"),
    ("soon", "lease"),
    (float("inf"), "lease must be a finite number"),
])
def test_lease_option_is_checked(lease, message):
    with pytest.raises(ConfigurationError, match=message):
        LeasedMemoryLock("job", backend=MemoryBackend(), lease=lease)


def test_the_default_lease_is_read_when_a_lock_is_made(monkeypatch):
    monkeypatch.setattr(locks, "DEFAULT_LEASE", 0.5)
    assert LeasedMemoryLock("job", backend=MemoryBackend()).lease == 0.5


def test_a_holder_that_works_longer_than_its_lease_keeps_the_lock():
    store = MemoryBackend()
    holder = LeasedMemoryLock("job", backend=store, lease=0.5, expire=30)
    contender = LeasedMemoryLock("job", backend=store)
    assert holder.acquire(False)
    deadline = time.monotonic() + 2.0  # four leases
    while time.monotonic() < deadline:
        assert contender.acquire(False) is False
        time.sleep(0.05)
    assert holder.renewals >= 6
    holder.release()
    assert contender.acquire(False) is True
    contender.release()


def test_a_holder_keeps_the_lock_for_at_most_expire_seconds(caplog):
    store = MemoryBackend()
    hung = LeasedMemoryLock("job", backend=store, lease=0.5, expire=1.5)
    assert hung.acquire(False)
    started = time.monotonic()
    contender = LeasedMemoryLock("job", backend=store)
    assert contender.acquire(True, 10)
    assert 1.0 <= time.monotonic() - started < 3  # renewed up to expire, then left to lapse
    hung.release()
    assert "the memory-lease lock 'job' expired before it was released (held longer than expire=1.5s" in caplog.text
    assert store.get(contender.key) is not None  # the late release left the next holder's lock alone
    contender.release()


def test_release_stops_the_renewals():
    store = MemoryBackend()
    lock = LeasedMemoryLock("job", backend=store, lease=0.1)
    for _ in range(2):  # a lock object is acquired again after its release
        with lock:
            wait_for(lambda: lock.renewals >= 2)
            assert lock in _leases._leases
        assert lock not in _leases._leases
        renewals = lock.renewals
        time.sleep(0.3)
        assert lock.renewals == renewals
        assert store.get(lock.key) is None


def test_a_lost_lease_is_logged_once_and_never_touches_the_next_holder(caplog):
    store = MemoryBackend()
    holder = LeasedMemoryLock("job", backend=store, lease=0.2)
    assert holder.acquire(False)
    store.delete(holder.key)  # as if the store had restarted
    successor = MemoryTokenLock("job", backend=store, expire=30)
    assert successor.acquire(False)
    with caplog.at_level(logging.WARNING, logger="beaker_core.locks"):
        wait_for(lambda: "lost its lease" in caplog.text)
        renewals = holder.renewals
        time.sleep(0.3)
        assert holder.renewals == renewals  # a lost lease is not renewed again
        holder.release()  # must not delete the successor's lock, and says nothing more
    assert caplog.text.count("the memory-lease lock 'job' lost its lease while held") == 1
    assert "expired before it was released" not in caplog.text
    assert MemoryTokenLock("job", backend=store).acquire(False) is False
    successor.release()


def test_a_renewal_that_fails_is_logged_once_and_tried_again(caplog):
    store = MemoryBackend()
    lock = LeasedMemoryLock("job", backend=store, lease=0.6)
    lock.renewal_error = BackendError("memory-lease store at nowhere: connection refused")
    with caplog.at_level(logging.WARNING, logger="beaker_core.locks"):
        with lock:
            wait_for(lambda: lock.renewals >= 3)
            lock.renewal_error = None
            renewals = lock.renewals
            wait_for(lambda: lock.renewals > renewals)
            assert lock.held
    assert caplog.text.count("could not renew the lease of the memory-lease lock 'job'") == 1
    assert "lost its lease" not in caplog.text and "expired before" not in caplog.text


class EndlessLeasedMemoryLock(LeasedMemoryLock):
    """Renewed, but its key never expires: a renewal that came late cannot be what breaks exclusion."""

    def store_token(self, token):
        return token if self.backend.add(self.key, token) else None

    def renew_token(self, token, ttl):
        self.renewals += 1
        return self.backend.get(self.key) == token


def test_renewals_and_releases_racing_on_shared_lock_objects(caplog):
    """A renewal under way when the lock is released must neither follow the release nor report a lost lease."""
    store = MemoryBackend()
    with caplog.at_level(logging.WARNING, logger="beaker_core.locks"):
        counter, most = hammer(lambda: EndlessLeasedMemoryLock("shared", backend=store, lease=0.003, timeout=30),
                               threads=4, rounds=100)
        shared = EndlessLeasedMemoryLock("other", backend=store, lease=0.003, timeout=30)
        counter_shared, most_shared = hammer(lambda: shared, threads=4, rounds=100)
    assert (counter, most, counter_shared, most_shared) == (400, 1, 400, 1)
    assert caplog.text == ""
    assert shared not in _leases._leases


def test_the_lease_thread_is_a_daemon_shared_by_every_lock():
    store = MemoryBackend()
    first = LeasedMemoryLock("one", backend=store, lease=0.3)
    second = LeasedMemoryLock("two", backend=store, lease=0.3)
    with first, second:
        threads = [thread for thread in threading.enumerate() if thread.name == "beaker-lock-leases"]
        assert len(threads) == 1 and threads[0].daemon


def test_a_process_holding_a_lock_exits_without_waiting_for_its_lease_thread():
    script = textwrap.dedent("""
        from beaker_core.backends.memory import MemoryBackend
        from beaker_core.locks import TokenLock

        class Leased(TokenLock):
            kind = "memory-lease"
            backend_class = MemoryBackend
            def store_token(self, token):
                return token if self.backend.add("lock", token, ttl=self.lease) else None
            def renew_token(self, token, ttl):
                return self.backend.touch("lock", ttl)
            def remove_token(self, token):
                return self.backend.delete("lock")

        lock = Leased("job", backend=MemoryBackend(), lease=60)
        assert lock.acquire(False)
        print("held", flush=True)
    """)  # and returns with the lock held: only a daemon thread is left
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "held"
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_renews_none_of_its_parents_leases():
    store = MemoryBackend()
    with LeasedMemoryLock("job", backend=store, lease=0.3) as lock:
        wait_for(lambda: lock.renewals >= 1)
        child = os.fork()
        if child == 0:  # the child: no lease, no thread, and one of its own works
            code = 1
            try:
                if len(_leases) == 0 and _leases._thread is None:
                    with LeasedMemoryLock("child", backend=store, lease=0.3) as own:
                        wait_for(lambda: own.renewals >= 1)
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert lock in _leases._leases
