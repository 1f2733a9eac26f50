"""Network backends: beaker-core on real redis-server and memcached processes, against the raw clients and Beaker.

Run through ``bench/run network``, or ``bench/.venv/bin/python bench/bench_network.py [--only TEXT] ...``.

The servers are started by the plugins' test helpers (:mod:`beaker_redis.testing`, :mod:`beaker_memcached.testing`)
on free loopback ports (or taken from ``BEAKER_TEST_REDIS_URL`` / ``BEAKER_TEST_MEMCACHED_URL``) and stopped at the
end. Every contender talks to the same server over its own connection; values are the same dict everywhere, and the
raw clients read back the very bytes beaker-core stored (envelope header and JSON), so both sides move the same
number of bytes.

Round trips of a session request are counted by wrapping redis-py's ``send_packed_command`` (one call per command
or per pipeline, i.e. per round trip) for a few requests outside the timed loops, and cross-checked with the
server's ``INFO commandstats`` (which also counts the commands a Lua script runs inside the server).

Rows named ``step ...`` carry no target: they take beaker-core's work apart (the raw client sending what beaker-core
sends, the backend plugin's calls alone, the session layer on the memory backend) to show where the time goes.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from importlib.metadata import version

import beaker.cache as beaker_cache
from beaker.middleware import SessionMiddleware as BeakerSessionMiddleware

import beaker_core.cache as core_cache
from beaker_core.cache.envelope import HEADER as ENVELOPE_HEADER
from beaker_core.middleware import SessionMiddleware
from bench_session import Client, counter_with_save, counting_check
from harness import SUBJECT, Bound, Contender, Scenario, Session, Target, print_header

BEAKER = f"Beaker {version('Beaker')}"
RAW_REDIS = f"redis-py {version('redis')}"
RAW_MEMCACHED = f"pymemcache {version('pymemcache')}"
EXPIRE = 300
VALUE = {"id": 42, "name": "x" * 100, "tags": ["a", "b", "c"], "score": 3.5}
KEY = "user:42"


def expect(actual, expected=VALUE) -> None:
    if actual != expected:
        raise AssertionError(f"got {actual!r}, expected {expected!r}")


# -- servers -----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def redis_url():
    url = os.environ.get("BEAKER_TEST_REDIS_URL")
    if url:
        yield url
        return
    from beaker_redis.testing import start_redis
    server = start_redis()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def memcached_address():
    address = os.environ.get("BEAKER_TEST_MEMCACHED_URL")
    if address:
        yield address
        return
    from beaker_memcached.testing import start_memcached
    # one worker thread: memcached hands connections to its threads in turn, and a thread that wakes up on the other
    # CPU answers later than one on the same CPU, which would favour whichever contender's connection it got
    server = start_memcached(extra_args=("-t", "1"))
    try:
        yield server.url
    finally:
        server.stop()


def has_backend(name: str) -> bool:
    from beaker_core.registry import default_registry
    try:
        default_registry().backend_class(name)
        return True
    except Exception as exc:  # noqa: BLE001 - the reason is printed
        print(f"\n== {name}: skipped, the backend cannot be loaded: {exc}")
        return False


# -- round trips ---------------------------------------------------------------------------------------------------

class RoundTrips:
    """Counts what redis-py sends: one ``send_packed_command`` call is one round trip (a pipeline is one)."""

    def __init__(self):
        self.count = 0

    @contextlib.contextmanager
    def counting(self):
        from redis.connection import AbstractConnection
        original = AbstractConnection.send_packed_command

        def send_packed_command(connection, command, *args, **kwargs):
            self.count += 1
            return original(connection, command, *args, **kwargs)

        AbstractConnection.send_packed_command = send_packed_command
        try:
            yield self
        finally:
            AbstractConnection.send_packed_command = original


def command_stats(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()}


def per_request(request, requests: int, client) -> tuple[float, str]:
    """Round trips per request (redis-py's sends) and the server's command counts per request."""
    before = command_stats(client)
    with RoundTrips().counting() as trips:
        for _ in range(requests):
            request()
    after = command_stats(client)
    commands = {name: (after.get(name, 0) - before.get(name, 0)) / requests for name in after}
    commands.pop("info", None)
    shown = ", ".join(f"{name} {count:g}" for name, count in sorted(commands.items()) if count)
    return trips.count / requests, shown


def breakdown(core, raw_many, client_name: str, many_name: str) -> list[Contender]:
    """Where beaker-core's get hit spends its time beyond the raw GET, step by step (no targets):
    the raw client fetching the namespace's generation key and the value's key in one request (what beaker-core
    sends), then the backend plugin's ``get_many`` of those keys (key mapping, errors, node choice), then the whole
    ``Cache.get`` (plus the envelope header and the JSON decoding)."""
    keys = [core._generation_key, core._prefix + KEY]
    backend = core.backend
    stored_keys = _stored_keys(backend, keys)
    return [
        Contender(f"step 1: {client_name}", f"{many_name} of the generation and value keys", "many(KEYS)",
                  {"many": raw_many, "KEYS": stored_keys}),
        Contender("step 2: backend plugin", "get_many of the same keys", "backend.get_many(KEYS)",
                  {"backend": backend, "KEYS": keys}),
    ]


def _stored_keys(backend, keys: list[str]) -> list:
    """The keys as the plugin sends them to the server."""
    if hasattr(backend, "_key"):  # beaker-redis: prefix + key, UTF-8
        return [backend._key(key) for key in keys]
    from beaker_memcached.nodes import map_key
    return [map_key(backend.prefix, key) for key in keys]


# -- redis ---------------------------------------------------------------------------------------------------------

def redis_scenarios(url: str) -> list[Scenario]:
    import redis

    raw = redis.Redis.from_url(url)
    core = core_cache.Cache("bench-net", type="redis", url=url, expire=EXPIRE)
    old = beaker_cache.Cache("bench-net", type="ext:redis", url=url, expire=EXPIRE)
    core.put(KEY, VALUE)
    old.put(KEY, VALUE)
    stored = [key for key in raw.scan_iter(match=b"*bench-net*" + KEY.encode()) if b"beaker_cache" not in key]
    if len(stored) != 1:
        raise SystemExit(f"cannot find beaker-core's stored value in redis (keys: {stored!r})")
    payload = raw.get(stored[0])
    raw.set("raw:" + KEY, payload)
    json_part = payload[ENVELOPE_HEADER.size:]  # the header's binary fields may hold any byte, a "{" too

    expect(core.get(KEY))  # connected before counting, so a connection's handshake is not counted as the get's
    core_trips, core_commands = per_request(lambda: core.get(KEY), 50, raw)
    old_trips, old_commands = per_request(lambda: old.get(KEY), 50, raw)
    get_hit = Scenario("redis: cache get hit", [
        Contender(SUBJECT, "Cache.get", "cache.get(KEY)", {"cache": core, "KEY": KEY},
                  check=lambda: expect(core.get(KEY))),
        Contender(RAW_REDIS, "GET (same bytes)", "client.get(KEY)", {"client": raw, "KEY": "raw:" + KEY},
                  check=lambda: expect(raw.get("raw:" + KEY), payload)),
        Contender(f"{RAW_REDIS} +json", "GET + json.loads", "loads(client.get(KEY)[HEADER:])",
                  {"client": raw, "KEY": "raw:" + KEY, "loads": json.loads, "HEADER": len(payload) - len(json_part)}),
        Contender(BEAKER, "Cache.get (ext:redis)", "cache.get(KEY)", {"cache": old, "KEY": KEY},
                  check=lambda: expect(old.get(KEY))),
        *breakdown(core, raw_many=lambda keys: raw.execute_command("MGET", *keys), client_name=RAW_REDIS,
                   many_name="MGET"),
    ], [Target("within_ratio", RAW_REDIS, 1.15), Target("faster", BEAKER, 1.5)],
        note=f"{len(payload)} bytes stored by beaker-core (json); Beaker pickles; both on the same server",
        extra={"round trips per get (server commands)": f"beaker-core {core_trips:g} ({core_commands}); "
                                                        f"Beaker {old_trips:g} ({old_commands})"})
    return [get_hit, redis_session_scenario(url, raw)]


def redis_session_scenario(url: str, raw) -> Scenario:
    core_options = {"session.type": "redis", "session.url": url}
    old_options = {"session.type": "ext:redis", "session.url": url, "session.data_serializer": "json"}
    make_core = lambda: SessionMiddleware(counter_with_save, core_options)  # noqa: E731
    make_old = lambda: BeakerSessionMiddleware(counter_with_save, old_options)  # noqa: E731
    core_app = make_core()
    core_backend = core_app.session_manager.backend
    core_client = Client(core_app)
    core_client.request()
    old_client = Client(make_old())
    old_client.request()
    # the same request on the memory backend: what the middleware and session cost without any network
    make_memory = lambda: SessionMiddleware(counter_with_save, {"session.type": "memory"})  # noqa: E731
    memory_client = Client(make_memory())
    memory_client.request()

    # the raw baseline moves as many bytes as the stored session record
    session_keys = [key for key in raw.scan_iter(match=b"*") if b"session" in key.lower() and b"beaker_cache" not in key
                    and b"raw:" not in key]
    sizes = {}
    for key in session_keys:
        kind = raw.type(key)
        if kind == b"string":
            sizes[key] = len(raw.get(key))
        elif kind == b"hash":
            sizes[key] = sum(len(field) + len(value) for field, value in raw.hgetall(key).items())
    record_size = max(sizes.values()) if sizes else 100
    record = b"x" * record_size
    raw.set("raw:session", record)

    def raw_get_set():
        raw.get("raw:session")
        raw.set("raw:session", record)

    core_trips, core_commands = per_request(core_client.request, 20, raw)
    old_trips, old_commands = per_request(old_client.request, 20, raw)
    raw_trips, raw_commands = per_request(raw_get_set, 20, raw)
    scenario = Scenario("redis: modified session (counter through the WSGI middleware)", [
        Contender(SUBJECT, "counter + save()", "request()", {"request": core_client.request},
                  check=counting_check(make_core)),
        Contender(RAW_REDIS, "GET + SET", "get(KEY); set(KEY, RECORD)",
                  {"get": raw.get, "set": raw.set, "KEY": "raw:session", "RECORD": record}),
        Contender(BEAKER, "counter + save() (ext:redis)", "request()", {"request": old_client.request},
                  check=counting_check(make_old)),
        Contender("step: beaker-core, memory backend", "counter + save()", "request()",
                  {"request": memory_client.request}, check=counting_check(make_memory)),
        *record_steps(core_backend, raw),
    ], [Target("within_ratio", RAW_REDIS, 1.15)],
        note=f"the raw GET + SET moves a {record_size}-byte value, the size of beaker-core's stored record",
        bounds=[Bound("round trips per request", core_trips, 2, f"server commands per request: {core_commands}")],
        extra={"round trips per request (server commands)": f"raw {raw_trips:g} ({raw_commands}); "
                                                            f"Beaker {old_trips:g} ({old_commands})"},
        )
    return scenario


def record_steps(backend, raw) -> list[Contender]:
    """The backend calls of a modified session without the session layer: ``get_record`` then ``merge_record`` of
    the same fields (on a copy of the session's record, under a key of its own)."""
    if not getattr(backend, "atomic_records", False):
        return []
    hashes = [key for key in raw.scan_iter() if raw.type(key) == b"hash" and not key.startswith(b"bench-")]
    if len(hashes) != 1:
        print(f"   (no record step: {len(hashes)} hashes in redis)")
        return []
    prefix = getattr(backend, "_prefix_bytes", b"")
    fields = backend.get_record(hashes[0][len(prefix):].decode())
    backend.merge_record("bench-record", fields, (), None, create=True)
    return [Contender("step: backend plugin", "get_record + merge_record", "get('bench-record'); "
                      "merge('bench-record', FIELDS, (), None, create=False)",
                      {"get": backend.get_record, "merge": backend.merge_record, "FIELDS": fields})]


# -- memcached -----------------------------------------------------------------------------------------------------

def memcached_scenarios(address: str) -> list[Scenario]:
    from pymemcache.client.base import Client as MemcacheClient

    host, port = address.rsplit(":", 1)
    raw = MemcacheClient((host, int(port)))
    core = core_cache.Cache("bench-net", type="memcached", url=address, expire=EXPIRE)
    old = beaker_cache.Cache("bench-net", type="ext:memcached", url=address, expire=EXPIRE, memcache_module="memcache")
    core.put(KEY, VALUE)
    old.put(KEY, VALUE)
    # the bytes beaker-core stored, copied under a raw key (its own key is mapped by the plugin)
    payload = core._encode(KEY, VALUE, EXPIRE, 0)
    raw.set("raw:" + KEY, payload)
    return [Scenario("memcached: cache get hit", [
        Contender(SUBJECT, "Cache.get", "cache.get(KEY)", {"cache": core, "KEY": KEY},
                  check=lambda: expect(core.get(KEY))),
        Contender(RAW_MEMCACHED, "get (same bytes)", "client.get(KEY)", {"client": raw, "KEY": "raw:" + KEY},
                  check=lambda: expect(raw.get("raw:" + KEY), payload)),
        Contender(BEAKER, "Cache.get (ext:memcached)", "cache.get(KEY)", {"cache": old, "KEY": KEY},
                  check=lambda: expect(old.get(KEY))),
        *breakdown(core, raw_many=lambda keys: raw.get_many(keys), client_name=RAW_MEMCACHED, many_name="get_many"),
    ], [Target("within_ratio", RAW_MEMCACHED, 1.15), Target("faster", BEAKER, 1.5)],
        note=f"about {len(payload)} bytes from beaker-core; Beaker's ext:memcached runs on python-memcached "
             f"{version('python-memcached')} (it does not support pymemcache) and pickles")]


def cpu_arguments(parser) -> None:
    parser.add_argument("--cpus", default=os.environ.get("BENCH_CPUS", "0"),
                        help="CPUs this process and the servers it starts run on, as taskset takes them "
                             "(default 0: client and server share one CPU; 'all' leaves the scheduler free)")


def pin(cpus: str) -> str:
    """Run on ``cpus`` (servers started afterwards inherit it); describes what was done.

    On one shared CPU a round trip is two context switches, and every contender pays the same for them. Left free,
    the scheduler puts client and server on different CPUs or not from one moment to the next, and a wake-up across
    CPUs of this virtual machine costs tens of microseconds: the figures then measure where the server happened to
    run more than the clients' own work.
    """
    if cpus == "all" or not hasattr(os, "sched_setaffinity"):
        return "not pinned (the scheduler chooses)"
    chosen: set[int] = set()
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        chosen.update(range(int(first), int(last or first) + 1))
    os.sched_setaffinity(0, chosen)
    return f"benchmark and servers pinned to CPU {cpus}"


def main() -> int:
    # a round trip shares two cores with the server: shorter loops and more rounds interleave the contenders more
    # finely, so that a busy moment of the machine falls on all of them
    session = Session("bench_network", __doc__.splitlines()[0], repeats=41, min_time=0.03, arguments=cpu_arguments)
    placement = pin(session.options.cpus)
    print_header("network backends benchmark", ("beaker-core", "beaker-redis", "beaker-memcached", "Beaker",
                                                 "redis", "hiredis", "pymemcache", "python-memcached"))
    from redis.utils import HIREDIS_AVAILABLE
    # beaker-redis depends on redis[hiredis]: the raw redis-py client of this process parses with it as well
    print(f"#   redis-py reply parser: {'hiredis (C)' if HIREDIS_AVAILABLE else 'pure Python'}, on both sides")
    print(f"#   placement: {placement}; memcached runs one worker thread")
    if has_backend("redis"):
        with redis_url() as url:
            for scenario in redis_scenarios(url):
                session.run(scenario)
    if has_backend("memcached"):
        with memcached_address() as address:
            for scenario in memcached_scenarios(address):
                session.run(scenario)
    return session.finish()


if __name__ == "__main__":
    sys.exit(main())
