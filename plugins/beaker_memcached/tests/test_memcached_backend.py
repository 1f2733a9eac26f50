"""What is special to the memcached backend, against real memcached processes (see conftest.py)."""
import hashlib
import multiprocessing
import os
import subprocess
import sys
import time
import uuid

import pytest
from pymemcache.client.base import Client

from beaker_core.cache import Cache
from beaker_core.exceptions import BackendError, ConfigurationError, LockTimeout, SerializationError, ValueTooLarge
from beaker_core.registry import Registry
from beaker_memcached.backend import ITEM_OVERHEAD, MemcachedBackend
from beaker_memcached.lock import MemcachedLock
from beaker_memcached.nodes import HASHED_MARK, map_key


@pytest.fixture
def prefix():
    return f"bkmc-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def server(memcached_server):
    if not hasattr(memcached_server, "port"):
        pytest.skip("needs a memcached started by the fixtures (BEAKER_TEST_MEMCACHED_URL is set)")
    return memcached_server


@pytest.fixture
def raw(server):
    """pymemcache talking to the same server, to look at what the backend stored."""
    client = Client(("127.0.0.1", server.port), default_noreply=False)
    yield client
    client.close()


@pytest.fixture
def store(memcached_server, prefix):
    backend = MemcachedBackend(url=memcached_server.url, prefix=prefix)
    yield backend
    backend.close()


# -- the installed distribution -------------------------------------------------------------------------------

def test_entry_point_resolves_every_name_to_the_beaker_memcached_distribution():
    registry = Registry()
    for name in ("memcached", "ext:memcached", "ext:pylibmc", "ext:bmemcached"):
        registration = registry.lookup("backend", name)
        assert registration.name == "memcached" and registration.factory is MemcachedBackend
        assert registration.distribution == "beaker-core-memcached" and registration.plugin == "memcached"
    lock = registry.lookup("lock", "memcached")
    assert lock.factory is MemcachedLock and lock.distribution == "beaker-core-memcached"


def test_importing_the_plugin_does_not_import_pymemcache():
    code = ("import sys, beaker_memcached; from beaker_core.registry import Registry; "
            "Registry().lookup('backend', 'memcached'); print('pymemcache' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_beaker_options_through_the_registry(memcached_server, prefix):
    backend = Registry().open_backend("ext:memcached", url=memcached_server.url, prefix=prefix,
                                      lock_dir="/beaker/needed/this", memcache_module="pylibmc")
    backend.set("k", b"v")
    assert backend.get("k") == b"v"
    assert backend.preferred_lock == "memcached"


# -- configuration -----------------------------------------------------------------------------------------------

def test_url_forms():
    def servers(url):
        return MemcachedBackend(url=url).servers

    assert servers("127.0.0.1:11211") == ["127.0.0.1:11211"]
    assert servers("10.0.0.1:1;10.0.0.2:2; 10.0.0.3 ") == ["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:11211"]
    assert servers("a:1,b:2") == ["a:1", "b:2"]
    assert servers(["a:1", "memcached://b:2/"]) == ["a:1", "b:2"]
    assert servers("[::1]:5000;localhost") == ["[::1]:5000", "localhost:11211"]
    assert servers("unix:/run/mc.sock;/tmp/other.sock") == ["unix:/run/mc.sock", "unix:/tmp/other.sock"]


@pytest.mark.parametrize("options, message", [
    ({}, "needs a url"),
    ({"url": 11211}, "needs a url"),
    ({"url": " ; "}, "at least one server"),
    ({"url": "a:1;a:1"}, "listed twice"),
    ({"url": "host:port"}, "invalid port"),
    ({"url": "host:0"}, "out of range"),
    ({"url": "ho st:1"}, "invalid server address"),
    ({"url": "a:1", "prefix": "has space"}, "prefix"),
    ({"url": "a:1", "prefix": "é"}, "prefix"),
    ({"url": "a:1", "prefix": 5}, "prefix"),
    ({"url": "a:1", "max_item_size": "lots"}, "max_item_size"),
    ({"url": "a:1", "max_item_size": 10}, "too small"),
    ({"url": "a:1", "strict": "sometimes"}, "strict"),
    ({"url": "a:1", "timeout": "0"}, "timeout"),
    ({"url": "a:1", "dead_retry": "nan"}, "dead_retry"),
])
def test_configuration_errors_are_clear(options, message):
    with pytest.raises(ConfigurationError, match=message):
        MemcachedBackend(**options)


def test_sizes_accept_memcached_notation():
    assert MemcachedBackend(url="a:1", max_item_size="2m").max_item_size == 2 * 1024 * 1024
    assert MemcachedBackend(url="a:1", max_item_size="512k").max_item_size == 512 * 1024
    assert MemcachedBackend(url="a:1", max_item_size="4194304").max_item_size == 4194304
    assert MemcachedBackend(url="a:1").max_value_size == 1024 * 1024 - ITEM_OVERHEAD


# -- keys ----------------------------------------------------------------------------------------------------------

def test_valid_keys_are_stored_as_they_are_and_others_hashed(store, raw, prefix):
    longest_plain = "p" * (250 - len(prefix))
    store.set("plain-key", b"1")
    store.set(longest_plain, b"2")
    store.set(longest_plain + "p", b"3")
    store.set("with space", b"4")
    assert raw.get(prefix + "plain-key") == b"1"
    assert raw.get(prefix + longest_plain) == b"2"
    hashed = prefix + HASHED_MARK + hashlib.sha256((longest_plain + "p").encode()).hexdigest()
    assert raw.get(hashed) == b"3"
    assert raw.get(prefix + HASHED_MARK + hashlib.sha256(b"with space").hexdigest()) == b"4"


def test_keys_never_collide(store):
    hashed_form = map_key("", "a key with spaces")[len(""):]
    keys = [
        "a key with spaces", "a_key_with_spaces", hashed_form, HASHED_MARK, HASHED_MARK + "x",
        "tab\there", "tab here", "nl\nhere", "nul\x00here", "del\x7fhere", "ünïcode", "unicode",
        "x" * 300, "x" * 301, "x" * 250, "x" * 249, "", " ", "  ", "\x00", "é" * 125, "é" * 126,
    ]
    for index, key in enumerate(keys):
        store.set(key, str(index).encode())
    assert store.get_many(keys) == [str(index).encode() for index in range(len(keys))]
    mapped = [map_key(store.prefix, key) for key in keys]
    assert len(set(mapped)) == len(keys)
    assert all(len(item) <= 250 and item.isascii() and " " not in item for item in mapped)



def test_remembered_key_mappings_stay_right_past_the_memo_size(store, raw, prefix):
    from beaker_memcached.backend import _MAPPED_KEYS_KEPT
    keys = [f"k{index}" if index % 3 else f"with space {index}" for index in range(_MAPPED_KEYS_KEPT * 2 + 7)]
    store.set_many({key: key.encode() for key in keys})
    for start in range(0, len(keys), 50):  # read twice, so that later reads take remembered mappings
        batch = keys[start:start + 50]
        assert store.get_many(batch) == [key.encode() for key in batch]
        assert store.get_many(batch) == [key.encode() for key in batch]
    assert len(store._mapped_keys) <= _MAPPED_KEYS_KEPT
    assert raw.get(prefix + "k1") == b"k1"  # a remembered plain key is still stored as it is
    assert raw.get(prefix + HASHED_MARK + hashlib.sha256(b"with space 0").hexdigest()) == b"with space 0"

def test_no_enumeration_and_never_a_flush(store, raw, prefix):
    raw.set("another-application", b"precious")
    store.set("mine", b"v")
    for call in (lambda: list(store.keys()), lambda: store.delete_prefix(""), store.clear):
        with pytest.raises(NotImplementedError, match="never flushes"):
            call()
    assert raw.get("another-application") == b"precious"
    assert store.get("mine") == b"v"


def test_cache_clear_invalidates_by_generation_without_flushing(memcached_server, raw, prefix):
    raw.set("another-application", b"precious")
    cache = Cache("ns", type="memcached", url=memcached_server.url, prefix=prefix, registry=Registry())
    cache.put("k", "v")
    cache.clear()
    with pytest.raises(KeyError):
        cache.get("k")
    assert raw.get("another-application") == b"precious"


# -- values and expiry -----------------------------------------------------------------------------------------------

def test_value_over_the_item_limit_is_refused_at_save_time(store):
    store.set("fits", b"x" * store.max_value_size)
    assert len(store.get("fits")) == store.max_value_size
    for save in (lambda value: store.set("big", value), lambda value: store.add("big", value),
                 lambda value: store.set_many({"big": value}),
                 lambda value: store.merge_record("big", {"f": value}, [], None)):
        with pytest.raises(ValueTooLarge) as raised:
            save(b"x" * (store.max_value_size + 1))
        assert "1048576" in str(raised.value) and "'big'" in str(raised.value)
    assert store.get("big") is None


def test_cache_put_of_a_too_large_value_raises(memcached_server, prefix):
    cache = Cache("ns", type="memcached", url=memcached_server.url, prefix=prefix, registry=Registry())
    with pytest.raises(ValueTooLarge):
        cache.put("k", "x" * (1024 * 1024))


def test_larger_items_with_a_matching_server_limit(server_factory, prefix):
    server = server_factory.memcached(max_item_size="2m")
    backend = MemcachedBackend(url=server.url, prefix=prefix, max_item_size="2m")
    value = os.urandom(1536 * 1024)
    backend.set("big", value)
    assert backend.get("big") == value
    backend.close()


def test_limit_set_higher_than_the_server_s_still_raises_value_too_large(server, prefix):
    backend = MemcachedBackend(url=server.url, prefix=prefix, max_item_size="2m")
    with pytest.raises(ValueTooLarge, match=f"127.0.0.1:{server.port}"):
        backend.set("big", b"x" * (1536 * 1024))
    backend.set("small", b"ok")  # the connection recovered
    assert backend.get("small") == b"ok"
    backend.close()


def test_values_must_be_bytes(store):
    for value in ("text", 1, None):
        with pytest.raises(SerializationError):
            store.set("k", value)


def test_ttl_beyond_thirty_days_is_not_read_as_a_past_timestamp(store):
    store.set("long", b"v", ttl=40 * 24 * 3600)
    store.set("exact", b"v", ttl=30 * 24 * 3600)
    assert store.get("long") == b"v" and store.get("exact") == b"v"
    assert store.touch("long", 60 * 24 * 3600) is True
    assert store.get("long") == b"v"


def test_incr_handles_negative_values(store):
    assert store.incr("n", 2) == 2
    assert store.incr("n", -5) == -3
    assert store.incr("n", 1) == -2
    assert store.incr("n", 10) == 8
    assert store.get("n") == b"8"
    store.set("text", b"abc")
    with pytest.raises(BackendError, match="not an integer"):
        store.incr("text", 1)


def test_corrupt_record_is_a_serialization_error(store):
    store.set("rec", b"not a record")
    with pytest.raises(SerializationError):
        store.get_record("rec")


# -- the lock --------------------------------------------------------------------------------------------------------

def test_lock_excludes_and_expires(store):
    first = MemcachedLock("job", backend=store, expire=1)
    assert first.acquire(False)
    assert MemcachedLock("job", backend=store).acquire(False) is False
    started = time.monotonic()
    contender = MemcachedLock("job", backend=store, expire=30)
    assert contender.acquire(True, 5)  # first never released: its expiry frees the lock
    assert time.monotonic() - started < 4
    contender.release()


def test_release_after_expiry_leaves_the_next_holders_lock_alone(store, caplog):
    slow = MemcachedLock("job", backend=store, expire=1)
    assert slow.acquire()
    time.sleep(2.1)
    current = MemcachedLock("job", backend=store, expire=30)
    assert current.acquire(False)
    slow.release()
    assert "expired before it was released" in caplog.text
    assert MemcachedLock("job", backend=store).acquire(False) is False
    current.release()
    again = MemcachedLock("job", backend=store)
    assert again.acquire(False)
    again.release()


def test_lock_errors(store, memcached_server):
    with MemcachedLock("job", backend=store):
        with pytest.raises(LockTimeout):
            with MemcachedLock("job", backend=store, timeout=0.2):
                pass
    with pytest.raises(RuntimeError, match="unheld"):
        MemcachedLock("job", backend=store).release()
    with pytest.raises(ConfigurationError, match="needs a memcached backend"):
        MemcachedLock("job")
    with pytest.raises(ConfigurationError, match="expire"):
        MemcachedLock("job", backend=store, expire=-1)
    with MemcachedLock("job", url=memcached_server.url):
        pass
    # one backend per url, a list of servers included; a url of another type is refused
    listed = MemcachedLock("job", url=[memcached_server.url])
    assert MemcachedLock("other", url=(memcached_server.url,)).backend is listed.backend
    assert MemcachedLock("other", url=memcached_server.url).backend is not listed.backend
    with pytest.raises(ConfigurationError, match="the memcached lock's url must be a string, not int"):
        MemcachedLock("job", url=11211)


# -- processes -------------------------------------------------------------------------------------------------------

def _child_round_trips(url, prefix, outcome):
    backend = _inherited["backend"]
    try:
        for index in range(300):
            backend.set(f"child{index}", f"c{index}".encode())
            assert backend.get(f"child{index}") == f"c{index}".encode()
        outcome.put("ok")
    except BaseException as exc:  # reported to the parent
        outcome.put(repr(exc))


_inherited = {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_share_the_parents_socket(memcached_server, prefix):
    backend = MemcachedBackend(url=memcached_server.url, prefix=prefix)
    backend.set("parent", b"p")  # the parent's thread now holds an open connection
    _inherited["backend"] = backend
    context = multiprocessing.get_context("fork")
    outcome = context.Queue()
    child = context.Process(target=_child_round_trips, args=(memcached_server.url, prefix, outcome))
    child.start()
    for index in range(300):
        backend.set(f"parent{index}", f"p{index}".encode())
        assert backend.get(f"parent{index}") == f"p{index}".encode()
    assert outcome.get(timeout=60) == "ok"
    child.join(10)
    backend.close()


# -- sessions --------------------------------------------------------------------------------------------------------

def _session_app(url):
    from beaker_core.middleware import SessionMiddleware
    from beaker_core.testing.sessions import WSGIClient, session_app
    app = SessionMiddleware(session_app, {"session.type": "memcached", "session.url": url,
                                          "session.timeout": "30"}, registry=Registry())
    return app, WSGIClient(app)


def test_session_record_has_the_session_timeout_as_its_ttl(server):
    from beaker_core.session import KEY_PREFIX
    from beaker_memcached.testing import memcached_command
    app, client = _session_app(server.url)
    assert [client.json("/incr") for _ in range(3)] == [1, 2, 3]
    mapped = map_key("", KEY_PREFIX + client.json("/id"))
    reply = memcached_command(server.port, f"mg {mapped} t")  # meta get: the item's remaining TTL
    assert reply.startswith("HD t"), reply
    assert 0 < int(reply.split("t", 1)[1]) <= 30


def test_modified_session_round_trips(server_factory):
    server = server_factory.memcached()
    app, client = _session_app(server.url)
    client.json("/incr")

    def counted(path):
        before = server.stats()
        client.json(path)
        after = server.stats()
        return {name: int(after[name]) - int(before[name]) for name in ("cmd_get", "cmd_set", "cmd_touch")}

    assert counted("/incr") == {"cmd_get": 2, "cmd_set": 1, "cmd_touch": 0}  # get; gets + cas
    assert counted("/noop") == {"cmd_get": 0, "cmd_set": 0, "cmd_touch": 0}
    assert client.json("/get") == {"counter": 2}


# -- timeouts --------------------------------------------------------------------------------------------------------

def test_a_server_that_stops_answering_times_out():
    from beaker_core.testing.servers import SilentServer
    with SilentServer() as silent:
        degrading = MemcachedBackend(url=silent.address, timeout=0.3, dead_retry=60)
        strict = MemcachedBackend(url=silent.address, timeout=0.3, strict=True)
        started = time.monotonic()
        assert degrading.get("k") is None
        degrading.set("k", b"v")  # skipped: the server is marked down
        with pytest.raises(BackendError, match=f"memcached server {silent.address} .* no reply within 0.3 seconds"):
            strict.get("k")
        with pytest.raises(BackendError, match="no reply within 0.3 seconds"):
            degrading.delete("k")
        assert time.monotonic() - started < 10  # bounded, not hanging


def test_reply_timeouts_are_kernel_socket_options(memcached_server):
    import socket
    import struct
    backend = MemcachedBackend(url=memcached_server.url, timeout=2.5)
    backend.get("warm-up")
    sock = backend._ring.single.client().sock
    assert sock.gettimeout() is None  # no Python timeout: no poll() before each read
    seconds, microseconds = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    assert seconds + microseconds / 1e6 == pytest.approx(2.5, abs=0.01)
    backend.close()


def test_unix_socket_server(tmp_path):
    """A memcached listening on a unix socket only: every path of the backend (the read path, pymemcache's
    commands, the lock) works over it."""
    from beaker_memcached.testing import memcached_binary
    socket_path = str(tmp_path / "memcached.sock")
    argv = [memcached_binary(), "-s", socket_path, "-a", "0700", "-m", "16"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv += ["-u", "root"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "memcached did not create its socket"
            time.sleep(0.01)
        backend = MemcachedBackend(url=f"unix:{socket_path}")
        backend.set("k", b"v", ttl=60)
        assert backend.get_many(["k", "absent"]) == [b"v", None]
        assert backend.add("k", b"other") is False
        assert backend.incr("n") == 1
        with MemcachedLock("job", backend=backend):
            assert MemcachedLock("job", backend=backend).acquire(False) is False
        cache = Cache("unix", type="memcached", url=f"unix:{socket_path}")
        cache.put("key", {"a": [1, 2]})
        assert cache.get("key") == {"a": [1, 2]}
        backend.close()
    finally:
        process.kill()
        process.wait()
