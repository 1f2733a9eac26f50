"""The stored envelope of a cached value, and the one rule that says whether it is still fresh.

An entry is ``(value, created, expire, generation)``: when the value was created (on :func:`beaker_core.clock.now`),
its lifetime in seconds (None or 0: no expiry) and the namespace's generation it was created in. Backends that keep
Python objects (memory) store that tuple as it is, so a hit costs no decoding; the others store :func:`pack`'s bytes,
a 25-byte binary header followed by the serializer's bytes.
"""
from __future__ import annotations

import struct
from typing import Any, Callable

from .. import clock
from ..exceptions import SerializationError

#: version byte, created, expire (0.0: none), generation
HEADER = struct.Struct("!Bddq")
#: the header's first byte; an envelope of another version is unreadable
ENVELOPE_VERSION = 1

#: what :func:`freshness` says of an entry
FRESH = "fresh"
#: past its lifetime but of the current generation: served to other callers while one recreates it
STALE = "stale"
#: of another generation, or created before the cache's ``starttime``: a miss
DEAD = "dead"


class UnreadableEntry(ValueError):
    """Stored bytes that are no envelope of this version (another program's data, a torn write...)."""


def freshness(entry: tuple, generation: int, starttime: float | None) -> str:
    """:data:`FRESH`, :data:`STALE` or :data:`DEAD`: the state of ``entry`` in a namespace at ``generation``, for a
    cache that treats values created before ``starttime`` (None: no such bound) as expired.

    The memory hit path inlines this rule (see ``Cache._direct_lookup``): a call there would be a sizeable part of
    every hit's cost.
    """
    _, created, expire, entry_generation = entry
    if entry_generation != generation or (starttime is not None and created < starttime):
        return DEAD
    if expire and clock.now() >= created + expire:
        return STALE
    return FRESH


def pack(value_bytes: bytes, created: float, expire: float | None, generation: int) -> bytes:
    """The stored bytes of an entry whose value the serializer turned into ``value_bytes``."""
    return HEADER.pack(ENVELOPE_VERSION, created, expire or 0.0, generation) + value_bytes


def unpack(raw: bytes, loads: Callable[[bytes], Any]) -> tuple:
    """The entry stored as ``raw``, its value read back by ``loads``; raises :class:`UnreadableEntry`."""
    try:
        version, created, expire, generation = HEADER.unpack_from(raw)
        if version != ENVELOPE_VERSION:
            raise ValueError(f"unknown envelope version {version}")
        value = loads(raw[HEADER.size:])
    except (struct.error, ValueError, SerializationError) as exc:
        raise UnreadableEntry(str(exc)) from exc
    return value, created, expire or None, generation
