"""Test servers of this plugin: memcached processes on loopback ports.

Helper, usable without pytest fixtures (e.g. from benchmarks)::

    server = start_memcached(max_item_size="2m")  # MemcachedServer: .url ("127.0.0.1:PORT"), .stats(), .stop(), ...

It is built on beaker-core's generic helper (:mod:`beaker_core.testing.servers`): the process listens on 127.0.0.1
(TCP only), keeps its files in a temporary directory, is stopped (and its directory removed) by ``stop()``, and a
server that cannot start raises :class:`~beaker_core.testing.servers.ServerUnavailable` with the reason and the tail
of its log.

Pytest fixtures (a ``conftest.py`` imports those it uses)::

    from beaker_memcached.testing import memcached_server, server_factory

``memcached_server`` is session scoped and shared by every test of the run, so tests isolate themselves with key
prefixes, never by flushing. ``server_factory`` is function scoped: a :class:`MemcachedServerFactory` whose
``memcached(max_item_size="2m")`` starts private servers that a test may stop or kill, all stopped when the test
ends (a project that also uses another plugin's ``server_factory`` defines one fixture yielding a subclass of both
factories).

Environment:

``BEAKER_TEST_NO_MEMCACHED=1``
    memcached is known to be absent: tests that need it are skipped. Without it, a missing binary or a server that
    does not start makes the test **fail**.
``BEAKER_TEST_MEMCACHED_URL``
    use a server that is already running instead of starting one (``memcached_server`` only; ``server_factory``
    always starts its own processes).
``BEAKER_TEST_MEMCACHED``
    path of the binary to run; otherwise ``PATH``, then ``/usr/bin``, ``/usr/sbin`` and ``/usr/local/bin`` are
    searched.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Iterator

import pytest

from beaker_core.testing.servers import (HOST, ExternalServer, ServerFactory, ServerProcess, find_binary,
                                         session_server, start_on_free_port)

SERVICE = "memcached"  # BEAKER_TEST_NO_MEMCACHED declares it absent

__all__ = ["MemcachedServer", "MemcachedServerFactory", "memcached_binary", "memcached_command", "start_memcached",
           "memcached_server", "server_factory"]


def memcached_binary() -> str:
    """The path of ``memcached`` (``$BEAKER_TEST_MEMCACHED``, else PATH and the system directories)."""
    return find_binary("memcached", override_env="BEAKER_TEST_MEMCACHED")


def memcached_command(port: int, command: str, host: str = HOST, timeout: float = 2.0) -> str:
    """Send one text-protocol command (``stats``, ``version``...) to memcached; return the reply text."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command.encode() + b"\r\n")
        multiline = command.split()[0].lower() == "stats"
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
            if reply.endswith(b"\r\n") and (not multiline or reply.endswith((b"END\r\n", b"ERROR\r\n"))):
                break
        return reply.decode(errors="replace")


class MemcachedServer(ServerProcess):
    """A memcached process; its ``url`` is its ``host:port``."""

    kind = "memcached"

    @property
    def url(self) -> str:
        return self.address

    def ping(self) -> bool:
        try:
            return memcached_command(self.port, "version", timeout=0.5).startswith("VERSION")
        except OSError:
            return False

    def stats(self, group: str = "") -> dict[str, str]:
        reply = memcached_command(self.port, f"stats {group}".strip())
        return {parts[1]: parts[2] for parts in (line.split(" ", 2) for line in reply.splitlines())
                if len(parts) == 3 and parts[0] == "STAT"}


def start_memcached(*, memory_mb: int = 64, max_item_size: str | None = None,
                    extra_args: tuple[str, ...] = ()) -> MemcachedServer:
    """Start memcached on a free loopback port (TCP only); ``max_item_size`` is its ``-I`` (e.g. ``"2m"``)."""
    binary = memcached_binary()

    def make(port: int) -> MemcachedServer:
        argv = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", str(memory_mb), "-t", "2"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without naming the user
        if max_item_size:
            argv += ["-I", str(max_item_size)]
        return MemcachedServer(argv + list(extra_args), port)

    return start_on_free_port(make)


class MemcachedServerFactory(ServerFactory):
    """Starts private memcached servers for one test (the ``server_factory`` fixture)."""

    def memcached(self, **options: Any) -> MemcachedServer:
        """``start_memcached(**options)``: ``memory_mb``, ``max_item_size``, ``extra_args``."""
        return self.start(SERVICE, start_memcached, **options)


# -- pytest fixtures -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer | ExternalServer]:
    """A memcached shared by the test session (or ``$BEAKER_TEST_MEMCACHED_URL``)."""
    server = session_server(SERVICE, start_memcached, url_env="BEAKER_TEST_MEMCACHED_URL")
    yield server
    server.stop()


@pytest.fixture
def server_factory() -> Iterator[MemcachedServerFactory]:
    """Start private memcached processes in a test (``server_factory.memcached()``); all are stopped at the end of
    the test, whatever it did to them."""
    factory = MemcachedServerFactory()
    yield factory
    factory.stop_all()
