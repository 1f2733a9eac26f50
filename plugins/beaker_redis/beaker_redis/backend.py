"""The ``redis`` backend (Beaker's ``ext:redis``) and the ``rediscluster`` backend (Beaker's ``ext:rediscluster``).

One class serves both: a single server and a Redis Cluster differ only in how the client is built and in
``get_many`` (``MGET`` on one server; on a cluster, one ``MGET`` per hash slot, sent in one pipeline). Keys are
stored as ``prefix + key`` encoded in UTF-8; values are the bytes the core hands over, with a native TTL
(``SET ... PX``), so redis expires them itself and ``TTL key`` shows what is left.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
from typing import Any, Iterable, Iterator

from beaker_core.backends import Backend, check_delta, check_ttl
from beaker_core.backends.health import DEFAULT_DEAD_RETRY, DownMark, waited
from beaker_core.exceptions import BackendError, ConfigurationError, SerializationError
from beaker_core.pool import freeze
from beaker_core.util import coerce_float

from .cluster import connect_cluster, is_cluster_url, join_urls, parse_cluster_url
from .connection import (Target, client_options, describe_client, down_mark, is_connection_failure,
                         parse_single_url, redis_timeouts, scrub, shared_clients)
from .fastpath import direct_commands, reply_timed_out, use_kernel_timeouts
from .sentinel import (SentinelTarget, connect_sentinel, describe_sentinel_client, is_sentinel_url,
                       parse_sentinel_url, sentinel_url)

_BATCH = 500  # keys per DEL / SCAN COUNT when enumerating
# ARGV: create ("1"/"0"), ttl in ms ("0": none), number of fields to set, then name/value pairs, then names to delete.
# HDEL and HSET take many fields per call; Lua's unpack has a stack limit, hence chunks of 2000 arguments (an even
# number, so that name/value pairs stay together).
_MERGE_RECORD = """
local key = KEYS[1]
if ARGV[1] == '0' and redis.call('exists', key) == 0 then
    return 0
end
local first_delete = 4 + 2 * tonumber(ARGV[3])
local first = first_delete
while first <= #ARGV do
    local stop = math.min(first + 1999, #ARGV)
    redis.call('hdel', key, unpack(ARGV, first, stop))
    first = stop + 1
end
first = 4
while first < first_delete do
    local stop = math.min(first + 1999, first_delete - 1)
    redis.call('hset', key, unpack(ARGV, first, stop))
    first = stop + 1
end
if ARGV[2] ~= '0' then
    redis.call('pexpire', key, ARGV[2])
else
    redis.call('persist', key)
end
return 1
"""
DEFAULT_TIMEOUTS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
#: a cluster client follows its nodes' failures itself (it refreshes the slot map and retries): never marked down
_NEVER_DOWN = DownMark(lambda: None, 0.0)

log = logging.getLogger(__name__)


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisClusterException, RedisError
    return (RedisError, RedisClusterException)


def _milliseconds(ttl: Any) -> int:
    return max(1, math.ceil(check_ttl(ttl) * 1000))


def _glob_escape(pattern: bytes) -> bytes:
    """``pattern`` with redis's glob characters escaped, for ``SCAN MATCH``."""
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        pattern = pattern.replace(special, b"\\" + special)
    return pattern


class RedisBackend(Backend):
    """Values in redis, expired by redis.

    :param url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
        ``unix://[[user]:password@]/path/to/socket?db=N``, as redis-py reads it; query-string options
        (``?socket_timeout=3``) are honoured. A cluster URL (``redis+cluster://host:port,host:port``) gives a
        cluster backend, a sentinel URL (``redis+sentinel://host:26379,host:26379/mymaster/0``) a client of the
        primary that the sentinels name. For Beaker compatibility ``url`` may also be a redis-py client instance.
    :param sentinels: instead of ``url``: the sentinels, ``host:port, host:port`` (see :mod:`beaker_redis.sentinel`).
    :param service_name: the name of the primary the sentinels monitor (overrides a sentinel URL's).
    :param sentinel_username: ACL user name on the sentinels (``username`` is the data servers').
    :param sentinel_password: password of the sentinels (``password`` is the data servers'); never shown.
    :param urls: Beaker's ``ext:rediscluster`` option, instead of ``url``: the cluster's node URLs as a list or as
        one comma-separated string.
    :param client: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` instance to use instead of a URL (it stays
        the caller's: :meth:`close` leaves it open).
    :param prefix: prepended to every key (default: none), e.g. ``myapp:``; keys are enumerated under it with
        ``SCAN``, never ``KEYS``. Avoid ``{}`` in a cluster prefix unless every key should share one hash slot.
    :param socket_timeout: seconds to wait for a reply (default 5).
    :param socket_connect_timeout: seconds to wait for a connection (default 5).
    :param max_connections: connections in the pool at most (default: unbounded).
    :param health_check_interval: seconds after which an idle connection is checked with PING before use.
    :param retry_on_timeout: retry a command once after a timeout.
    :param dead_retry: seconds a server that did not answer in time is marked down (default 2): every command fails
        at once, without being sent, then one caller probes the server (``PING`` with a short timeout) and the
        commands go to it again once it answers. After a refused connection the next command probes at once.
        One mark per shared client (see :mod:`beaker_core.backends.health`); a cluster is not marked down.
    :param username: ACL user name (overrides the URL's).
    :param password: password (overrides the URL's); never shown in messages.
    :param db: database number (overrides the URL's; a cluster only has 0).
    :param ssl_ca_certs: CA bundle for ``rediss://``.
    :param ssl_cert_reqs: ``required`` (default), ``optional`` or ``none`` for ``rediss://``.
    :param connection_options: a dict of further keyword arguments for redis-py's connection pool.

    Every backend built for the same URL and options shares one client, hence one connection pool per process.
    Redis errors (unreachable server, refused authentication...) are raised as
    :class:`~beaker_core.exceptions.BackendError` naming the backend and the URL, without its password.
    """

    name = "redis"
    preferred_lock = "redis"
    shared = True
    atomic_records = True
    atomic_update = True
    max_value_size = 512 * 1024 * 1024  # redis's proto-max-bulk-len default
    #: only a Redis Cluster is accepted (the ``rediscluster`` name)
    cluster_only = False

    def __init__(self, url: Any = None, *, urls: Any = None, client: Any = None, prefix: Any = "",
                 dead_retry: Any = DEFAULT_DEAD_RETRY,
                 socket_timeout: Any = None, socket_connect_timeout: Any = None, max_connections: Any = None,
                 health_check_interval: Any = None, retry_on_timeout: Any = None, username: Any = None,
                 password: Any = None, db: Any = None, ssl_ca_certs: Any = None, ssl_cert_reqs: Any = None,
                 connection_options: Any = None, sentinels: Any = None, service_name: Any = None,
                 sentinel_username: Any = None, sentinel_password: Any = None):
        owner = f"the {self.name} backend"
        self._shared_key: Any = None
        sentinel_options = {name: value for name, value in (("service_name", service_name), ("sentinel_username",
                            sentinel_username), ("sentinel_password", sentinel_password)) if value is not None}
        if sentinels is not None:
            if url is not None or urls is not None or client is not None:
                raise ConfigurationError(f"{owner}: pass either sentinels or a url, urls or client, not both")
            url = sentinel_url(sentinels, owner)
        if urls is not None:
            if url is not None:
                raise ConfigurationError(f"{owner}: pass either url or urls, not both")
            url = join_urls(urls, owner)
        if url is not None and not isinstance(url, str):
            if client is not None:
                raise ConfigurationError(f"{owner}: pass either url or client, not both")
            client, url = url, None
        if url is None and client is None:
            raise ConfigurationError(f"{owner} needs a url (e.g. redis://localhost:6379/0) or a client")
        if url is not None and client is not None:
            raise ConfigurationError(f"{owner}: pass either url or client, not both")
        if not isinstance(prefix, str):
            raise ConfigurationError(f"{owner} option prefix must be a string, not {prefix!r}")
        self.prefix = prefix
        self._prefix_bytes = prefix.encode("utf-8", "surrogatepass")
        self.dead_retry = coerce_float(f"{owner} option dead_retry", dead_retry, minimum=0.0)
        if not math.isfinite(self.dead_retry):
            raise ConfigurationError(f"{owner} option dead_retry must be a finite number of seconds, not "
                                     f"{dead_retry!r}")
        options = client_options(
            owner, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout,
            max_connections=max_connections, health_check_interval=health_check_interval,
            retry_on_timeout=retry_on_timeout, username=username, password=password, db=db,
            ssl_ca_certs=ssl_ca_certs, ssl_cert_reqs=ssl_cert_reqs, connection_options=connection_options)
        self._password = options.get("password")
        if client is not None:
            if options or sentinel_options:
                raise ConfigurationError(f"{owner}: connection options "
                                         f"({', '.join(sorted({**options, **sentinel_options}))}) apply to a "
                                         f"url; configure the client you pass instead")
            self.target = self._check_client(client, owner)
            self._password = self.target.password
            self._client = client
        else:
            url = url.strip()
            if is_sentinel_url(url):
                if self.cluster_only:
                    raise ConfigurationError(f"{owner} takes a cluster url; a sentinel url goes with type redis")
                self.target = parse_sentinel_url(url, owner, service_name)
                options.update(sentinel_options)  # read by connect_sentinel, and part of the shared client's key
            elif sentinel_options:
                raise ConfigurationError(f"{owner}: {', '.join(sorted(sentinel_options))} apply to a sentinel url "
                                         f"or to the sentinels option")
            elif self.cluster_only or is_cluster_url(url):
                self.target = parse_cluster_url(url, owner)
                if options.pop("db", 0) != 0:
                    raise ConfigurationError(f"{owner}: a redis cluster has only database 0")
            else:
                self.target = parse_single_url(url, owner)
            self._password = self._password or self.target.password
            kind = "cluster" if self.target.cluster else "sentinel" if isinstance(self.target, SentinelTarget) \
                else "single"
            key = (kind, url, freeze(options))
            self._client = shared_clients.checkout(key, lambda: self._connect(self.target, options))
            self._shared_key = key
        self.cluster = self.target.cluster
        #: the exceptions that mean the server failed (redis-py's and the socket's), for the lock as for the backend
        self.errors = _redis_errors()
        self._down = _NEVER_DOWN if self.cluster else down_mark(self._client, self.dead_retry, self._password)
        self._get = self._client.get
        if self.cluster:
            self._command = self._client.execute_command
            self._mget = self._client.mget_nonatomic
        else:
            # the commands of a cache hit and of a session load and save skip redis-py's per-command overhead
            # (see fastpath.DirectCommands); a client passed in keeps its own execute_command (it may hold one
            # connection), and so does a sentinel client, whose connections must follow the primary through a failover
            own_path = client is not None or isinstance(self.target, SentinelTarget)
            self._command = self._client.execute_command if own_path else direct_commands(self._client)
            self._mget = functools.partial(self._command, "MGET")
        self._scripts: dict[str, str] = {}
        from redis.exceptions import NoScriptError
        self._no_script = NoScriptError

    # -- connecting ----------------------------------------------------------------------------------------------

    def _check_client(self, client: Any, owner: str) -> Target:
        import redis
        from redis.cluster import RedisCluster

        if not isinstance(client, (redis.Redis, RedisCluster)):
            raise ConfigurationError(f"{owner}: client must be a redis.Redis or redis.cluster.RedisCluster "
                                     f"instance, not {type(client).__name__}")
        if self.cluster_only and not isinstance(client, RedisCluster):
            raise ConfigurationError(f"{owner}: client must be a redis.cluster.RedisCluster instance")
        if client.get_encoder().decode_responses:
            raise ConfigurationError(f"{owner}: the client must return bytes (decode_responses=False)")
        return describe_sentinel_client(client) or describe_client(client)

    def _connect(self, target: Target, options: dict[str, Any]) -> Any:
        import redis
        from redis.connection import parse_url

        if isinstance(target, SentinelTarget):
            try:
                return connect_sentinel(target, options, DEFAULT_TIMEOUTS)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"the {self.name} backend at {target.display}: "
                                         f"{scrub(str(exc), target.password)}") from None
        if not target.cluster:
            # explicit options override the URL, which overrides the default timeouts
            merged = {**DEFAULT_TIMEOUTS, **parse_url(target.url), **options}
            use_kernel_timeouts(merged)
            try:
                return redis.Redis(connection_pool=redis.ConnectionPool(**merged))
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"the {self.name} backend at {target.display}: "
                                         f"{scrub(str(exc), target.password)}") from None
        # redis-py builds the nodes' clients itself, without a connection class option: Python socket timeouts here
        try:
            return connect_cluster(target, {**DEFAULT_TIMEOUTS, **options})
        except _redis_errors() as exc:
            raise self._error_at(target, "connection", exc) from exc
        except TypeError as exc:
            raise ConfigurationError(f"the {self.name} backend at {target.display}: {exc}") from None

    def _error_at(self, target: Target, operation: str, exc: BaseException) -> BackendError:
        return BackendError(f"{self.name} backend at {target.display}: {operation} failed: "
                            f"{self._detail(target, exc)}")

    def _detail(self, target: Target, exc: BaseException) -> str:
        password = self._password or target.password
        detail = scrub(f"{type(exc).__name__}: {exc}", password)
        if reply_timed_out(exc):
            detail = f"no reply in time ({detail})"
        return detail

    def failure(self, operation: str, exc: BaseException) -> BackendError:
        """The error of a failed command; a server that could not be reached is marked down."""
        detail = self._detail(self.target, exc)
        if self._down is not _NEVER_DOWN and is_connection_failure(exc) \
                and self._down.mark_down(detail, waited(exc, redis_timeouts())):
            log.warning("%s is marked down: %s", self.describe(), detail)
        return BackendError(f"{self.name} backend at {self.target.display}: {operation} failed: {detail}")

    def _refuse_while_down(self, operation: str) -> None:
        """Called while the server is marked down (each command tests ``self._down.down_until`` inline, which costs
        nothing while it is up): raise at once, unless this call's probe finds the server back."""
        if not self._down.admits():
            raise BackendError(f"{self.name} backend at {self.target.display}: {operation} failed: "
                               f"{self._down.last_error} (not sent: the server is marked down after that error)")

    def _key(self, key: str) -> bytes:
        return self._prefix_bytes + key.encode("utf-8", "surrogatepass")

    def run_script(self, source: str, keys: list, args: list) -> Any:
        """Run a Lua script by its SHA1 (``EVALSHA``), loading it first if the server does not know it yet.

        Called directly rather than through redis-py's ``Script`` object, which costs a few microseconds more per
        call (a session save is one script call)."""
        sha = self._scripts.get(source)
        if sha is None:
            sha = self._scripts[source] = hashlib.sha1(source.encode("utf-8")).hexdigest()
        try:
            return self._command("EVALSHA", sha, len(keys), *keys, *args)
        except self._no_script:
            self._client.script_load(source)
            return self._command("EVALSHA", sha, len(keys), *keys, *args)

    @property
    def client(self) -> Any:
        """The redis-py client (shared by every backend with the same URL and options)."""
        return self._client

    # -- the contract ----------------------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        if self._down.down_until:
            self._refuse_while_down("GET")
        try:
            return self._get(self._prefix_bytes + key.encode("utf-8", "surrogatepass"))
        except self.errors as exc:
            raise self.failure("GET", exc) from exc

    def get_many(self, keys: Iterable[str]) -> list[Any]:
        prefix = self._prefix_bytes
        encoded = [prefix + key.encode("utf-8", "surrogatepass") for key in keys]
        if not encoded:
            return []
        if self._down.down_until:
            self._refuse_while_down("MGET")
        try:
            return self._mget(*encoded)
        except self.errors as exc:
            raise self.failure("MGET", exc) from exc

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if self._down.down_until:
            self._refuse_while_down("SET")
        if type(value) is not bytes:
            value = _as_bytes(value, key)
        px = None if ttl is None else _milliseconds(ttl)
        try:
            self._client.set(self._key(key), value, px=px)
        except self.errors as exc:
            raise self.failure("SET", exc) from exc

    def set_many(self, items: dict[str, Any], ttl: float | None = None) -> None:
        px = None if ttl is None else _milliseconds(ttl)
        if not items:
            return
        if self._down.down_until:
            self._refuse_while_down("SET (pipelined)")
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(self._key(key), value if type(value) is bytes else _as_bytes(value, key), px=px)
            pipe.execute()
        except self.errors as exc:
            raise self.failure("SET (pipelined)", exc) from exc

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        if self._down.down_until:
            self._refuse_while_down("SET NX")
        if type(value) is not bytes:
            value = _as_bytes(value, key)
        px = None if ttl is None else _milliseconds(ttl)
        try:
            return bool(self._client.set(self._key(key), value, nx=True, px=px))
        except self.errors as exc:
            raise self.failure("SET NX", exc) from exc

    def delete(self, key: str) -> bool:
        if self._down.down_until:
            self._refuse_while_down("DEL")
        try:
            return bool(self._client.delete(self._key(key)))
        except self.errors as exc:
            raise self.failure("DEL", exc) from exc

    def delete_many(self, keys: Iterable[str]) -> None:
        if self._down.down_until:
            self._refuse_while_down("DEL")
        encoded = [self._key(key) for key in keys]
        try:
            for start in range(0, len(encoded), _BATCH):
                self._client.delete(*encoded[start:start + _BATCH])
        except self.errors as exc:
            raise self.failure("DEL", exc) from exc

    def touch(self, key: str, ttl: float | None) -> bool:
        if self._down.down_until:
            self._refuse_while_down("PEXPIRE" if ttl is not None else "PERSIST")
        encoded = self._key(key)
        try:
            if ttl is not None:
                return bool(self._client.pexpire(encoded, _milliseconds(ttl)))
            pipe = self._client.pipeline(transaction=False)
            pipe.persist(encoded)
            pipe.exists(encoded)
            return bool(pipe.execute()[1])
        except self.errors as exc:
            raise self.failure("PEXPIRE" if ttl is not None else "PERSIST", exc) from exc

    def incr(self, key: str, delta: int = 1) -> int:
        check_delta(delta)
        if self._down.down_until:
            self._refuse_while_down("INCRBY")
        try:
            return int(self._client.incrby(self._key(key), delta))
        except self.errors as exc:
            raise self.failure("INCRBY", exc) from exc

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (after the backend's own prefix), found with ``SCAN``: never ``KEYS``, which
        blocks the server. A key written or removed during the scan may or may not be listed."""
        if self._down.down_until:
            self._refuse_while_down("SCAN")
        pattern = _glob_escape(self._key(prefix)) + b"*"
        strip = len(self._prefix_bytes)
        try:
            for raw in self._client.scan_iter(match=pattern, count=_BATCH):
                yield raw[strip:].decode("utf-8", "surrogatepass")
        except self.errors as exc:
            raise self.failure("SCAN", exc) from exc

    def delete_prefix(self, prefix: str) -> int:
        if self._down.down_until:
            self._refuse_while_down("SCAN/DEL")
        pattern = _glob_escape(self._key(prefix)) + b"*"
        removed = 0
        batch: list[bytes] = []
        try:
            for raw in self._client.scan_iter(match=pattern, count=_BATCH):
                batch.append(raw)
                if len(batch) >= _BATCH:
                    removed += self._client.delete(*batch)
                    batch = []
            if batch:
                removed += self._client.delete(*batch)
        except self.errors as exc:
            raise self.failure("SCAN/DEL", exc) from exc
        return removed

    def clear(self) -> int:
        """Remove every key under the backend's prefix (the whole database when it has none), by SCAN and DEL;
        never ``FLUSHDB``."""
        return self.delete_prefix("")

    def update(self, key: str, change: Any, ttl: float | None = None) -> bool:
        """Read, change and write ``key`` under ``WATCH``: ``change(current)`` returns the new value (or None to
        leave the key alone) and is called again when another client changed the key in between."""
        if self._down.down_until:
            self._refuse_while_down("WATCH/MULTI/EXEC update")
        from redis.exceptions import WatchError

        encoded = self._key(key)
        px = None if ttl is None else _milliseconds(ttl)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(encoded)
                        new = change(pipe.get(encoded))
                        if new is None:
                            pipe.unwatch()
                            return False
                        pipe.multi()
                        pipe.set(encoded, new if type(new) is bytes else _as_bytes(new, key), px=px)
                        pipe.execute()
                        return True
                    except WatchError:
                        continue
        except self.errors as exc:
            raise self.failure("WATCH/MULTI/EXEC update", exc) from exc

    # -- records (sessions): a hash per record, changed by one Lua script ------------------------------------------

    def get_record(self, key: str) -> dict[str, bytes] | None:
        """Every field of the hash under ``key`` (``HGETALL``), or None when there is none."""
        if self._down.down_until:
            self._refuse_while_down("HGETALL")
        try:
            fields = self._command("HGETALL", self._prefix_bytes + key.encode("utf-8", "surrogatepass"))
        except self.errors as exc:
            raise self.failure("HGETALL", exc) from exc
        if not fields:
            return None
        if type(fields) is list:  # RESP2 as the connection parsed it: name, value, name, value...
            names = iter(fields)
            return {name.decode("utf-8", "surrogatepass"): value for name, value in zip(names, names)}
        return {name.decode("utf-8", "surrogatepass"): value for name, value in fields.items()}

    def merge_record(self, key: str, set_fields: dict[str, bytes], delete_fields: Iterable[str],
                     ttl: float | None, create: bool = True) -> bool:
        """Delete ``delete_fields``, set ``set_fields`` and apply ``ttl`` to the hash under ``key``, atomically, in
        one round trip (a Lua script); with ``create=False`` a missing record stays missing and False is returned."""
        if self._down.down_until:
            self._refuse_while_down("merging a record")
        args: list[Any] = [b"1" if create else b"0", _milliseconds(ttl) if ttl is not None else 0, len(set_fields)]
        for name, value in set_fields.items():
            args.append(name.encode("utf-8", "surrogatepass"))
            args.append(value if type(value) is bytes else _as_bytes(value, f"{key} field {name}"))
        args.extend(name.encode("utf-8", "surrogatepass") for name in delete_fields)
        try:
            return bool(self.run_script(_MERGE_RECORD, [self._key(key)], args))
        except self.errors as exc:
            raise self.failure("merging a record", exc) from exc

    def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left; None when it has no TTL or does not exist (for tools and tests)."""
        if self._down.down_until:
            self._refuse_while_down("PTTL")
        try:
            remaining = self._client.pttl(self._key(key))
        except self.errors as exc:
            raise self.failure("PTTL", exc) from exc
        return remaining / 1000.0 if remaining >= 0 else None

    def cleanup(self) -> int:
        return 0  # redis expires keys itself

    def close(self) -> None:
        key, self._shared_key = self._shared_key, None
        if key is not None:
            shared_clients.checkin(key)

    def describe(self) -> str:
        return f"{self.name} backend at {self.target.display}"


class RedisClusterBackend(RedisBackend):
    """The ``rediscluster`` backend: :class:`RedisBackend` on a Redis Cluster.

    :param url: the cluster's startup nodes: ``redis+cluster://[user:password@]host:port,host:port``
        (``rediss+cluster://`` for TLS), Beaker's ``redis://host:port,redis://host:port``, or
        ``host:port,host:port``; one reachable node is enough, the others are discovered.
    :param urls: Beaker's name for the nodes: a list of node URLs, or the same comma-separated string.

    The other options are those of :class:`RedisBackend`. ``get_many`` groups keys by hash slot and sends one
    ``MGET`` per slot in a single pipeline; it is not atomic across slots.
    """

    name = "rediscluster"
    cluster_only = True


def _as_bytes(value: Any, key: str) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise SerializationError(f"the redis backend stores bytes; the value for key {key!r} is a "
                             f"{type(value).__name__}")

