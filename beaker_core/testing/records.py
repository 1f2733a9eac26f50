"""The optional capabilities of the backend contract that sessions use to save without a lock.

* atomic records (``atomic_records = True``): ``get_record`` and ``merge_record``; concurrent merges of different
  fields all survive;
* atomic update (``atomic_update = True``): ``update(key, change, ttl)``; concurrent read-change-writes, from
  threads and (for a shared backend) from processes, lose nothing.

Each part is generated only for a backend that declares its capability (``requires_capability``), and the
cross-process test only for a shared backend: for any other backend these tests do not exist, rather than being
skipped.
"""
from __future__ import annotations


import pytest

from . import _workers
from .backend import ConformanceBase, requires
from .concurrency import run_in_threads

ODD_FIELDS = {"with space": b"1", "ключ 🔑": b"2", "new\nline": b"3", "a:b": b"4", "": b"5"}


class AtomicRecordTests(ConformanceBase):
    """``get_record`` and ``merge_record``, for backends with ``atomic_records = True``."""

    requires_capability = "atomic_records"

    @pytest.fixture
    def record_store(self, store):
        """The backend under test (whose class declares ``atomic_records``, or these tests would not exist)."""
        return store

    def test_record_missing_is_none_and_not_created_without_create(self, record_store, prefix):
        key = prefix + "record"
        assert record_store.get_record(key) is None
        assert record_store.merge_record(key, {"a": b"1"}, [], None, create=False) is False
        assert record_store.get_record(key) is None

    def test_record_merge_sets_and_deletes_fields(self, record_store, prefix):
        key = prefix + "record"
        assert record_store.merge_record(key, {"a": b"1", "b": b"2"}, [], None, create=True) is True
        assert record_store.get_record(key) == {"a": b"1", "b": b"2"}
        assert record_store.merge_record(key, {"b": b"3", "c": bytes(range(256))}, ["a", "never-set"], None,
                                         create=False) is True
        assert record_store.get_record(key) == {"b": b"3", "c": bytes(range(256))}

    def test_record_odd_field_names_and_empty_values(self, record_store, prefix):
        key = prefix + "record"
        record_store.merge_record(key, {**ODD_FIELDS, "empty": b""}, [], None, create=True)
        assert record_store.get_record(key) == {**ODD_FIELDS, "empty": b""}

    def test_record_ttl_touch_and_delete(self, record_store, prefix):
        ttl = self.short_ttl
        expiring, persisted, touched = prefix + "expiring", prefix + "persisted", prefix + "touched"
        record_store.merge_record(expiring, {"a": b"1"}, [], ttl, create=True)
        record_store.merge_record(persisted, {"a": b"1"}, [], ttl, create=True)
        record_store.merge_record(persisted, {"b": b"2"}, [], None, create=True)  # no ttl: no expiry
        record_store.merge_record(touched, {"a": b"1"}, [], ttl, create=True)
        assert record_store.touch(touched, 3600) is True
        assert record_store.get_record(expiring) == {"a": b"1"}
        self.wait_past(ttl)
        assert record_store.get_record(expiring) is None
        assert record_store.merge_record(expiring, {"a": b"2"}, [], None, create=False) is False
        assert record_store.get_record(persisted) == {"a": b"1", "b": b"2"}
        assert record_store.get_record(touched) == {"a": b"1"}
        assert record_store.delete(touched) is True
        assert record_store.get_record(touched) is None

    def test_record_concurrent_merges_keep_every_field(self, record_store, prefix):
        key = prefix + "record"
        threads_count, rounds = 8, 10
        record_store.merge_record(key, {"seed": b"0"}, [], 3600, create=True)

        def work(index: int) -> None:
            for round_number in range(rounds):
                record_store.merge_record(key, {f"field{index}": str(round_number).encode("ascii")},
                                          [f"gone{index}"], 3600, create=False)

        run_in_threads(work, threads_count)
        expected = {f"field{index}": str(rounds - 1).encode("ascii") for index in range(threads_count)}
        assert record_store.get_record(key) == {"seed": b"0", **expected}


def _increment(current):
    return str(int(current or 0) + 1).encode("ascii")


class AtomicUpdateTests(ConformanceBase):
    """``update(key, change, ttl)``, for backends with ``atomic_update = True``."""

    requires_capability = "atomic_update"

    @pytest.fixture
    def update_store(self, store):
        """The backend under test (whose class declares ``atomic_update``, or these tests would not exist)."""
        return store

    def test_update_creates_changes_and_leaves_alone(self, update_store, prefix):
        key = prefix + "k"
        seen: list = []

        def append(suffix: bytes):
            def change(current):
                seen.append(current)
                return (current or b"") + suffix
            return change

        assert update_store.update(key, append(b"a"), None) is True
        assert update_store.update(key, append(b"b"), None) is True
        assert update_store.get(key) == b"ab"
        assert seen[0] is None and seen[-1] == b"a"
        assert update_store.update(key, lambda current: None, None) is False
        assert update_store.get(key) == b"ab"
        assert update_store.update(prefix + "missing", lambda current: None, None) is False
        assert update_store.get(prefix + "missing") is None

    def test_update_ttl(self, update_store, prefix):
        ttl = self.short_ttl
        update_store.update(prefix + "expiring", lambda current: b"e", ttl)
        update_store.set(prefix + "persisted", b"p", ttl=ttl)
        update_store.update(prefix + "persisted", lambda current: current + b"!", None)
        assert update_store.get(prefix + "expiring") == b"e"
        self.wait_past(ttl)
        assert update_store.get(prefix + "expiring") is None
        assert update_store.get(prefix + "persisted") == b"p!"

    def test_concurrent_updates_from_threads_lose_nothing(self, update_store, prefix):
        key = prefix + "counter"
        threads_count, rounds = 8, 20

        def work(index: int) -> None:
            for _ in range(rounds):
                update_store.update(key, _increment, 3600)

        run_in_threads(work, threads_count)
        assert int(update_store.get(key)) == threads_count * rounds

    @pytest.mark.slow
    @requires("shared")
    def test_concurrent_updates_from_processes_lose_nothing(self, update_store, backend_options, prefix):
        key, rounds = prefix + "counter", 20
        args = (self.backend, backend_options, key, rounds)
        _workers.run_in_processes(_workers.update_counter, [args] * self.processes, synchronized=True)
        assert int(update_store.get(key)) == self.processes * rounds
