"""Session records on memcached: fields packed into one item, changed atomically with ``gets``/``cas``.

A record is ``BKR1`` followed, for each field, by the lengths of its name (UTF-8) and value as two big-endian 32-bit
integers, then the name and the value. ``merge`` reads the item with its CAS token, applies the changes and writes
it back only if nobody changed it in between (``cas``), retrying on conflict: two requests changing different
fields of one session both keep their change, without a lock.
"""
from __future__ import annotations

import struct
import time
from typing import Any, Iterable

from beaker_core.exceptions import BackendError, SerializationError

MAGIC = b"BKR1"
_LENGTHS = struct.Struct("!II")
MAX_ATTEMPTS = 100


def encode(fields: dict[str, bytes]) -> bytes:
    parts = [MAGIC]
    for name, value in fields.items():
        raw_name = name.encode("utf-8", "surrogatepass")
        if type(value) is not bytes:
            if not isinstance(value, (bytearray, memoryview)):
                raise SerializationError(f"a record field holds bytes; field {name!r} is a {type(value).__name__}")
            value = bytes(value)
        parts.append(_LENGTHS.pack(len(raw_name), len(value)))
        parts.append(raw_name)
        parts.append(value)
    return b"".join(parts)


def decode(data: bytes, key: str) -> dict[str, bytes]:
    if not data.startswith(MAGIC):
        raise SerializationError(f"the item under {key!r} is not a session record")
    fields: dict[str, bytes] = {}
    offset, end = len(MAGIC), len(data)
    try:
        while offset < end:
            name_length, value_length = _LENGTHS.unpack_from(data, offset)
            offset += _LENGTHS.size
            name = data[offset:offset + name_length].decode("utf-8", "surrogatepass")
            offset += name_length
            if offset + value_length > end:
                raise ValueError("truncated")
            fields[name] = data[offset:offset + value_length]
            offset += value_length
    except (struct.error, ValueError) as exc:
        raise SerializationError(f"the session record under {key!r} is corrupt ({exc})") from None
    return fields


def merge(backend: Any, key: str, set_fields: dict[str, bytes], delete_fields: Iterable[str],
          ttl: float | None, create: bool) -> bool:
    """Apply the changes to the record under ``key`` (see :meth:`MemcachedBackend.merge_record`)."""
    mapped, node = backend.locate(key)
    if node.down_until and node.skipped():
        backend.raise_down(node, "merging a record")
    expire = backend.server_expiry(ttl)
    deleted = list(delete_fields)
    sleep = 0.001
    for _ in range(MAX_ATTEMPTS):
        client = node.client()
        try:
            current, token = client.gets(mapped)
            if current is None:
                if not create:
                    return False
                data = backend.check_size(key, encode(dict(set_fields)))
                if client.add(mapped, data, expire, noreply=False):
                    node.mark_up()
                    return True
                continue  # created by someone else meanwhile: merge into theirs
            fields = decode(current, key)
            for name in deleted:
                fields.pop(name, None)
            fields.update(set_fields)
            data = backend.check_size(key, encode(fields))
            stored = client.cas(mapped, data, token, expire, noreply=False)
        except backend.errors as exc:
            backend.raise_failure(node, "merging a record", exc)
        if stored:
            node.mark_up()
            return True
        if stored is None and not create:
            return False  # deleted between gets and cas
        time.sleep(sleep)
        sleep = min(sleep * 2, 0.02)
    raise BackendError(f"{backend.describe()}: the record {key!r} kept changing; gave up after {MAX_ATTEMPTS} "
                       f"attempts")
