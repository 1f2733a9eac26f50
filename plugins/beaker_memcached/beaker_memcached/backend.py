"""The ``memcached`` backend (Beaker's ``ext:memcached``), on pymemcache."""
from __future__ import annotations

import logging
import math
import re
import time
from typing import Any, Iterable, Iterator

from beaker_core.backends import Backend, check_delta, check_ttl
from beaker_core.backends.health import DEFAULT_DEAD_RETRY, waited
from beaker_core.exceptions import BackendError, ConfigurationError, SerializationError, ValueTooLarge
from beaker_core.util import coerce_bool, coerce_float

from . import records
from .nodes import Node, Ring, check_prefix, map_key, parse_servers

log = logging.getLogger(__name__)

#: memcached's own default item size limit (its ``-I`` option)
DEFAULT_MAX_ITEM_SIZE = 1024 * 1024
#: room kept for the item header, a 250-byte key and the flags/CAS fields
ITEM_OVERHEAD = 512
_THIRTY_DAYS = 30 * 24 * 3600  # memcached reads a larger expiry as an absolute unix time
_GET_BATCH = 100
#: mapped keys remembered per backend (the namespace's generation key is asked for on every cache read)
_MAPPED_KEYS_KEPT = 1024
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)b?\s*$", re.IGNORECASE)


def parse_size(owner: str, value: Any) -> int:
    """A size in bytes: an integer, or a string such as ``1048576``, ``512k``, ``2m`` (memcached's ``-I`` form)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and _SIZE.match(value):
        number, unit = _SIZE.match(value).groups()
        size = int(number) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit.lower()]
    else:
        raise ConfigurationError(f"{owner} option max_item_size must be a size in bytes such as 1048576, 512k "
                                 f"or 2m, not {value!r}")
    if size < 2 * ITEM_OVERHEAD:
        raise ConfigurationError(f"{owner} option max_item_size is too small: {size} bytes")
    return size


def _memcache_errors() -> tuple[type[BaseException], ...]:
    from pymemcache.exceptions import MemcacheError
    return (OSError, MemcacheError)


class MemcachedBackend(Backend):
    """Values in one or several memcached servers.

    :param url: ``host:port``, or several servers separated by ``;`` as in Beaker
        (``10.0.0.1:11211;10.0.0.2:11211``), or a list; ``unix:/path`` for a unix socket. With several servers
        each key lives on one of them, chosen by rendezvous hashing.
    :param prefix: prepended to every key (printable ASCII, no spaces, at most 100 characters; default none).
    :param max_item_size: the servers' item size limit (memcached's ``-I``; default ``1m``). A value that cannot
        fit raises :class:`~beaker_core.exceptions.ValueTooLarge` when it is saved.
    :param strict: raise :class:`~beaker_core.exceptions.BackendError` when a server is down even for cache reads
        and writes. By default (False) those degrade: a read from a dead server is a miss and a write to it is
        dropped (logged once per outage), and the memcached lock is granted without exclusion, so caching keeps
        working with the servers that are left. Everything else (``add``, ``delete``, ``touch``, ``incr`` and
        session records) always raises, naming the server.
    :param connect_timeout: seconds to wait for a connection (default 2).
    :param timeout: seconds to wait for a reply (default 2).
    :param dead_retry: seconds a server that did not answer in time is marked down (default 2). While it is, every
        call for its share fails at once, as above, without being sent; then one caller probes it (``version``
        with a short timeout) and the calls go to it again once it answers. A refused connection costs nothing to
        repeat: the next call probes at once (see :mod:`beaker_core.backends.health`).
    :param memcache_module: Beaker's choice of client library; accepted and ignored (pymemcache is used).

    Keys that memcached cannot take as they are (spaces, control characters, non-ASCII, longer than 250 bytes
    with the prefix) are replaced by a SHA-256 of the key, marked so that it never equals a key stored as it is.
    memcached cannot list its keys: ``keys``, ``delete_prefix`` and ``clear`` raise NotImplementedError, and
    nothing here ever sends ``flush_all`` (beaker-core invalidates a cache namespace with a generation counter).
    """

    name = "memcached"
    preferred_lock = "memcached"
    shared = True
    atomic_records = True
    atomic_update = True

    def __init__(self, url: Any = None, *, prefix: Any = "", max_item_size: Any = DEFAULT_MAX_ITEM_SIZE,
                 strict: Any = False, connect_timeout: Any = 2.0, timeout: Any = 2.0,
                 dead_retry: Any = DEFAULT_DEAD_RETRY, memcache_module: Any = None):
        owner = f"the {self.name} backend"
        self.servers = parse_servers(url, owner)
        self.prefix = check_prefix(prefix, owner)
        self.max_item_size = parse_size(owner, max_item_size)
        self.max_value_size = self.max_item_size - ITEM_OVERHEAD
        self.strict = coerce_bool(f"{owner} option strict", strict)
        self.dead_retry = _seconds(owner, "dead_retry", dead_retry)
        self.timeout = _seconds(owner, "timeout", timeout, positive=True)
        client_options = {
            "connect_timeout": _seconds(owner, "connect_timeout", connect_timeout, positive=True),
            "no_delay": True, "default_noreply": False, "allow_unicode_keys": False,
        }
        self._ring = Ring([Node(address, client_options, self.timeout, self.dead_retry)
                           for address in self.servers])
        #: the exceptions that mean a server failed (pymemcache's and the socket's), for the lock and the records
        self.errors = _memcache_errors()
        self._mapped_keys: dict[str, bytes] = {}

    # -- plumbing, shared with the lock and the records -------------------------------------------------------------

    def locate(self, key: str) -> tuple[str, Node]:
        """The key as sent to memcached, and the server that holds it."""
        mapped = map_key(self.prefix, key)
        return mapped, self._ring.node(mapped)

    def _map(self, key: str) -> bytes:
        """``map_key`` of ``key`` as the bytes sent, remembered: a cache read asks for its namespace's generation
        key every time."""
        mapped_keys = self._mapped_keys
        if len(mapped_keys) >= _MAPPED_KEYS_KEPT:
            mapped_keys.clear()
        mapped = mapped_keys[key] = map_key(self.prefix, key).encode("ascii")
        return mapped

    @staticmethod
    def server_expiry(ttl: float | None) -> int:
        """A ttl as memcached's expiry: 0 for none, whole seconds rounded up, a date past thirty days."""
        if ttl is None:
            return 0
        seconds = math.ceil(check_ttl(ttl))  # whole seconds, rounded up: 0 would mean "never"
        return seconds if seconds <= _THIRTY_DAYS else int(time.time()) + seconds

    def check_size(self, key: str, value: bytes) -> bytes:
        """``value``, or :class:`ValueTooLarge` when it is over the servers' item size limit."""
        if len(value) > self.max_value_size:
            raise ValueTooLarge(
                f"{self.describe()}: the value for key {key!r} is {len(value)} bytes; memcached items are limited "
                f"to {self.max_item_size} bytes (max_item_size, the servers' -I option), which leaves "
                f"{self.max_value_size} bytes for a value")
        return value

    def _value(self, key: str, value: Any) -> bytes:
        if type(value) is not bytes:
            if not isinstance(value, (bytearray, memoryview)):
                raise SerializationError(f"the memcached backend stores bytes; the value for key {key!r} is a "
                                         f"{type(value).__name__}")
            value = bytes(value)
        return self.check_size(key, value)

    def raise_failure(self, node: Node, operation: str, exc: BaseException) -> None:
        """Turn a pymemcache or socket error into the right beaker-core error (always raises)."""
        from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError
        if isinstance(exc, MemcacheServerError) and "too large" in str(exc):
            raise ValueTooLarge(f"memcached server {node.address} refused the value as too large for its item "
                                f"size limit while {operation} ({self.describe()}); set max_item_size to the "
                                f"servers' -I") from exc
        if isinstance(exc, (BlockingIOError, TimeoutError)):
            detail = f"no reply within {self.timeout} seconds"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, (OSError, MemcacheUnexpectedCloseError)) and node.mark_down(detail, waited(exc)):
            log.warning("memcached server %s is down (%s)", node.address, detail)
        raise BackendError(f"memcached server {node.address} failed while {operation} ({self.describe()}): "
                           f"{detail}") from exc

    def raise_down(self, node: Node, operation: str) -> None:
        """A call for the share of a server marked down: an error naming it, raised without trying it."""
        raise BackendError(f"memcached server {node.address} is down ({self.describe()}): {operation} not tried; "
                           f"it last failed with {node.last_error}")

    def _degrade(self, node: Node, operation: str, exc: BaseException | None, default: Any) -> Any:
        """A cache read or write to a failing server: a miss or a dropped write, unless ``strict``. Errors that
        are not about the server being unreachable (a value too large, a protocol error) are raised."""
        if exc is not None:
            try:
                self.raise_failure(node, operation, exc)
            except BackendError:
                if self.strict or not node.down_until:
                    raise
                return default
        if self.strict:
            self.raise_down(node, operation)
        return default

    # -- cache reads and writes: degrade when a server is down -----------------------------------------------------

    def get(self, key: str) -> Any:
        mapped = map_key(self.prefix, key)
        node = self._ring.node(mapped)
        if node.down_until and node.skipped():
            return self._degrade(node, "reading", None, None)
        try:
            value = node.client().get(mapped)
        except self.errors as exc:
            return self._degrade(node, "reading", exc, None)
        if node.down_until:
            node.mark_up()
        return value

    def get_many(self, keys: Iterable[str]) -> list[Any]:
        known = self._mapped_keys.get
        mapped = [known(key) or self._map(key) for key in keys]
        if not mapped:
            return []
        single = self._ring.single
        if single is not None and not single.down_until and len(mapped) <= _GET_BATCH:
            try:  # the common case, kept short: one server, one round trip
                found = single.client().get_values(mapped)
            except self.errors as exc:
                self._degrade(single, "reading", exc, None)
                return [None] * len(mapped)
            return list(map(found.get, mapped))
        found = {}
        by_text = {item.decode("ascii"): item for item in mapped}
        for node, group in self._ring.group(list(by_text)).items():
            if node.down_until and node.skipped():
                self._degrade(node, "reading", None, None)
                continue
            try:
                client = node.client()
                for start in range(0, len(group), _GET_BATCH):
                    found.update(client.get_values([by_text[item] for item in group[start:start + _GET_BATCH]]))
            except self.errors as exc:
                self._degrade(node, "reading", exc, None)
                continue
            if node.down_until:
                node.mark_up()
        return [found.get(item) for item in mapped]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        value = self._value(key, value)
        expire = self.server_expiry(ttl)
        mapped, node = self.locate(key)
        if node.down_until and node.skipped():
            return self._degrade(node, "writing", None, None)
        try:
            node.client().set(mapped, value, expire, noreply=False)
        except self.errors as exc:
            return self._degrade(node, "writing", exc, None)
        if node.down_until:
            node.mark_up()

    def set_many(self, items: dict[str, Any], ttl: float | None = None) -> None:
        expire = self.server_expiry(ttl)
        by_mapped = {map_key(self.prefix, key): self._value(key, value) for key, value in items.items()}
        for node, group in self._ring.group(list(by_mapped)).items():
            if node.down_until and node.skipped():
                self._degrade(node, "writing", None, None)
                continue
            try:
                node.client().set_many({mapped: by_mapped[mapped] for mapped in group}, expire, noreply=False)
            except self.errors as exc:
                self._degrade(node, "writing", exc, None)
                continue
            if node.down_until:
                node.mark_up()

    # -- everything else: a failing server is an error naming it ---------------------------------------------------

    def _call(self, key: str, operation: str, method: str, *args: Any) -> Any:
        mapped, node = self.locate(key)
        if node.down_until and node.skipped():
            self.raise_down(node, operation)
        try:
            result = getattr(node.client(), method)(mapped, *args)
        except self.errors as exc:
            self.raise_failure(node, operation, exc)
        if node.down_until:
            node.mark_up()
        return result

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        value = self._value(key, value)
        return bool(self._call(key, "adding", "add", value, self.server_expiry(ttl), False))

    def delete(self, key: str) -> bool:
        return bool(self._call(key, "deleting", "delete", False))

    def delete_many(self, keys: Iterable[str]) -> None:
        for node, group in self._ring.group([map_key(self.prefix, key) for key in keys]).items():
            if node.down_until and node.skipped():
                self.raise_down(node, "deleting")
            try:
                node.client().delete_many(group, noreply=False)
            except self.errors as exc:
                self.raise_failure(node, "deleting", exc)

    def touch(self, key: str, ttl: float | None) -> bool:
        return bool(self._call(key, "touching", "touch", self.server_expiry(ttl), False))

    def incr(self, key: str, delta: int = 1) -> int:
        """memcached's ``incr`` (created at 0 with ``add``); a negative delta or result falls back to a
        ``gets``/``cas`` loop, since memcached's counters are unsigned."""
        check_delta(delta)
        from pymemcache.exceptions import MemcacheClientError
        if delta >= 0:
            try:
                result = self._call(key, "incrementing", "incr", delta, False)
                if result is not None:
                    return int(result)
                if self._call(key, "incrementing", "add", str(delta).encode("ascii"), 0, False):
                    return delta
                result = self._call(key, "incrementing", "incr", delta, False)
                if result is not None:
                    return int(result)
            except BackendError as exc:
                if not isinstance(exc.__cause__, MemcacheClientError):  # not a non-numeric (negative) value
                    raise
        return self._incr_by_cas(key, delta)

    def _incr_by_cas(self, key: str, delta: int) -> int:
        mapped, node = self.locate(key)
        if node.down_until and node.skipped():
            self.raise_down(node, "incrementing")
        for _ in range(records.MAX_ATTEMPTS):
            try:
                client = node.client()
                current, token = client.gets(mapped)
                if current is None:
                    if client.add(mapped, str(delta).encode("ascii"), 0, noreply=False):
                        return delta
                    continue
                try:
                    value = int(current) + delta
                except ValueError:
                    raise BackendError(f"{self.describe()}: the value under {key!r} is not an integer") from None
                if client.cas(mapped, str(value).encode("ascii"), token, 0, noreply=False):
                    return value
            except self.errors as exc:
                self.raise_failure(node, "incrementing", exc)
        raise BackendError(f"{self.describe()}: the counter {key!r} kept changing; gave up")

    def update(self, key: str, change: Any, ttl: float | None = None) -> bool:
        """Read, change and write ``key`` with ``gets``/``cas`` (``add`` when it is absent), retried when another
        client changed it in between; ``change(current)`` returns the new value, or None to leave the key alone.
        A failing server is an error naming it."""
        mapped, node = self.locate(key)
        if node.down_until and node.skipped():
            self.raise_down(node, "updating")
        expire = self.server_expiry(ttl)
        for _ in range(records.MAX_ATTEMPTS):
            try:
                client = node.client()
                current, token = client.gets(mapped)
                new = change(current)
                if new is None:
                    return False
                new = self._value(key, new)
                if current is None:
                    stored = client.add(mapped, new, expire, noreply=False)
                else:
                    stored = client.cas(mapped, new, token, expire, noreply=False)
            except self.errors as exc:
                self.raise_failure(node, "updating", exc)
            if stored:
                node.mark_up()
                return True
        raise BackendError(f"{self.describe()}: the value under {key!r} kept changing; gave up")

    # -- session records -------------------------------------------------------------------------------------------

    def get_record(self, key: str) -> dict[str, bytes] | None:
        """The record's fields, or None (see :mod:`beaker_memcached.records`); a failing server is an error."""
        data = self._call(key, "reading a record", "get")
        return None if data is None else records.decode(data, key)

    def merge_record(self, key: str, set_fields: dict[str, bytes], delete_fields: Iterable[str],
                     ttl: float | None, create: bool = True) -> bool:
        """Atomically apply one request's changes to a record (``gets``/``cas``, retried on conflict)."""
        return records.merge(self, key, set_fields, delete_fields, ttl, create)

    # -- what memcached cannot do ----------------------------------------------------------------------------------

    _NO_ENUMERATION = ("memcached cannot list its keys, so the memcached backend cannot enumerate or delete by "
                       "prefix; it never flushes the server (that would wipe other applications' data): "
                       "beaker-core invalidates cache namespaces with generation counters instead")

    def keys(self, prefix: str = "") -> Iterator[str]:
        raise NotImplementedError(self._NO_ENUMERATION)

    def delete_prefix(self, prefix: str) -> int:
        raise NotImplementedError(self._NO_ENUMERATION)

    def clear(self) -> None:
        raise NotImplementedError(self._NO_ENUMERATION)

    def cleanup(self) -> int:
        return 0  # memcached expires items itself

    def close(self) -> None:
        for node in self._ring.nodes:
            node.close()

    def describe(self) -> str:
        return f"memcached backend at {';'.join(self.servers)}"


def _seconds(owner: str, option: str, value: Any, positive: bool = False) -> float:
    number = coerce_float(f"{owner} option {option}", value, minimum=0.0)
    if math.isnan(number) or math.isinf(number) or (positive and number <= 0):
        kind = "a positive" if positive else "a"
        raise ConfigurationError(f"{owner} option {option} must be {kind} finite number of seconds, not {value!r}")
    return number
