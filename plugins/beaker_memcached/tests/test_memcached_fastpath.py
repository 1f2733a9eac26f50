"""The fast paths on pymemcache's internals (beaker_memcached.fastpath) and their fallback to the public API: the
choice is made once and shown, and both paths give the same results (their failures: test_memcached_hung.py and
test_memcached_dead_server.py run on both)."""
import logging
import uuid

import pymemcache
import pytest
from pymemcache.client.base import Client

from beaker_core.exceptions import SerializationError, ValueTooLarge
from beaker_memcached import fastpath
from beaker_memcached.backend import MemcachedBackend


def test_this_pymemcache_has_what_the_fast_paths_need():
    assert fastpath.check() is True
    assert fastpath.enabled is True and fastpath.disabled_because == ""


def test_the_choice_is_made_once_and_logged(monkeypatch, caplog):
    monkeypatch.setattr(fastpath, "enabled", None)
    with caplog.at_level(logging.DEBUG, logger="beaker_memcached.fastpath"):
        assert fastpath.check() is True
        assert fastpath.check() is True
    assert [record.getMessage() for record in caplog.records] == [
        f"pymemcache {pymemcache.__version__}: kernel reply timeouts and the get reply parser in use"]


def test_missing_internals_turn_the_fast_paths_off(monkeypatch, caplog):
    monkeypatch.setattr(fastpath, "enabled", None)
    monkeypatch.setattr(fastpath, "disabled_because", "")
    monkeypatch.delattr(Client, "_connect")
    with caplog.at_level(logging.DEBUG, logger="beaker_memcached.fastpath"):
        assert fastpath.check() is False
    assert fastpath.disabled_because == "Client has no _connect()"
    assert "the fast paths are off (Client has no _connect()); pymemcache's public API is used" in caplog.text


def test_the_fallback_uses_pymemcache_as_it_is(monkeypatch):
    monkeypatch.setattr(fastpath, "enabled", False)
    client = fastpath.new_client(("127.0.0.1", 1), {"connect_timeout": 1.0}, io_timeout=2.5)
    assert client.timeout == 2.5 and not hasattr(client, "io_timeout")
    assert type(client).check_key is Client.check_key and type(client)._connect is Client._connect


def test_the_fast_path_sets_the_reply_timeout_in_the_kernel():
    client = fastpath.new_client(("127.0.0.1", 1), {"connect_timeout": 1.0}, io_timeout=2.5)
    assert client.timeout is None and client.io_timeout == 2.5
    probe = fastpath.new_client(("127.0.0.1", 1), {"connect_timeout": 0.25, "timeout": 0.25})
    assert probe.timeout == 0.25 and probe.io_timeout is None


def exercise(backend):
    """Every operation of the contract, and its result."""
    results = []
    record = results.append
    record(backend.get("missing"))
    record(backend.set("a", b"1", 60))
    record(backend.get("a"))
    record(backend.get_many(["a", "missing", "a"]))
    record(backend.get_many([f"many-{index}" for index in range(250)]))  # more than one request carries
    record(backend.set_many({"b": b"2", "c": b"\x00\xff\r\nEND\r\n" * 1000, "key with spaces": b"s"}, 60))
    record(backend.get_many(["b", "c", "key with spaces"]))
    record(backend.add("a", b"x"))
    record(backend.add("d", b"4", 60))
    record(backend.incr("n"))
    record(backend.incr("n", 41))
    record(backend.incr("n", -50))
    record(backend.touch("a", 120))
    record(backend.update("a", lambda current: current + b"!"))
    record(backend.get("a"))
    record(backend.get_record("session"))
    record(backend.merge_record("session", {"x": b"1", "y": b"2"}, [], 60))
    record(backend.merge_record("session", {"z": b"3"}, ["x"], 60))
    record(backend.get_record("session"))
    record(backend.merge_record("other", {"x": b"1"}, [], 60, create=False))
    record(backend.delete("a"))
    record(backend.delete("a"))
    backend.delete_many(["b", "c"])
    record(backend.get_many(["b", "c"]))
    with pytest.raises(SerializationError) as raised:
        backend.get_record("d")
    record(str(raised.value))
    with pytest.raises(ValueTooLarge):
        backend.set("huge", b"x" * (2 * 1024 * 1024))
    return results


def test_both_paths_give_the_same_results(memcached_server, monkeypatch):
    fast = MemcachedBackend(url=memcached_server.url, prefix=f"fast-{uuid.uuid4().hex[:8]}:")
    expected = exercise(fast)
    fast.close()
    monkeypatch.setattr(fastpath, "enabled", False)
    fallback = MemcachedBackend(url=memcached_server.url, prefix=f"fall-{uuid.uuid4().hex[:8]}:")
    assert exercise(fallback) == expected
    fallback.close()
