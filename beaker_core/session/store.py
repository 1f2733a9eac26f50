"""Where server-side sessions live: one record per session under the key ``session:<id>``.

A record is the session's data plus two times: ``created`` and ``accessed`` (when it was last written). How it is
kept depends on what the backend can do, and each way keeps the promise that two concurrent requests changing
different keys of one session both keep their change:

* :class:`ObjectStore`, for backends that keep Python objects (memory): the record is a tuple
  ``(created, accessed, data)`` that is never mutated once stored. Loading copies the data, deep-copying mutable
  values, so a request never sees another request's uncommitted changes, and one never changes the store by
  mutating a value it read.
* :class:`BlobStore`, for every other backend: the record is serialized as a whole. Saving a session that already
  existed takes the session's lock, reads the record again, applies only the keys this request set or deleted, and
  writes it: one read and one write more than nothing, and no lost update. A session created by this request has an
  id nobody else knows, so it is written without lock or re-read. On a backend with an atomic update
  (``atomic_update = True``) the re-read, merge and write are one ``update`` call, under the backend's own
  per-key exclusion, without the session lock.
* :class:`RecordStore`, for backends with atomic records (``atomic_records = True``, see
  :mod:`beaker_core.backends`): each key of the session is a field of the record, serialized on its own, and a save
  is one ``merge_record`` call that sets and deletes exactly this request's fields: no lock, no re-read.

A :class:`BlobStore` load also returns what it read, ``seen``: the stored bytes and the data decoded from them. The
session passes it back to ``update``, and when the bytes read again at save time are the same bytes, the merge starts
from the data decoded at load instead of decoding them again: equal bytes decode to equal data, so the result is the
same, and nothing is lost as the comparison runs where the re-read did (under the lock or inside the atomic update).
This holds only while the data decoded at load is as it was decoded: the merge copies it, the session copies it into
its own dict, and a value the request may have changed in place (a list, a dict, anything not immutable) and does
not write again sends the merge back to decoding the bytes.

A record that vanished between load and save (the session expired, or another request deleted or invalidated it)
is not brought back: the save is dropped, as the session it belonged to is over.
"""
from __future__ import annotations

import copy
import datetime
import decimal
import json
import uuid
from typing import Any, Iterable

from ..exceptions import SerializationError

KEY_PREFIX = "session:"
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, tuple, frozenset, complex})


def _own(value: Any) -> Any:
    """A copy of ``value`` that shares no mutable part with it (immutable scalars are returned as they are)."""
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


#: a loaded record: ``(created, accessed, data, seen)``; ``seen`` is None where the store has nothing to hand back
#: at save (see the module docstring)
Record = tuple

# the types of the values a decoded record holds that no request can change in place
_UNCHANGEABLE = frozenset({str, int, float, bool, type(None), bytes, datetime.datetime, datetime.date, datetime.time,
                           datetime.timedelta, uuid.UUID, decimal.Decimal})


def _check_record(value: Any) -> tuple[float, float, dict]:
    if (not isinstance(value, dict) or not isinstance(value.get("d"), dict)
            or not isinstance(value.get("c"), (int, float)) or not isinstance(value.get("a"), (int, float))):
        raise SerializationError("stored session record has an unexpected shape")
    return float(value["c"]), float(value["a"]), value["d"]


class BlobStore:
    """The whole record serialized as one value (see the module docstring)."""

    def __init__(self, manager: Any):
        self.manager = manager
        self.backend = manager.backend
        self.serializer = manager.serializer

    def _decode(self, raw: bytes) -> tuple[float, float, dict]:
        try:
            value = self.serializer.loads(raw)
        except SerializationError:
            raise
        except Exception as exc:  # a custom serializer may raise anything on foreign data
            raise SerializationError(f"stored session record cannot be read: {exc}") from exc
        return _check_record(value)

    def _encode(self, created: float, accessed: float, data: dict) -> bytes:
        return self.serializer.dumps({"c": created, "a": accessed, "d": data})

    def load(self, session_id: str) -> Record | None:
        raw = self.backend.get(KEY_PREFIX + session_id)
        if raw is None:
            return None
        created, accessed, data = self._decode(raw)
        return created, accessed, data, (raw, data)

    def create(self, session_id: str, created: float, now: float, data: dict, ttl: float | None) -> None:
        self.backend.set(KEY_PREFIX + session_id, self._encode(created, now, data), ttl)

    def update(self, session_id: str, created: float, now: float, set_items: dict, deleted: Iterable,
               ttl: float | None, held_lock: Any = None, seen: Any = None) -> bool:
        """Apply one request's changes to the stored record; False if the record is gone. ``seen`` is the fourth
        item of what :meth:`load` returned, or None."""
        if held_lock is not None:
            return self._merge(KEY_PREFIX + session_id, created, now, set_items, deleted, ttl, seen)
        if self.manager.atomic_update:
            def change(raw: Any) -> bytes | None:
                if raw is None:
                    return None
                return self._encode(created, now, self._merged(raw, seen, set_items, deleted))
            return bool(self.backend.update(KEY_PREFIX + session_id, change, ttl))
        with self.manager.lock(session_id):
            return self._merge(KEY_PREFIX + session_id, created, now, set_items, deleted, ttl, seen)

    def _merged(self, raw: Any, seen: Any, set_items: dict, deleted: Iterable) -> dict:
        """The stored data ``raw`` with one request's changes applied (a new dict)."""
        if seen is not None and raw == seen[0]:
            loaded = seen[1]
            unchangeable = _UNCHANGEABLE
            for name, value in loaded.items():
                if type(value) not in unchangeable and name not in set_items:
                    break  # may have been changed in place since it was decoded
            else:
                data = dict(loaded)
                for name in deleted:
                    data.pop(name, None)
                data.update(set_items)
                return data
        try:
            data = self._decode(raw)[2]
        except SerializationError:
            if not self.manager.invalidate_corrupt:
                raise
            data = {}
        for name in deleted:
            data.pop(name, None)
        data.update(set_items)
        return data

    def _merge(self, key: str, created: float, now: float, set_items: dict, deleted: Iterable,
               ttl: float | None, seen: Any = None) -> bool:
        raw = self.backend.get(key)
        if raw is None:
            return False
        self.backend.set(key, self._encode(created, now, self._merged(raw, seen, set_items, deleted)), ttl)
        return True

    def touch(self, session_id: str, ttl: float | None) -> None:
        self.backend.touch(KEY_PREFIX + session_id, ttl)

    def delete(self, session_id: str) -> None:
        self.backend.delete(KEY_PREFIX + session_id)


class ObjectStore(BlobStore):
    """Records kept as Python objects, copied on the way in and out."""

    def load(self, session_id: str) -> Record | None:
        stored = self.backend.get(KEY_PREFIX + session_id)
        if stored is None:
            return None
        if type(stored) is not tuple or len(stored) != 3:
            raise SerializationError("stored session record has an unexpected shape")
        created, accessed, data = stored
        immutable = _IMMUTABLE
        return created, accessed, {name: value if type(value) in immutable else copy.deepcopy(value)
                                   for name, value in data.items()}, None

    def create(self, session_id: str, created: float, now: float, data: dict, ttl: float | None) -> None:
        owned = {name: _own(value) for name, value in data.items()}
        self.backend.set(KEY_PREFIX + session_id, (created, now, owned), ttl)

    def update(self, session_id: str, created: float, now: float, set_items: dict, deleted: Iterable,
               ttl: float | None, held_lock: Any = None, seen: Any = None) -> bool:
        if held_lock is not None:
            return self._merge(KEY_PREFIX + session_id, created, now, set_items, deleted, ttl)
        with self.manager.lock(session_id):  # an in-process lock: the data lives in this process
            return self._merge(KEY_PREFIX + session_id, created, now, set_items, deleted, ttl)

    def _merge(self, key: str, created: float, now: float, set_items: dict, deleted: Iterable,
               ttl: float | None, seen: Any = None) -> bool:
        stored = self.backend.get(key)
        if stored is None:
            return False
        data = dict(stored[2]) if type(stored) is tuple and len(stored) == 3 else {}
        for name in deleted:
            data.pop(name, None)
        immutable = _IMMUTABLE
        for name, value in set_items.items():
            data[name] = value if type(value) in immutable else copy.deepcopy(value)
        self.backend.set(key, (created, now, data), ttl)
        return True


def _field(name: Any) -> str:
    """A record field for a session key: ``k:<key>`` for a str key, ``j:<tagged json>`` for any other."""
    if type(name) is str:
        return "k:" + name
    from ..serializers import json_serializer
    return "j:" + json_serializer.dumps(name).decode("utf-8")


def _unfield(field: str) -> Any:
    if field.startswith("k:"):
        return field[2:]
    from ..serializers import json_serializer
    return json_serializer.loads(field[2:].encode("utf-8"))


class RecordStore(BlobStore):
    """One field per session key on a backend that merges fields atomically (see the module docstring)."""

    def load(self, session_id: str) -> Record | None:
        fields = self.backend.get_record(KEY_PREFIX + session_id)
        if not fields:
            return None
        loads = self.serializer.loads
        try:
            created = loads(fields["c"])
            accessed = loads(fields["a"])
            data = {_unfield(field): loads(raw) for field, raw in fields.items() if field[:2] in ("k:", "j:")}
        except SerializationError:
            raise
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise SerializationError(f"stored session record cannot be read: {exc}") from exc
        if not isinstance(created, (int, float)) or not isinstance(accessed, (int, float)):
            raise SerializationError("stored session record has an unexpected shape")
        return float(created), float(accessed), data, None

    def _fields(self, now: float, set_items: dict, created: float | None = None) -> dict:
        dumps = self.serializer.dumps
        fields = {_field(name): dumps(value) for name, value in set_items.items()}
        fields["a"] = dumps(now)
        if created is not None:
            fields["c"] = dumps(created)
        return fields

    def create(self, session_id: str, created: float, now: float, data: dict, ttl: float | None) -> None:
        self.backend.merge_record(KEY_PREFIX + session_id, self._fields(now, data, created), [], ttl, create=True)

    def update(self, session_id: str, created: float, now: float, set_items: dict, deleted: Iterable,
               ttl: float | None, held_lock: Any = None, seen: Any = None) -> bool:
        return bool(self.backend.merge_record(KEY_PREFIX + session_id, self._fields(now, set_items),
                                              [_field(name) for name in deleted], ttl, create=False))


def make_store(manager: Any) -> BlobStore:
    """The store that fits what the manager's backend can do (see the module docstring)."""
    if manager.stores_objects:
        return ObjectStore(manager)
    if manager.atomic_records:
        return RecordStore(manager)
    return BlobStore(manager)
