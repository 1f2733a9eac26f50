"""The redis lock is a lease: a killed holder frees it within seconds, a live one keeps it (real redis-server,
processes killed with SIGKILL)."""
import logging
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import redis

from beaker_core.locks import DEFAULT_LEASE, _leases
from beaker_core.testing.locks import creator_and_waiters
from beaker_redis.backend import RedisBackend
from beaker_redis.lock import RedisLock


@pytest.fixture
def prefix():
    return f"bklease-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def raw(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def store(redis_server, prefix):
    backend = RedisBackend(url=redis_server.url, prefix=prefix)
    yield backend
    backend.close()


@pytest.mark.slow
def test_killed_creator_with_eight_waiters_one_takes_over_within_the_default_lease(tmp_path, redis_server, prefix):
    """Out of the box (lock_expire 60, lock_timeout 30): the waiters no longer wait 30 seconds and then all create."""
    outcome = creator_and_waiters(tmp_path, {"type": "redis", "url": redis_server.url, "prefix": prefix}, waiters=8)
    assert outcome.runs == 1, outcome
    assert len(set(outcome.values)) == 1 and len(outcome.values) == 8, outcome
    assert outcome.elapsed < DEFAULT_LEASE + 4, outcome


@pytest.mark.slow
def test_killed_creator_with_a_short_lease(tmp_path, redis_server, prefix):
    outcome = creator_and_waiters(tmp_path, {"type": "redis", "url": redis_server.url, "prefix": prefix}, waiters=8,
                                  lease=2.0)
    assert outcome.runs == 1, outcome
    assert 1.0 < outcome.elapsed < 6, outcome  # the dead creator's lease ran out first


@pytest.mark.slow
def test_a_creator_working_longer_than_its_lease_keeps_the_lock(tmp_path, redis_server, prefix):
    outcome = creator_and_waiters(tmp_path, {"type": "redis", "url": redis_server.url, "prefix": prefix}, waiters=4,
                                  kill=False, holder_seconds=3.5, lease=1.0)
    assert outcome.runs == 0, outcome
    assert outcome.values == ["made by holder"] * 4


def test_the_key_lives_one_lease_and_is_renewed_while_held(store, raw, prefix):
    lock = RedisLock("job", backend=store, lease=0.6, expire=30)
    key = prefix + "beaker-lock:job"
    with lock:
        deadline = time.monotonic() + 2.0  # three leases
        while time.monotonic() < deadline:
            assert 0 < raw.pttl(key) <= 600
            assert RedisLock("job", backend=store).acquire(False) is False
            time.sleep(0.05)
    assert raw.exists(key) == 0


def test_release_after_a_lost_lease_leaves_the_next_holder_alone(store, raw, prefix, caplog):
    holder = RedisLock("job", backend=store, lease=0.3)
    key = prefix + "beaker-lock:job"
    assert holder.acquire(False)
    raw.delete(key)  # as a restarted server would have lost it
    raw.set(key, b"next holder's token", px=60000)  # another holder took the lock meanwhile
    with caplog.at_level(logging.WARNING):
        deadline = time.monotonic() + 5
        while "lost its lease" not in caplog.text:
            assert time.monotonic() < deadline, "the lost lease was never noticed"
            time.sleep(0.02)
        holder.release()
    assert "the redis lock 'job' lost its lease while held" in caplog.text
    assert raw.get(key) == b"next holder's token"
    assert raw.pttl(key) > 55000  # neither renewed to the holder's lease nor deleted


def test_release_stops_the_renewals(store, raw, prefix):
    lock = RedisLock("job", backend=store, lease=0.15)
    renewals = []
    renew = lock.renew_token
    lock.renew_token = lambda token, ttl: renewals.append(ttl) or renew(token, ttl)
    with lock:
        time.sleep(0.5)
    assert len(renewals) >= 2 and all(0 < ttl <= 0.15 for ttl in renewals)
    assert lock not in _leases._leases
    count = len(renewals)
    time.sleep(0.5)
    assert len(renewals) == count
    assert raw.exists(prefix + "beaker-lock:job") == 0


HOLD = textwrap.dedent("""
    import sys, time
    from beaker_redis.lock import RedisLock
    url, name, wait = sys.argv[1], sys.argv[2], sys.argv[3] == "wait"
    lock = RedisLock(name, url=url, lease=1)
    assert lock.acquire(False)
    print("held", flush=True)
    if wait:
        time.sleep(600)
""")  # without "wait" the script ends holding the lock: only the daemon lease thread is left


def test_a_process_holding_the_lock_exits_and_its_lock_frees_within_the_lease(redis_server, prefix):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HOLD, redis_server.url, prefix, "exit"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "held", done.stderr
    assert time.monotonic() - started < 15  # the lease thread did not keep the process alive
    contender = RedisLock(prefix, url=redis_server.url, timeout=5)
    with contender:
        pass
    assert time.monotonic() - started < 20


def test_a_killed_holder_frees_the_lock_within_its_lease(redis_server, prefix):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, redis_server.url, prefix, "wait"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(2.5)  # two leases: still held, renewed by the live holder
        assert RedisLock(prefix, url=redis_server.url).acquire(False) is False
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed = time.monotonic()
        contender = RedisLock(prefix, url=redis_server.url, timeout=10)
        with contender:
            assert time.monotonic() - killed < 1.5
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
