"""The memcached read path (``get`` parsed by the lengths the server announces): replies cut anywhere, large
values, what the server says instead of values, and a connection that breaks in the middle of a reply."""
import socket
import threading
import uuid

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import (MemcacheClientError, MemcacheServerError, MemcacheUnexpectedCloseError,
                                   MemcacheUnknownCommandError, MemcacheUnknownError)

from beaker_core.exceptions import BackendError
from beaker_memcached.backend import MemcachedBackend
from beaker_memcached.fastpath import read_values


class Chunks:
    """A socket whose reads return the given chunks one by one, then end of stream."""

    def __init__(self, *chunks: bytes):
        self.chunks = list(chunks)
        self.reads = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if len(chunk) > size:
            chunk, rest = chunk[:size], chunk[size:]
            self.chunks.insert(0, rest)
        return chunk

    def recv_into(self, view: memoryview) -> int:
        chunk = self.recv(len(view))
        view[:len(chunk)] = chunk
        return len(chunk)


def reply(*items: tuple[bytes, bytes]) -> bytes:
    return b"".join(b"VALUE %s 0 %d\r\n%s\r\n" % (key, len(value), value) for key, value in items) + b"END\r\n"


ITEMS = [(b"k1", b"v1"), (b"k2", b"VALUE k3 0 1\r\nx\r\nEND\r\n"), (b"empty", b""), (b"k4", bytes(range(256)))]


def test_a_whole_reply_is_parsed_without_reading_again():
    sock = Chunks()
    assert read_values(sock, reply(*ITEMS)) == dict(ITEMS)
    assert sock.reads == 0


def test_values_that_look_like_protocol_lines_are_data():
    assert read_values(Chunks(), reply((b"k", b"\r\nEND\r\n")))[b"k"] == b"\r\nEND\r\n"


def test_no_value_found():
    assert read_values(Chunks(), b"END\r\n") == {}


@pytest.mark.parametrize("cut", range(1, len(reply(*ITEMS))))
def test_a_reply_cut_at_any_byte_is_read_to_its_end(cut):
    whole = reply(*ITEMS)
    assert read_values(Chunks(whole[cut:]), whole[:cut]) == dict(ITEMS)


def test_a_reply_arriving_one_byte_at_a_time():
    whole = reply(*ITEMS)
    assert read_values(Chunks(*(whole[i:i + 1] for i in range(1, len(whole)))), whole[:1]) == dict(ITEMS)


def test_a_large_value_is_read_in_place():
    value = bytes(range(256)) * 4000  # ~1 MB
    whole = reply((b"big", value), (b"small", b"s"))
    header_end = whole.index(b"\r\n") + 2
    # the rest arrives in uneven pieces, as a socket delivers it
    pieces = [whole[i:i + 70001] for i in range(header_end + 10, len(whole), 70001)]
    assert read_values(Chunks(*pieces), whole[:header_end + 10]) == {b"big": value, b"small": b"s"}


def test_cas_field_is_accepted():
    assert read_values(Chunks(), b"VALUE k 5 2 99\r\nab\r\nEND\r\n") == {b"k": b"ab"}


@pytest.mark.parametrize("line, error", [
    (b"SERVER_ERROR out of memory", MemcacheServerError),
    (b"CLIENT_ERROR bad command line format", MemcacheClientError),
    (b"ERROR", MemcacheUnknownCommandError),
    (b"STORED", MemcacheUnknownError),
])
def test_what_the_server_says_instead_of_values_is_raised(line, error):
    with pytest.raises(error) as caught:
        read_values(Chunks(), line + b"\r\n")
    assert line.decode() in str(caught.value)


@pytest.mark.parametrize("data, detail", [
    (b"VALUE k 0\r\nEND\r\n", "malformed VALUE line"),
    (b"VALUE k 0 x\r\nEND\r\n", "malformed VALUE line"),
    (b"VALUE k 0 -1\r\nEND\r\n", "malformed VALUE line"),
    (b"VALUE k 0 2\r\nabcEND\r\n", "not followed by CRLF"),
    (b"END\r\nVALUE", "unexpected bytes after END"),
])
def test_a_reply_that_is_not_the_protocol_is_an_error(data, detail):
    with pytest.raises(MemcacheUnknownError, match=detail):
        read_values(Chunks(), data)


@pytest.mark.parametrize("data", [b"", b"VALUE k 0 5\r\nab", b"VALUE k 0 5\r\nabcde\r\n", b"VAL"])
def test_a_connection_closed_before_end_is_an_error(data):
    with pytest.raises(MemcacheUnexpectedCloseError):
        read_values(Chunks(), data)


# -- against a real server --------------------------------------------------------------------------------------

@pytest.fixture
def store(memcached_server):
    backend = MemcachedBackend(url=memcached_server.url, prefix=f"bkrp-{uuid.uuid4().hex[:12]}:")
    yield backend
    backend.close()


def test_get_many_reads_values_of_every_size_from_a_real_server(store):
    values = {f"k{size}": bytes(range(256)) * (size // 256) + b"\r\nEND\r\n" for size in (0, 4096, 70000, 900000)}
    for key, value in values.items():
        store.set(key, value)
    keys = [*values, "missing", "k0"]
    assert store.get_many(keys) == [*values.values(), None, values["k0"]]


def test_more_keys_than_one_request_carries(store):
    store.set_many({f"n{i}": str(i).encode() for i in range(250)})
    assert store.get_many([f"n{i}" for i in range(260)]) == [str(i).encode() for i in range(250)] + [None] * 10


def test_the_read_path_and_pymemcache_calls_share_one_connection_in_step(store):
    """Reads through the lean path and writes through pymemcache alternate on one socket: nothing is left unread
    between them."""
    for i in range(50):
        store.set("k", str(i).encode())
        assert store.get_many(["k", "k"]) == [str(i).encode()] * 2
        assert store.add("k", b"x") is False


class HalfReplyServer:
    """A memcached impostor on loopback: answers every ``get`` with the start of a reply, then closes."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with connection:
                connection.recv(4096)
                connection.sendall(b"VALUE k 0 10\r\nabc")

    def close(self):
        self.listener.close()


def test_a_reply_cut_by_the_server_closing_is_a_miss_for_the_cache_and_the_socket_is_replaced():
    server = HalfReplyServer()
    backend = MemcachedBackend(url=f"127.0.0.1:{server.port}", dead_retry=0)
    try:
        assert backend.get_many(["k"]) == [None]  # degraded: a cache read from a failing server is a miss
        assert backend.get_many(["k"]) == [None]
        assert server.connections == 2  # the broken connection was not reused
    finally:
        backend.close()
        server.close()


def test_a_reply_cut_by_the_server_closing_is_an_error_naming_the_server_when_strict():
    server = HalfReplyServer()
    backend = MemcachedBackend(url=f"127.0.0.1:{server.port}", strict=True)
    try:
        with pytest.raises(BackendError, match=f"memcached server 127.0.0.1:{server.port} failed while reading"):
            backend.get_many(["k"])
    finally:
        backend.close()
        server.close()


def test_pymemcache_sees_the_same_values(memcached_server, store):
    """Values written by pymemcache's own client are read back unchanged through the read path."""
    host, port = memcached_server.url.rsplit(":", 1)
    client = Client((host, int(port)), default_noreply=False)
    try:
        assert client.set(store.prefix + "written", b"by pymemcache")
        assert store.get_many(["written"]) == [b"by pymemcache"]
    finally:
        client.close()
