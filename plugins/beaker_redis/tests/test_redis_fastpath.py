"""The fast paths on redis-py's internals (beaker_redis.fastpath) and their fallback to the public API: the choice is
made once and shown, and both paths give the same results (their failures: test_redis_hung.py runs on both)."""
import logging
import uuid

import pytest
import redis

from beaker_core.exceptions import BackendError
from beaker_redis import fastpath
from beaker_redis.backend import RedisBackend


@pytest.fixture
def fallback(monkeypatch):
    monkeypatch.setattr(fastpath, "enabled", False)


def test_this_redis_py_has_what_the_fast_paths_need():
    assert fastpath.check() is True
    assert fastpath.enabled is True and fastpath.disabled_because == ""


def test_the_choice_is_made_once_and_logged(monkeypatch, caplog):
    monkeypatch.setattr(fastpath, "enabled", None)
    with caplog.at_level(logging.DEBUG, logger="beaker_redis.fastpath"):
        assert fastpath.check() is True
        assert fastpath.check() is True
    assert [record.getMessage() for record in caplog.records] == [
        f"redis-py {redis.__version__}: kernel reply timeouts and direct commands in use"]


def test_missing_internals_turn_the_fast_paths_off(monkeypatch, caplog):
    from redis.connection import Connection
    monkeypatch.setattr(fastpath, "enabled", None)
    monkeypatch.setattr(fastpath, "disabled_because", "")
    monkeypatch.setattr(Connection, "send_packed_command", None)
    with caplog.at_level(logging.DEBUG, logger="beaker_redis.fastpath"):
        assert fastpath.check() is False
    assert fastpath.disabled_because == "Connection has no send_packed_command()"
    assert "the fast paths are off (Connection has no send_packed_command()); redis-py's public API is used" \
        in caplog.text


def test_the_fallback_uses_redis_py_as_it_is(redis_server, fallback):
    backend = RedisBackend(url=redis_server.url, socket_timeout=3, prefix=f"fb-{uuid.uuid4().hex}:")
    pool = backend.client.connection_pool
    assert pool.connection_class is redis.connection.Connection
    assert pool.connection_kwargs["socket_timeout"] == 3
    assert fastpath.direct_commands(backend.client) == backend.client.execute_command
    backend.close()


def test_the_fast_path_uses_kernel_timeouts_and_direct_commands(redis_server):
    backend = RedisBackend(url=redis_server.url, socket_timeout=3, prefix=f"fp-{uuid.uuid4().hex}:")
    pool = backend.client.connection_pool
    assert pool.connection_class.io_timeout == 3 and pool.connection_kwargs["socket_timeout"] is None
    assert fastpath.plain_connection_class(pool.connection_class) == (redis.connection.Connection, 3)
    assert isinstance(fastpath.direct_commands(backend.client), fastpath.DirectCommands)
    backend.close()


def exercise(backend):
    """Every operation of the contract, and its result."""
    results = []
    record = results.append
    record(backend.get("missing"))
    record(backend.set("a", b"1", 60))
    record(backend.get("a"))
    record(backend.get_many(["a", "missing", "a"]))
    record(backend.set_many({"b": b"2", "c": b"\x00\xff" * 1000}, 60))
    record(backend.get_many(["b", "c"]))
    record(backend.add("a", b"x"))
    record(backend.add("d", b"4", 60))
    record(backend.incr("n"))
    record(backend.incr("n", 41))
    record(backend.touch("a", 120))
    record(backend.touch("a", None))
    record(backend.ttl("a"))
    record(backend.update("a", lambda current: current + b"!"))
    record(backend.get("a"))
    record(backend.get_record("session"))
    record(backend.merge_record("session", {"x": b"1", "y": b"2"}, [], 60))
    record(backend.merge_record("session", {"z": b"3"}, ["x"], 60))
    record(backend.get_record("session"))
    record(backend.merge_record("other", {"x": b"1"}, [], 60, create=False))
    record(sorted(backend.keys()))
    record(backend.delete("a"))
    record(backend.delete("a"))
    backend.set("text", b"not a hash")
    with pytest.raises(BackendError) as raised:
        backend.get_record("text")
    record(str(raised.value).split(": ", 1)[1])
    record(backend.clear())
    return results


def test_both_paths_give_the_same_results(redis_server, monkeypatch):
    fast = RedisBackend(url=redis_server.url, prefix="fast-path:")
    expected = exercise(fast)
    fast.close()
    monkeypatch.setattr(fastpath, "enabled", False)
    fallback = RedisBackend(url=redis_server.url, prefix="fallback:", socket_timeout=4)  # a client of its own
    assert fastpath.direct_commands(fallback.client) == fallback.client.execute_command
    assert exercise(fallback) == expected
    fallback.close()
