"""Memcached servers: parsing Beaker's ``url``, safe keys, choosing a server for a key, and connections.

Why not pymemcache's ``HashClient``: when a server fails it takes it out of the hash ring, so that server's keys move
to the others and move back when it returns, which then serves values that were overwritten or invalidated in the
meantime; it also hides which server failed. Here every key always maps to the same server (rendezvous hashing over
the configured list: adding or removing a server moves only that server's share). A server that fails is marked
down (:class:`~beaker_core.backends.health.DownMark`: for ``dead_retry`` seconds after a timeout, until the next
call's probe after a refused connection); while it is, no command is sent to it, and what happens to the calls for its
share is the backend's decision (a miss for cache reads and writes, an error naming the server for everything else).

Each server has one ``pymemcache`` client per thread (a client is a single socket and is not thread safe). A forked
child drops the clients it inherited, so parent and child never share a socket.

The clients come from :func:`beaker_memcached.fastpath.new_client`: reply timeouts set in the kernel and the read
path of a cache hit parsed there, or pymemcache's own client when its internals are not what those expect.
"""
from __future__ import annotations

import hashlib
import os
import threading
import weakref
from typing import Any

from beaker_core.backends.health import DEFAULT_DEAD_RETRY, PROBE_TIMEOUT, DownMark, describe_error, waited
from beaker_core.exceptions import ConfigurationError

from .fastpath import new_client

DEFAULT_PORT = 11211
MAX_KEY_LENGTH = 250
#: marks a key that was hashed; a key given with this start is hashed too, so the two kinds never meet
HASHED_MARK = "~h:"


def parse_servers(url: Any, owner: str) -> list[str]:
    """Server addresses from Beaker's ``url``: ``host:port``, several separated by ``;`` (commas are accepted too),
    or a list of them. ``memcached://`` in front of an address is allowed; ``unix:/path`` (or ``/path``) is a unix
    socket; the port defaults to 11211."""
    if isinstance(url, str):
        parts = url.replace(",", ";").split(";")
    elif isinstance(url, (list, tuple)) and all(isinstance(part, str) for part in url):
        parts = list(url)
    else:
        raise ConfigurationError(f"{owner} needs a url: host:port, or several separated by ';' "
                                 f"(e.g. 127.0.0.1:11211;127.0.0.1:11212), not {url!r}")
    servers: list[str] = []
    for part in (piece.strip() for piece in parts):
        if not part:
            continue
        if part.startswith("memcached://"):
            part = part[len("memcached://"):].rstrip("/")
        servers.append(_normalize(part, owner))
    if not servers:
        raise ConfigurationError(f"{owner} needs at least one server in its url (host:port)")
    if len(set(servers)) != len(servers):
        raise ConfigurationError(f"{owner}: a server is listed twice in the url: {'; '.join(servers)}")
    return servers


def _normalize(address: str, owner: str) -> str:
    if address.startswith("unix:"):
        address = address[5:]
    if address.startswith("/"):
        return "unix:" + address
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        shown_host = f"[{host}]"
    else:
        host, _, port_text = address.partition(":") if address.count(":") == 1 else (address, "", "")
        shown_host = host
    if not host or any(char.isspace() for char in address) or "/" in address:
        raise ConfigurationError(f"{owner}: invalid server address {address!r} (expected host:port)")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ConfigurationError(f"{owner}: invalid port in server address {address!r}") from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"{owner}: port out of range in server address {address!r}")
    return f"{shown_host}:{port}"


def check_prefix(prefix: Any, owner: str) -> str:
    if not isinstance(prefix, str):
        raise ConfigurationError(f"{owner} option prefix must be a string, not {prefix!r}")
    if not _plain(prefix) or len(prefix) > 100:
        raise ConfigurationError(f"{owner} option prefix must be at most 100 printable ASCII characters without "
                                 f"spaces, not {prefix!r}")
    return prefix


def _plain(text: str) -> bool:
    """Printable ASCII without spaces or control characters: what memcached accepts in a key."""
    return text.isascii() and text.isprintable() and " " not in text


def map_key(prefix: str, key: str) -> str:
    """The memcached key for ``key``: ``prefix + key`` when that is a valid memcached key, else ``prefix`` plus a
    SHA-256 of ``key`` behind :data:`HASHED_MARK`. Keys starting with the mark are always hashed, so a key that
    is stored as it is can never equal the hashed form of another."""
    if (len(prefix) + len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key
            and not key.startswith(HASHED_MARK) and (prefix or key)):
        return prefix + key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return prefix + HASHED_MARK + digest


def _weight(server: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{server}\x00{key}".encode("ascii"), digest_size=8).digest(), "big")


class Node(DownMark):
    """One memcached server: its address, its per-thread clients, and its down mark (``down_until`` is 0.0 while
    it is up; ``last_error`` says how it last failed)."""

    def __init__(self, address: str, client_options: dict[str, Any], io_timeout: float | None = None,
                 dead_retry: float = DEFAULT_DEAD_RETRY):
        self.address = address
        if address.startswith("unix:"):
            self.server: Any = address[5:]
        else:
            host, _, port = address.rpartition(":")
            self.server = (host.strip("[]"), int(port))
        self.client_options = client_options
        self.io_timeout = io_timeout
        self.local = threading.local()
        timeouts = [seconds for seconds in (io_timeout, client_options.get("connect_timeout")) if seconds]
        self.probe_timeout = min([PROBE_TIMEOUT, *timeouts])
        super().__init__(self._probe, dead_retry, probe_timeout=self.probe_timeout, describe=self._probe_failure)
        _live_nodes.add(self)

    def client(self) -> Any:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = new_client(self.server, self.client_options, self.io_timeout)
        return client

    def _probe(self) -> None:
        """``version`` on a connection of its own, with the probe's short timeout (see :class:`DownMark`)."""
        client = new_client(self.server, {**self.client_options, "connect_timeout": self.probe_timeout,
                                          "timeout": self.probe_timeout})
        try:
            client.version()
        finally:
            client.close()

    def _probe_failure(self, error: BaseException) -> str:
        if waited(error):
            return f"no answer to a probe within {self.probe_timeout} seconds"
        return describe_error(error)

    def skipped(self) -> bool:
        """True while the server is marked down and a probe did not find it back: calls fail fast."""
        return not self.admits()

    def forget_clients(self) -> None:
        self.local = threading.local()

    def close(self) -> None:
        client = getattr(self.local, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # closing is best effort
                pass
        self.forget_clients()


class Ring:
    """Which server holds a key: rendezvous (highest random weight) hashing over a fixed list of servers."""

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes
        self.single = nodes[0] if len(nodes) == 1 else None

    def node(self, mapped_key: str) -> Node:
        if self.single is not None:
            return self.single
        return max(self.nodes, key=lambda node: _weight(node.address, mapped_key))

    def group(self, mapped_keys: list[str]) -> dict[Node, list[str]]:
        groups: dict[Node, list[str]] = {}
        for mapped in mapped_keys:
            groups.setdefault(self.node(mapped), []).append(mapped)
        return groups


_live_nodes: "weakref.WeakSet[Node]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for node in list(_live_nodes):
        node.forget_clients()  # the inherited sockets belong to the parent


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
