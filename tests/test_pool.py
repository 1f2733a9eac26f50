"""InstancePool: one instance per key, counted or kept, closed when its last user lets go."""
from __future__ import annotations

import threading
import time

from beaker_core.pool import InstancePool, freeze
from beaker_core.testing.concurrency import run_in_threads


class Client:
    def __init__(self, name: str):
        self.name = name
        self.closed = 0


def closing_pool():
    closed = []

    def close(client):
        client.closed += 1
        closed.append(client.name)
    return InstancePool(close=close), closed


def test_checkout_shares_one_instance_and_the_last_checkin_closes_it():
    pool, closed = closing_pool()
    first = pool.checkout("a", lambda: Client("a"))
    second = pool.checkout("a", lambda: Client("never made"))
    other = pool.checkout("b", lambda: Client("b"))
    assert first is second and other is not first and len(pool) == 2 and "a" in pool
    pool.checkin("a")
    assert closed == [] and "a" in pool
    pool.checkin("a")
    assert closed == ["a"] and first.closed == 1 and "a" not in pool and len(pool) == 1
    pool.checkin("a")  # a key the pool no longer holds: nothing happens
    assert closed == ["a"]
    again = pool.checkout("a", lambda: Client("a again"))
    assert again is not first and again.name == "a again"


def test_get_keeps_the_instance_until_the_pool_closes():
    pool, closed = closing_pool()
    kept = pool.get("a", lambda: Client("a"))
    assert pool.get("a", lambda: Client("never made")) is kept
    assert pool.checkout("a", lambda: Client("never made")) is kept
    pool.checkin("a")
    assert closed == [] and "a" in pool  # kept: a checkin does not close it
    counted = pool.checkout("b", lambda: Client("b"))
    assert pool.get("b", lambda: Client("never made")) is counted
    pool.checkin("b")
    assert closed == [] and "b" in pool  # kept from the get on
    pool.close()
    assert sorted(closed) == ["a", "b"] and len(pool) == 0
    assert pool.get("a", lambda: Client("a, after close")).name == "a, after close"


def test_a_pool_without_close_only_forgets():
    pool = InstancePool()
    lock = pool.checkout("name", threading.Lock)
    assert pool.checkout("name", threading.Lock) is lock
    pool.checkin("name")
    pool.checkin("name")
    assert len(pool) == 0
    pool.get("kept", threading.Lock)
    pool.close()
    assert len(pool) == 0


def test_threads_asking_for_a_new_key_at_once_get_one_instance():
    pool, closed = closing_pool()
    made = []

    def create():
        made.append(1)
        time.sleep(0.01)  # the others arrive meanwhile
        return Client("shared")

    results = run_in_threads(lambda index: [pool.checkout("key", create) for _ in range(50)], 8)
    instances = {id(client) for result in results for client in result}
    assert len(made) == 1 and len(instances) == 1
    for _ in range(8 * 50 - 1):
        pool.checkin("key")
    assert closed == []
    pool.checkin("key")
    assert closed == ["shared"]


def test_create_may_use_the_same_pool():
    pool, _ = closing_pool()
    outer = pool.get("outer", lambda: (pool.get("inner", lambda: Client("inner")), Client("outer")))
    assert outer[0] is pool.get("inner", lambda: Client("never made")) and len(pool) == 2


def test_freeze_makes_equal_options_one_key_and_keeps_unhashable_objects_apart():
    assert freeze({"b": [1, {"c": 2}], "a": "x"}) == freeze({"a": "x", "b": (1, {"c": 2})})
    assert hash(freeze({"b": [1, {"c": 2}], "a": {3}}))
    assert freeze({"a": 1}) != freeze({"a": "1"})
    assert freeze({"client": bytearray()}) != freeze({"client": bytearray()})  # unhashable: by identity
    assert freeze([[], {1}]) == ((), (1,))  # lists and sets become tuples, by value
