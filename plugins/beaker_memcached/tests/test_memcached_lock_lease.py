"""The memcached lock is a lease: a killed holder frees it within seconds, a live one keeps it (real memcached,
processes killed with SIGKILL). memcached expires items in whole seconds, so the leases here are of 2 seconds."""
import logging
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from beaker_core.locks import DEFAULT_LEASE, _leases
from beaker_core.testing.locks import creator_and_waiters
from beaker_memcached.backend import MemcachedBackend
from beaker_memcached.lock import MemcachedLock


@pytest.fixture
def prefix():
    return f"bklease-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def store(memcached_server, prefix):
    backend = MemcachedBackend(url=memcached_server.url, prefix=prefix)
    yield backend
    backend.close()


def test_the_lease_is_whole_seconds_and_at_least_two():
    store = MemcachedBackend(url="127.0.0.1:1")
    assert MemcachedLock("job", backend=store).lease == DEFAULT_LEASE
    assert MemcachedLock("job", backend=store, lease=0.5).lease == 2.0
    assert MemcachedLock("job", backend=store, lease=0.5, expire=1).lease == 1.0  # never longer than expire
    assert MemcachedLock("job", backend=store, lease=2.5)._lease == 3


@pytest.mark.slow
def test_killed_creator_with_eight_waiters_one_takes_over_within_the_default_lease(tmp_path, memcached_server,
                                                                                   prefix):
    """Out of the box (lock_expire 60, lock_timeout 30): the waiters no longer wait 30 seconds and then all create."""
    outcome = creator_and_waiters(tmp_path, {"type": "memcached", "url": memcached_server.url, "prefix": prefix},
                                  waiters=8)
    assert outcome.runs == 1, outcome
    assert len(set(outcome.values)) == 1 and len(outcome.values) == 8, outcome
    assert outcome.elapsed < DEFAULT_LEASE + 4, outcome


@pytest.mark.slow
def test_a_creator_working_longer_than_its_lease_keeps_the_lock(tmp_path, memcached_server, prefix):
    outcome = creator_and_waiters(tmp_path, {"type": "memcached", "url": memcached_server.url, "prefix": prefix},
                                  waiters=4, kill=False, holder_seconds=6, lease=2)
    assert outcome.runs == 0, outcome
    assert outcome.values == ["made by holder"] * 4


def test_release_after_a_lost_lease_leaves_the_next_holder_alone(store, caplog):
    holder = MemcachedLock("job", backend=store, lease=2)
    raw = holder._node.client()
    assert holder.acquire(False)
    raw.delete(holder._mapped, noreply=False)  # as a restarted server would have lost it
    raw.set(holder._mapped, b"next holder's token", 60, noreply=False)  # another holder took the lock meanwhile
    with caplog.at_level(logging.WARNING):
        deadline = time.monotonic() + 5
        while "lost its lease" not in caplog.text:
            assert time.monotonic() < deadline, "the lost lease was never noticed"
            time.sleep(0.02)
        holder.release()
    assert "the memcached lock 'job' lost its lease while held" in caplog.text
    assert raw.get(holder._mapped) == b"next holder's token"
    time.sleep(2.5)  # longer than the holder's lease: a renewal to it, or a release, would have ended the item
    assert raw.get(holder._mapped) == b"next holder's token"


def test_a_holder_keeps_the_lock_across_leases_and_release_stops_the_renewals(store):
    lock = MemcachedLock("job", backend=store, lease=2)
    renewals = []
    renew = lock.renew_token
    lock.renew_token = lambda token, ttl: renewals.append(ttl) or renew(token, ttl)
    with lock:
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            assert MemcachedLock("job", backend=store).acquire(False) is False
            time.sleep(0.1)
    assert len(renewals) >= 5
    assert lock not in _leases._leases
    count = len(renewals)
    time.sleep(1)
    assert len(renewals) == count
    with MemcachedLock("job", backend=store, timeout=0):
        pass


HOLD = textwrap.dedent("""
    import sys, time
    from beaker_memcached.lock import MemcachedLock
    url, name, wait = sys.argv[1], sys.argv[2], sys.argv[3] == "wait"
    lock = MemcachedLock(name, url=url, lease=2)
    assert lock.acquire(False)
    print("held", flush=True)
    if wait:
        time.sleep(600)
""")  # without "wait" the script ends holding the lock: only the daemon lease thread is left


def test_a_process_holding_the_lock_exits_and_its_lock_frees_within_the_lease(memcached_server, prefix):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HOLD, memcached_server.url, prefix, "exit"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "held", done.stderr
    assert time.monotonic() - started < 15  # the lease thread did not keep the process alive
    with MemcachedLock(prefix, url=memcached_server.url, timeout=5):
        pass


def test_a_killed_holder_frees_the_lock_within_its_lease(memcached_server, prefix):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, memcached_server.url, prefix, "wait"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(4.5)  # more than two leases: still held, renewed by the live holder
        assert MemcachedLock(prefix, url=memcached_server.url).acquire(False) is False
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed = time.monotonic()
        with MemcachedLock(prefix, url=memcached_server.url, timeout=10):
            assert time.monotonic() - killed < 3
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
