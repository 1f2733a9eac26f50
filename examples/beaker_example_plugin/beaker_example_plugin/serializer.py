"""The ``example-json-sorted`` serializer.

It writes the same tagged JSON as beaker-core's ``json`` serializer (datetimes, bytes, tuples... keep their type),
with the keys of every object sorted. Two equal dicts therefore always serialize to the same bytes, whatever order
their keys were inserted in, which makes stored values comparable and hashable (for an ETag, say).

It is built only on beaker-core's public serializer: the core's output is parsed back as plain JSON (the tags stay
as ordinary objects) and written again with sorted keys; reading is the core's own ``loads``. Any data it writes is
readable by the core's ``json`` serializer too.
"""
from __future__ import annotations

import json
from typing import Any

from beaker_core.exceptions import SerializationError
from beaker_core.serializers import Serializer, json_serializer


class SortedJSONSerializer(Serializer):
    name = "example-json-sorted"

    def dumps(self, value: Any) -> bytes:
        tree = json.loads(json_serializer.dumps(value))  # raises SerializationError naming an unsupported type
        return json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SerializationError(f"{self.name} reads bytes, not {type(data).__name__}")
        return json_serializer.loads(data)


sorted_json_serializer = SortedJSONSerializer()
