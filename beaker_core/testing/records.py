"""The optional atomic records capability (``atomic_records = True``): ``get_record`` and ``merge_record``.

Server-side sessions save one request's changes with a single ``merge_record`` call, without a lock, so the call
must be atomic: concurrent merges of different fields all survive. Skipped, with the reason, for a backend that
does not declare the capability.
"""
from __future__ import annotations

import threading

import pytest

from .backend import ConformanceBase

ODD_FIELDS = {"with space": b"1", "ключ 🔑": b"2", "new\nline": b"3", "a:b": b"4", "": b"5"}


class AtomicRecordTests(ConformanceBase):
    @pytest.fixture
    def record_store(self, store):
        if not store.atomic_records:
            pytest.skip(f"the {self.backend} backend does not declare atomic_records")
        return store

    def test_record_missing_is_none_and_not_created_without_create(self, record_store, prefix):
        key = prefix + "record"
        assert record_store.get_record(key) is None
        assert record_store.merge_record(key, {"a": b"1"}, [], None, create=False) is False
        assert record_store.get_record(key) is None

    def test_record_merge_sets_and_deletes_fields(self, record_store, prefix):
        key = prefix + "record"
        assert record_store.merge_record(key, {"a": b"1", "b": b"2"}, [], None) is True
        assert record_store.get_record(key) == {"a": b"1", "b": b"2"}
        assert record_store.merge_record(key, {"b": b"3", "c": bytes(range(256))}, ["a", "never-set"], None,
                                         create=False) is True
        assert record_store.get_record(key) == {"b": b"3", "c": bytes(range(256))}

    def test_record_odd_field_names_and_empty_values(self, record_store, prefix):
        key = prefix + "record"
        record_store.merge_record(key, {**ODD_FIELDS, "empty": b""}, [], None)
        assert record_store.get_record(key) == {**ODD_FIELDS, "empty": b""}

    def test_record_ttl_touch_and_delete(self, record_store, prefix):
        ttl = self.short_ttl
        expiring, persisted, touched = prefix + "expiring", prefix + "persisted", prefix + "touched"
        record_store.merge_record(expiring, {"a": b"1"}, [], ttl)
        record_store.merge_record(persisted, {"a": b"1"}, [], ttl)
        record_store.merge_record(persisted, {"b": b"2"}, [], None)  # a merge without ttl removes the expiry
        record_store.merge_record(touched, {"a": b"1"}, [], ttl)
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
        record_store.merge_record(key, {"seed": b"0"}, [], 3600)
        start = threading.Barrier(threads_count)
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                start.wait()
                for round_number in range(rounds):
                    record_store.merge_record(key, {f"field{index}": str(round_number).encode("ascii")},
                                              [f"gone{index}"], 3600, create=False)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(index,)) for index in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        expected = {f"field{index}": str(rounds - 1).encode("ascii") for index in range(threads_count)}
        assert record_store.get_record(key) == {"seed": b"0", **expected}
