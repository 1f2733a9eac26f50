"""The fast paths that rely on pymemcache's internals, and the public API they fall back to.

pymemcache's ``Client`` is subclassed here for three things below its public API:

* **kernel reply timeouts**: ``_connect`` sets ``SO_RCVTIMEO``/``SO_SNDTIMEO`` on the new socket instead of a Python
  socket timeout, which polls the socket before every read (one more system call on every cache hit);
* **no second key check**: every key reaches the client through ``nodes.map_key``, which already made it a valid
  memcached key, so ``check_key`` only encodes it;
* **the read path of a cache hit** (``get_values``): the ``get`` is written on the client's own socket (``sock``) and
  its reply parsed here by :func:`read_values`, leaving the socket as pymemcache expects it between commands.

Whether pymemcache's client is what these expect is checked once, on first use (:func:`check`), and the answer kept
in :data:`enabled` (and logged at debug level). When it is not, :func:`new_client` gives pymemcache's own client:
its ``timeout`` option for replies, its key check, and ``get_many`` as ``get_values``, with the same results and the
same failures (a reply timeout is then a ``TimeoutError`` rather than the kernel's ``BlockingIOError``; both are
reply timeouts to the backend and to its down marks).
"""
from __future__ import annotations

import inspect
import logging
from typing import Any

from beaker_core.util import set_socket_io_timeout

log = logging.getLogger(__name__)

#: None until :func:`check` runs; then True when the fast paths are used, False when pymemcache's public API is
enabled: bool | None = None
#: why the fast paths are not used ("" while they are)
disabled_because = ""

RECV_SIZE = 4096


def check() -> bool:
    """Whether the fast paths are used: pymemcache's ``Client`` has what they rely on. Checked on the first call,
    then :data:`enabled` is returned as it is (a test may set it to False to force the fallback)."""
    global enabled, disabled_because
    if enabled is None:
        disabled_because = _missing_internals()
        enabled = not disabled_because
        from pymemcache import __version__ as version
        if enabled:
            log.debug("pymemcache %s: kernel reply timeouts and the get reply parser in use", version)
        else:
            log.debug("pymemcache %s: the fast paths are off (%s); pymemcache's public API is used", version,
                      disabled_because)
    return enabled


def _missing_internals() -> str:
    """What the fast paths need and pymemcache lacks ("" when nothing is missing)."""
    try:
        from pymemcache.client.base import Client
    except ImportError as exc:
        return f"cannot import pymemcache's Client: {exc}"
    for name in ("_connect", "check_key", "close", "get_many"):
        if not callable(getattr(Client, name, None)):
            return f"Client has no {name}()"
    try:
        parameters = list(inspect.signature(Client.check_key).parameters)
    except (TypeError, ValueError):
        parameters = []
    if parameters != ["self", "key", "key_prefix"]:
        return f"Client.check_key takes ({', '.join(parameters)}), not (self, key, key_prefix)"
    try:
        client = Client(("127.0.0.1", 1))  # connects nothing
    except Exception as exc:  # a constructor that changed
        return f"Client() failed: {type(exc).__name__}: {exc}"
    if getattr(client, "sock", False) is not None:
        return "a new Client has no sock attribute set to None"
    return ""


_classes: tuple[Any, Any] | None = None


def _client_classes() -> tuple[Any, Any]:
    """The fast path's client class and the fallback's (created on first use, so pymemcache loads lazily)."""
    global _classes
    if _classes is None:
        from pymemcache.client.base import Client

        class KernelTimeoutClient(Client):
            io_timeout: float | None = None

            def _connect(self) -> None:
                super()._connect()
                if self.io_timeout and not set_socket_io_timeout(self.sock, self.io_timeout):
                    self.sock.settimeout(self.io_timeout)

            def check_key(self, key: Any, key_prefix: bytes) -> bytes:
                # every key reaches this client through map_key, which already made it a valid memcached key
                # (printable ASCII, no spaces, at most 250 bytes): pymemcache's own check would only repeat it
                if type(key) is str:
                    key = key.encode("ascii")
                return key_prefix + key if key_prefix else key

            def get_values(self, keys: list[bytes]) -> dict[bytes, bytes]:
                """``get`` of ``keys`` (valid memcached keys, as bytes): the values found, by key.

                The read path of a cache hit, kept short: one ``sendall`` and usually one ``recv``, the reply
                parsed by the lengths it announces. It uses this client's own socket and leaves it as pymemcache
                expects it between commands (nothing left unread); on any error the socket is closed first, as
                pymemcache does, so a half-read reply never reaches the next command.
                """
                if self.sock is None:
                    self._connect()
                sock = self.sock
                try:
                    sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
                    return read_values(sock, sock.recv(RECV_SIZE))
                except BaseException:
                    self.close()
                    raise

        class PublicClient(Client):
            """pymemcache's client as it is, with ``get_values`` named like the fast path's."""

            def get_values(self, keys: list[bytes]) -> dict[bytes, bytes]:
                return self.get_many(keys)

        _classes = (KernelTimeoutClient, PublicClient)
    return _classes


def new_client(server: Any, options: dict[str, Any], io_timeout: float | None = None) -> Any:
    """A pymemcache client of ``server`` with ``options`` (``Client``'s keyword arguments) and a ``get_values(keys)``
    method; ``io_timeout`` is the reply timeout, set in the kernel on the fast path and as pymemcache's ``timeout``
    on the fallback (None: ``options`` say it)."""
    fast, public = _client_classes()
    if not check():
        return public(server, **(options if io_timeout is None else {**options, "timeout": io_timeout}))
    if io_timeout is None:
        return fast(server, **options)
    client = fast(server, **{**options, "timeout": None})
    client.io_timeout = io_timeout
    return client


# -- the reply to a get ------------------------------------------------------------------------------------------

def read_values(sock: Any, data: bytes) -> dict[bytes, bytes]:
    """Parse the reply to a ``get`` of text protocol memcached: ``VALUE <key> <flags> <bytes>[ <cas>]\r\n`` then
    the data and ``\r\n``, for each key found, then ``END\r\n``. ``data`` is what was read so far from ``sock``,
    which is read again while the reply is incomplete. Flags are ignored (every value is stored as bytes with
    flags 0).

    Raises pymemcache's errors for what the server says instead (``ERROR``, ``CLIENT_ERROR``, ``SERVER_ERROR``),
    for a reply that is not the protocol, and for a connection closed before ``END``.
    """
    values: dict[bytes, bytes] = {}
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        while line_end < 0:
            data = _more(sock, data, 0)
            line_end = data.find(b"\r\n", position)
        fields = data[position:line_end].split(b" ")
        if fields[0] != b"VALUE":
            if line_end == position + 3 and fields[0] == b"END":
                if line_end + 2 != len(data):
                    _protocol_error(f"{len(data) - line_end - 2} unexpected bytes after END")
                return values
            _server_error(data[position:line_end])
        try:
            size = int(fields[3])
        except (IndexError, ValueError):
            size = -1
        if size < 0 or len(fields) > 5:
            _protocol_error(f"malformed VALUE line {data[position:line_end][:300]!r}")
        start = line_end + 2
        end = start + size
        if len(data) < end + 2:
            data = _more(sock, data, end + 2 - len(data))
        if data[end:end + 2] != b"\r\n":
            _protocol_error(f"the value of {fields[1][:300]!r} is not followed by CRLF")
        values[fields[1]] = data[start:end]
        position = end + 2


def _more(sock: Any, data: bytes, missing: int) -> bytes:
    """``data`` and what comes next from ``sock``: at least ``missing`` more bytes, or at least one byte when 0."""
    if missing <= RECV_SIZE:
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            _closed()
        return data + chunk if len(chunk) >= missing else _more(sock, data + chunk, missing - len(chunk))
    buffer = bytearray(missing)  # a large value: read it in place rather than concatenating chunks
    view = memoryview(buffer)
    filled = 0
    while filled < missing:
        count = sock.recv_into(view[filled:])
        if not count:
            _closed()
        filled += count
    return data + buffer


def _closed() -> None:
    from pymemcache.exceptions import MemcacheUnexpectedCloseError
    raise MemcacheUnexpectedCloseError()


def _server_error(line: bytes) -> None:
    from pymemcache.exceptions import MemcacheClientError, MemcacheServerError, MemcacheUnknownCommandError
    text = line.decode("ascii", "replace")[:300]
    if line.startswith(b"SERVER_ERROR"):
        raise MemcacheServerError(text)
    if line.startswith(b"CLIENT_ERROR"):
        raise MemcacheClientError(text)
    if line == b"ERROR":
        raise MemcacheUnknownCommandError(text)
    _protocol_error(f"unexpected reply line {text!r}")


def _protocol_error(detail: str) -> None:
    from pymemcache.exceptions import MemcacheUnknownError
    raise MemcacheUnknownError(f"memcached reply not understood: {detail}")
