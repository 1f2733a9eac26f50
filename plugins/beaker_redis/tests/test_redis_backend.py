"""What is special to the redis backends, against real redis-server processes (see conftest.py)."""
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from beaker_core.cache import Cache
from beaker_core.exceptions import BackendError, ConfigurationError, LockTimeout, SerializationError
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.sessions import WSGIClient, session_app
from beaker_core.testing.concurrency import run_in_threads
from beaker_redis.backend import RedisBackend, RedisClusterBackend
from beaker_redis.connection import shared_clients
from beaker_redis.lock import RedisLock


@pytest.fixture
def prefix():
    return f"bkredis-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def raw(redis_server):
    """redis-py talking to the same server, to look at what the backend stored."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def store(redis_server, prefix):
    backend = RedisBackend(url=redis_server.url, prefix=prefix)
    yield backend
    backend.close()


def sent_by_clients(url, action) -> list:
    """The commands clients sent to the server while ``action`` ran, sorted (seen with MONITOR; the commands a Lua
    script runs inside the server are left out: they cost no round trip)."""
    seen = []
    marker = f"end-{uuid.uuid4().hex}"
    ready = threading.Event()
    raw = redis.Redis.from_url(url)
    marker_client = redis.Redis.from_url(url)
    marker_client.ping()  # connected before watching, so its handshake is not seen

    def watch():
        with raw.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if marker in command["command"]:
                    return
                if command.get("client_type") != "lua":
                    seen.append(command["command"].split()[0].lower())

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert ready.wait(5)
    time.sleep(0.05)  # MONITOR is in effect once the server answered it
    action()
    marker_client.echo(marker)
    watcher.join(10)
    marker_client.close()
    raw.close()
    return sorted(seen)


# -- the installed distribution -------------------------------------------------------------------------------

def test_entry_point_resolves_every_name_to_the_beaker_redis_distribution():
    registry = Registry()
    for name, canonical, factory in (("redis", "redis", RedisBackend), ("ext:redis", "redis", RedisBackend),
                                     ("rediscluster", "rediscluster", RedisClusterBackend),
                                     ("ext:rediscluster", "rediscluster", RedisClusterBackend)):
        registration = registry.lookup("backend", name)
        assert (registration.name, registration.factory) == (canonical, factory)
        assert registration.distribution == "beaker-core-redis"
        assert registration.plugin == "redis"
    lock = registry.lookup("lock", "redis")
    assert lock.factory is RedisLock and lock.distribution == "beaker-core-redis"


def test_open_backend_through_the_registry(redis_server, prefix):
    registry = Registry()
    backend = registry.open_backend("ext:redis", url=redis_server.url, prefix=prefix, lock_dir="/ignored")
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
    assert registry.open_backend("redis", url=redis_server.url, prefix=prefix, lock_dir="/ignored") is backend
    assert backend.preferred_lock == "redis"
    registry.close()


def test_importing_the_plugin_does_not_import_redis_py():
    code = ("import sys, beaker_redis; from beaker_core.registry import Registry; "
            "Registry().lookup('backend', 'redis'); print('redis' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- keys, values and TTLs as redis sees them ---------------------------------------------------------------------

def test_native_ttl_is_visible_in_redis(store, raw, prefix):
    store.set("expiring", b"v", ttl=30)
    store.set("fractional", b"v", ttl=1.5)
    store.set("forever", b"v")
    assert 29 <= raw.ttl(prefix + "expiring") <= 30
    assert 1000 < raw.pttl(prefix + "fractional") <= 1500
    assert raw.ttl(prefix + "forever") == -1
    assert store.touch("expiring", None) is True
    assert raw.ttl(prefix + "expiring") == -1
    assert store.touch("forever", 100) is True
    assert 99 <= raw.ttl(prefix + "forever") <= 100
    assert store.add("added", b"v", ttl=60) is True
    assert 59 <= raw.ttl(prefix + "added") <= 60


def test_keys_are_stored_under_the_prefix_in_utf8(store, raw, prefix):
    store.set("clé 1", b"v")
    assert raw.get((prefix + "clé 1").encode("utf-8")) == b"v"
    assert raw.get("clé 1") is None
    assert list(store.keys()) == ["clé 1"]


def test_glob_characters_in_prefixes_are_matched_literally(redis_server, prefix):
    star = RedisBackend(url=redis_server.url, prefix=prefix + "a*")
    plain = RedisBackend(url=redis_server.url, prefix=prefix + "ab")
    plain.set("x", b"1")
    star.set("[y]?", b"2")
    assert list(star.keys()) == ["[y]?"]
    assert list(star.keys("[")) == ["[y]?"]
    assert star.delete_prefix("") == 1
    assert plain.get("x") == b"1"
    plain.clear()
    star.close()
    plain.close()


def test_enumeration_uses_scan_on_a_server_without_keys(server_factory):
    server = server_factory.redis(extra_args=("--rename-command", "KEYS", ""))
    backend = RedisBackend(url=server.url, prefix="p:")
    with pytest.raises(redis.ResponseError):
        backend.client.keys("*")  # the command really is gone
    backend.set_many({f"k{index}": b"v" for index in range(1200)})
    backend.set("other", b"v")
    assert len(set(backend.keys("k"))) == 1200
    assert backend.delete_prefix("k") == 1200
    assert list(backend.keys()) == ["other"]
    assert backend.clear() == 1
    backend.close()


def test_values_must_be_bytes(store):
    for value in ("text", 1, None, {"a": 1}):
        with pytest.raises(SerializationError):
            store.set("k", value)
    store.set("k", bytearray(b"ok"))
    assert store.get("k") == b"ok"


def test_databases_from_the_url_and_the_db_option_are_separate(redis_server, prefix):
    if not hasattr(redis_server, "port"):
        pytest.skip("needs a server started by the fixtures")
    db3 = RedisBackend(url=f"redis://127.0.0.1:{redis_server.port}/3", prefix=prefix)
    db4 = RedisBackend(url=f"redis://127.0.0.1:{redis_server.port}/3", prefix=prefix, db=4)
    db3.set("k", b"three")
    assert db4.get("k") is None
    assert redis.Redis(port=redis_server.port, db=3).get(prefix + "k") == b"three"
    db3.delete("k")
    db3.close()
    db4.close()


def test_unix_socket_url(server_factory, tmp_path):
    socket_path = str(tmp_path / "redis.sock")
    server_factory.redis(extra_args=("--unixsocket", socket_path, "--unixsocketperm", "700"))
    backend = RedisBackend(url=f"unix://{socket_path}?db=2")
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
    assert backend.describe() == f"redis backend at unix://{socket_path}?db=2"
    backend.close()


# -- clients and pools -------------------------------------------------------------------------------------------

def test_one_client_per_url_and_options_shared_and_closed_by_the_last_user(redis_server):
    url = redis_server.url
    name = {"client_name": f"pool-test-{uuid.uuid4().hex}"}  # options no other test uses
    entries = len(shared_clients)
    first = RedisBackend(url=url, prefix="a:", connection_options=name)
    second = RedisBackend(url=url, prefix="b:", connection_options=name)
    other_options = RedisBackend(url=url, socket_timeout=1, connection_options=name)
    assert len(shared_clients) == entries + 2
    assert first.client is second.client
    assert other_options.client is not first.client
    first.close()
    first.close()  # idempotent
    second.set("still", b"works")
    assert second.get("still") == b"works"
    second.delete("still")
    second.close()
    other_options.close()
    assert len(shared_clients) == entries


def test_a_client_instance_can_be_passed(redis_server, prefix):
    client = redis.Redis.from_url(redis_server.url)
    for backend in (RedisBackend(client=client, prefix=prefix), RedisBackend(url=client, prefix=prefix)):
        backend.set("k", b"v")
        assert client.get(prefix + "k") == b"v"
        backend.close()
    assert client.ping()  # the caller's client stays open
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisBackend(client=redis.Redis.from_url(redis_server.url, decode_responses=True))
    with pytest.raises(ConfigurationError, match="RedisCluster"):
        RedisClusterBackend(client=client)
    with pytest.raises(ConfigurationError, match="apply to a url"):
        RedisBackend(client=client, socket_timeout=3)


# -- configuration errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({}, "needs a url"),
    ({"url": "http://localhost:6379"}, "must start with redis://"),
    ({"url": "localhost:6379"}, "must start with redis://"),
    ({"url": "redis://localhost:6379", "client": object()}, "either url or client"),
    ({"client": object()}, "must be a redis.Redis"),
    ({"url": "redis://localhost:6379", "prefix": 3}, "prefix must be a string"),
    ({"url": "redis://localhost:6379", "socket_timeout": "soon"}, "socket_timeout"),
    ({"url": "redis://localhost:6379", "max_connections": "0"}, "max_connections"),
    ({"url": "redis://localhost:6379", "db": "-1"}, "db"),
    ({"url": "redis://localhost:6379", "connection_options": "x=1"}, "connection_options"),
    ({"url": "redis+cluster://localhost:7000/1"}, "only database 0"),
    ({"url": "redis+cluster://localhost:7000?x=1"}, "no query string"),
    ({"url": "redis+cluster://localhost:notaport"}, "invalid port"),
    ({"url": "redis+cluster://localhost:99999"}, "out of range"),
    ({"url": "redis://a:7000/2,redis://b:7001/2"}, "only database 0"),
    ({"url": "unix:///tmp/a.sock,unix:///tmp/b.sock"}, "not unix sockets"),
    ({"url": "redis+cluster://"}, "names no node"),
])
def test_configuration_errors_are_clear(options, message):
    with pytest.raises(ConfigurationError, match=message):
        RedisBackend(**options)


def test_unknown_options_through_the_registry_list_the_accepted_ones(redis_server):
    with pytest.raises(ConfigurationError, match="accepted: .*prefix"):
        Registry().open_backend("redis", url=redis_server.url, pool_size=3)


# -- unreachable servers and passwords ---------------------------------------------------------------------------

def test_unreachable_server_names_backend_and_url_but_not_the_password():
    backend = RedisBackend(url="redis://alice:s3cr%40t-pw@127.0.0.1:1/5", socket_connect_timeout=1)
    for operation in (lambda: backend.get("k"), lambda: backend.get_many(["a", "b"]),
                      lambda: backend.set("k", b"v", 5), lambda: backend.delete("k"), lambda: backend.incr("n"),
                      lambda: list(backend.keys()), lambda: backend.merge_record("r", {"a": b"1"}, [], None)):
        with pytest.raises(BackendError) as raised:
            operation()
        message = str(raised.value)
        assert "redis backend at redis://alice@127.0.0.1:1/5" in message
        assert "s3cr" not in message and "%40t-pw" not in message
    assert "s3cr" not in repr(backend) and "s3cr" not in backend.describe()
    backend.close()


def test_wrong_password_against_a_real_server_is_not_shown(server_factory):
    server = server_factory.redis(password="right-pass")
    good = RedisBackend(url=server.url)
    good.set("k", b"v")
    assert good.get("k") == b"v"
    for backend in (RedisBackend(url=f"redis://:wrong-pass@127.0.0.1:{server.port}/0"),
                    RedisBackend(url=f"redis://127.0.0.1:{server.port}/0", password="wrong-pass"),
                    RedisBackend(url=f"redis://127.0.0.1:{server.port}/0?password=wrong-pass")):
        with pytest.raises(BackendError) as raised:
            backend.get("k")
        assert "wrong-pass" not in str(raised.value) and "right-pass" not in str(raised.value)
        assert f"127.0.0.1:{server.port}" in str(raised.value)
        backend.close()
    good.close()


def test_server_stopped_while_in_use_gives_backend_error_then_recovers(server_factory):
    server = server_factory.redis()
    backend = RedisBackend(url=server.url)
    backend.set("k", b"v")
    server.kill()
    with pytest.raises(BackendError, match=f"127.0.0.1:{server.port}"):
        backend.get("k")
    server.restart()
    backend.set("k", b"again")  # a fresh connection from the same pool
    assert backend.get("k") == b"again"
    backend.close()


# -- the lock ----------------------------------------------------------------------------------------------------

def test_lock_key_lives_under_the_prefix_with_its_lease(store, raw, prefix):
    lock = RedisLock("job", backend=store, expire=60, lease=20)
    with lock:
        assert lock.held
        assert 19 <= raw.ttl(prefix + "beaker-lock:job") <= 20
    assert not lock.held
    assert raw.exists(prefix + "beaker-lock:job") == 0


def test_lock_expires_so_a_crashed_holder_does_not_block(store):
    abandoned = RedisLock("job", backend=store, expire=0.3)
    assert abandoned.acquire(False)
    contender = RedisLock("job", backend=store, timeout=5)
    started = time.monotonic()
    assert contender.acquire(True, 5)
    assert time.monotonic() - started < 4
    contender.release()


def test_release_after_expiry_leaves_the_next_holders_lock_alone(store, caplog):
    slow = RedisLock("job", backend=store, expire=0.2)
    assert slow.acquire()
    time.sleep(0.4)  # slow's lock expired
    current = RedisLock("job", backend=store, expire=30)
    assert current.acquire(False)
    slow.release()  # must not delete current's lock
    assert "expired before it was released" in caplog.text
    third = RedisLock("job", backend=store)
    assert third.acquire(False) is False
    current.release()
    assert third.acquire(False) is True
    third.release()


def test_lock_timeout_and_errors(store, redis_server):
    holder = RedisLock("job", backend=store)
    with holder:
        with pytest.raises(LockTimeout):
            with RedisLock("job", backend=store, timeout=0.2):
                pass
    with pytest.raises(RuntimeError, match="unheld"):
        holder.release()
    with pytest.raises(ConfigurationError, match="needs a redis backend or a url"):
        RedisLock("job", backend=object())
    with pytest.raises(ConfigurationError, match="expire"):
        RedisLock("job", backend=store, expire=0)
    with pytest.raises(ConfigurationError, match="timeout"):
        RedisLock("job", backend=store, timeout="never")
    standalone = RedisLock("job", url=redis_server.url)
    with standalone:
        pass
    assert RedisLock("other", url=redis_server.url).backend is standalone.backend  # one backend per url
    with pytest.raises(ConfigurationError, match="the redis lock's url must be a string, not list"):
        RedisLock("job", url=[redis_server.url])


def test_lock_on_an_unreachable_server_raises_backend_error():
    backend = RedisBackend(url="redis://:pw-secret@127.0.0.1:1/0")
    with pytest.raises(BackendError) as raised:
        RedisLock("job", backend=backend).acquire(True, 1)
    assert "pw-secret" not in str(raised.value)
    backend.close()


# -- caching and sessions ----------------------------------------------------------------------------------------

def test_cache_uses_the_redis_lock_and_native_ttls(redis_server, raw, prefix):
    cache = Cache("ns", type="redis", url=redis_server.url, prefix=prefix, expire=30, registry=Registry())
    assert cache._lock_class is RedisLock
    assert cache.get_or_create("k", lambda: {"v": 1}) == {"v": 1}
    keys = [key for key in raw.scan_iter(match=prefix + "*") if b"generation" not in key]
    assert len(keys) == 1
    assert 0 < raw.ttl(keys[0]) <= 60  # expire plus the stale period, set by redis itself


def test_session_with_timeout_has_a_ttl_in_redis(redis_server, raw, prefix):
    app = SessionMiddleware(session_app, {"session.type": "redis", "session.url": redis_server.url,
                                          "session.prefix": prefix, "session.timeout": "30"}, registry=Registry())
    client = WSGIClient(app)
    assert [client.json("/incr") for _ in range(3)] == [1, 2, 3]
    session_keys = list(raw.scan_iter(match=prefix + "session:*"))
    assert len(session_keys) == 1
    assert 0 < raw.ttl(session_keys[0]) <= 30
    assert raw.type(session_keys[0]) == b"hash"  # atomic records: one field per session key


def test_modified_session_costs_two_commands_and_an_untouched_one_none(server_factory):
    server = server_factory.redis()
    app = SessionMiddleware(session_app, {"session.type": "redis", "session.url": server.url,
                                          "session.timeout": "300"}, registry=Registry())
    client = WSGIClient(app)
    client.json("/incr")
    client.json("/incr")  # the merge script is loaded by now

    assert sent_by_clients(server.url, lambda: client.json("/incr")) == ["evalsha", "hgetall"]
    assert sent_by_clients(server.url, lambda: client.json("/noop")) == []
    assert client.json("/get") == {"counter": 3}


# -- timeouts --------------------------------------------------------------------------------------------------------

def test_a_server_that_stops_answering_times_out():
    from beaker_core.testing.servers import SilentServer
    with SilentServer() as silent:
        backend = RedisBackend(url=f"redis://{silent.address}/0", socket_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BackendError, match=f"redis backend at redis://{silent.address}/0: GET failed: no reply"):
            backend.get("k")
        assert time.monotonic() - started < 10  # bounded, not hanging
        backend.close()


def test_reply_timeouts_are_kernel_socket_options(redis_server):
    import socket
    import struct
    backend = RedisBackend(url=redis_server.url, socket_timeout=2.5)
    backend.get("warm-up")
    connection = backend.client.connection_pool.make_connection()  # a connection as the pool makes them
    try:
        connection.connect()
        sock = connection._sock
        assert sock.gettimeout() is None  # no Python timeout: no poll() before each read
        seconds, microseconds = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
        assert seconds + microseconds / 1e6 == pytest.approx(2.5, abs=0.01)
    finally:
        connection.disconnect()
    backend.close()


def test_record_merge_with_thousands_of_fields(store):
    fields = {f"field{index}": str(index).encode() for index in range(5000)}
    assert store.merge_record("big", fields, [], 60) is True
    assert store.get_record("big") == fields
    gone = [f"field{index}" for index in range(0, 5000, 2)]
    changed = {f"new{index}": b"n" for index in range(4500)}
    assert store.merge_record("big", changed, gone, 60, create=False) is True
    expected = {name: value for name, value in fields.items() if name not in set(gone)}
    assert store.get_record("big") == {**expected, **changed}


def test_scripts_are_loaded_again_after_the_server_forgot_them(store):
    assert store.merge_record("rec", {"a": b"1"}, [], None) is True
    lock = RedisLock("job", backend=store)
    lock.acquire()
    store.client.script_flush()  # as after a restart or a failover
    lock.release()
    assert RedisLock("job", backend=store).acquire(False) is True
    assert store.merge_record("rec", {"b": b"2"}, [], None, create=False) is True
    assert store.get_record("rec") == {"a": b"1", "b": b"2"}


# -- the direct command path (MGET, HGETALL, EVALSHA) -------------------------------------------------------------

def test_hot_commands_survive_connections_the_server_closed(store, raw, prefix):
    """A connection the server dropped (idle timeout, CLIENT KILL, a restart) fails once; the command is sent again
    on a new connection, so the caller sees no error."""
    store.set("k", b"v")
    store.merge_record("rec", {"a": b"1"}, [], None)
    for operation, expected in ((lambda: store.get_many(["k", "absent"]), [b"v", None]),
                                (lambda: store.get_record("rec"), {"a": b"1"}),
                                (lambda: store.merge_record("rec", {"b": b"2"}, [], None, create=False), True)):
        operation()  # a pooled connection exists
        killed = raw.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        assert operation() == expected
    assert store.get_record("rec") == {"a": b"1", "b": b"2"}


def test_hot_commands_on_a_stopped_server_raise_backend_error_then_recover(server_factory):
    server = server_factory.redis()
    backend = RedisBackend(url=server.url)
    backend.set("k", b"v")
    backend.merge_record("rec", {"a": b"1"}, [], None)
    server.kill()
    for operation, name in ((lambda: backend.get_many(["k"]), "MGET"), (lambda: backend.get_record("rec"), "HGETALL"),
                            (lambda: backend.merge_record("rec", {}, [], None), "merging a record")):
        with pytest.raises(BackendError, match=f"127.0.0.1:{server.port}/0: {name} failed"):
            operation()
    server.restart()
    backend.set("k", b"again")
    assert backend.get_many(["k"]) == [b"again"]
    backend.close()


def test_hot_commands_time_out_once_without_a_second_wait():
    from beaker_core.testing.servers import SilentServer
    with SilentServer() as silent:
        backend = RedisBackend(url=f"redis://{silent.address}/0", socket_timeout=0.5)
        for operation, name in ((lambda: backend.get_many(["k", "l"]), "MGET"),
                                (lambda: backend.get_record("rec"), "HGETALL")):
            started = time.monotonic()
            with pytest.raises(BackendError, match=f"{name} failed: no reply"):
                operation()
            assert time.monotonic() - started < 0.5 * 2  # one timeout, not a retry that waits again
        backend.close()


def test_a_client_passed_in_keeps_its_own_connection(redis_server, prefix):
    client = redis.Redis.from_url(redis_server.url, single_connection_client=True)
    backend = RedisBackend(client=client, prefix=prefix)
    backend.set("k", b"v")
    assert backend.get_many(["k", "absent"]) == [b"v", None]
    assert backend.merge_record("rec", {"a": b"1"}, [], None) is True
    assert backend.get_record("rec") == {"a": b"1"}
    assert client.connection_pool._created_connections == 1  # everything went through the client's one connection
    backend.close()
    client.close()


def _connections(raw) -> int:
    """Client connections the server has open, other than ``raw``'s own."""
    return len(raw.client_list()) - 1


def test_hot_commands_reuse_a_few_connections_across_threads(server_factory):
    server = server_factory.redis()
    raw = redis.Redis.from_url(server.url)
    backend = RedisBackend(url=server.url)
    backend.set("k", b"v")
    backend.merge_record("rec", {"a": b"1"}, [], None)

    def work(number):
        for _ in range(200):
            assert backend.get_many(["k", "absent"]) == [b"v", None]
            assert backend.merge_record("rec", {f"t{number}": b"x"}, [], None, create=False) is True
            assert backend.get_record("rec")[f"t{number}"] == b"x"

    run_in_threads(work, 8)
    # at most one connection per thread for the hot commands, plus the pool's for SET
    assert 1 <= _connections(raw) <= 8 + 1
    assert len(backend.get_record("rec")) == 9
    backend.close()
    assert _connections(raw) == 0  # the last user closed every connection, the idle hot ones included
    raw.close()


def test_hot_commands_stay_within_max_connections(server_factory):
    server = server_factory.redis()
    raw = redis.Redis.from_url(server.url)
    backend = RedisBackend(url=server.url, max_connections=2)
    backend.set("k", b"v")
    held = []
    # commands in flight at once, each on its own connection: take them from the hot set without giving them back
    from beaker_redis.fastpath import direct_commands
    commands = direct_commands(backend.client)
    while True:
        connection = commands._open()
        if connection is None:
            break
        held.append(connection)
    assert len(held) == 2  # the hot set opens no more than max_connections
    assert backend.get_many(["k"]) == [b"v"]  # beyond the limit, the command goes through the pool
    assert backend.client.connection_pool._created_connections <= 2
    for connection in held:
        connection.disconnect()
    backend.close()
    raw.close()


def test_an_error_reply_leaves_the_hot_connection_usable(store, raw, prefix):
    raw.set(prefix + "text", b"not a hash")
    before = _connections(raw)
    for _ in range(3):
        with pytest.raises(BackendError, match="HGETALL failed: ResponseError: WRONGTYPE"):
            store.get_record("text")
        store.set("k", b"v")
        assert store.get_many(["k"]) == [b"v"]
    assert _connections(raw) <= before + 2


def test_a_forked_child_opens_its_own_hot_connections(redis_server, prefix):
    import os
    backend = RedisBackend(url=redis_server.url, prefix=prefix)
    backend.set("k", b"parent")
    assert backend.get_many(["k"]) == [b"parent"]  # the parent holds an idle hot connection now
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its reads must not interleave with the parent's on a shared socket
        try:
            from beaker_redis.fastpath import direct_commands
            results = [direct_commands(backend.client)._idle == []]  # the inherited connection was forgotten
            for index in range(200):
                backend.set(f"c{index}", str(index).encode())
                results.append(backend.get_many([f"c{index}"]) == [str(index).encode()])
            os.write(write_fd, b"ok" if all(results) else b"wrong")
        finally:
            os._exit(0)
    os.close(write_fd)
    for _ in range(200):
        assert backend.get_many(["k"]) == [b"parent"]
    os.waitpid(pid, 0)
    assert os.read(read_fd, 10) == b"ok"
    os.close(read_fd)
    backend.close()
