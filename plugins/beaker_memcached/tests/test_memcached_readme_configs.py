"""The ```ini configurations of this plugin's README, taken from README.md and run as written against real servers.

Only the server addresses change: each distinct address in a ``*.url`` value (``;`` or ``,`` separated) becomes
the address of a private memcached started for the test, so a block naming three servers runs on three, and a value
found in a server's statistics was put there by this block. Every other key is used exactly as the README writes
it. A ``cache.*`` block must cache (once per region, and for a second ``CacheManager``) and leave its values in its
servers; a ``session.*`` block must keep a counter across requests through ``SessionMiddleware`` and leave the
session in its server.
"""
import re
from pathlib import Path

import pytest

from beaker_core.middleware import SessionMiddleware
from beaker_core.testing.docs import check_cache_config, check_session_counts, fenced_blocks, read_ini

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = fenced_blocks(README, "ini")

#: blocks that cannot run against the test servers: a line of the block, and why (none today)
NOT_RUN: dict[str, str] = {}


def not_run_reason(block) -> str | None:
    return next((reason for line, reason in NOT_RUN.items() if line in block.text.splitlines()), None)


def test_every_block_is_run_or_listed():
    assert BLOCKS, f"no ```ini block found in {README}"
    for block in BLOCKS:
        keys = [key for section in read_ini(block.text).values() for key in section]
        runnable = any(key.startswith(("cache.", "session.")) for key in keys)
        assert runnable or not_run_reason(block), f"{block.name} has neither cache.* nor session.* keys"
    for line in NOT_RUN:
        matches = [block.name for block in BLOCKS if line in block.text.splitlines()]
        assert len(matches) == 1, f"NOT_RUN names {line!r}, found in {matches or 'no block'} of {README}"


class PrivateServers:
    """One private memcached per distinct address a block names."""

    def __init__(self, server_factory):
        self.server_factory = server_factory
        self.by_readme_address: dict = {}

    def substitute(self, url: str) -> str:
        """``url`` with each server address replaced by a test server's (the separators kept)."""
        return re.sub(r"[^;,\s]+", lambda match: self.server(match.group()).address, url)

    def server(self, readme_address: str):
        if readme_address not in self.by_readme_address:
            self.by_readme_address[readme_address] = self.server_factory.memcached()
        return self.by_readme_address[readme_address]

    def items(self, addresses) -> int:
        """How many items the test servers at ``addresses`` hold."""
        servers = [server for server in self.by_readme_address.values() if server.address in addresses]
        assert len(servers) == len(addresses), f"{addresses} are not all test servers"
        return sum(int(server.stats()["curr_items"]) for server in servers)



@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_readme_block_runs_as_written(block, server_factory):
    reason = not_run_reason(block)
    if reason:
        pytest.skip(f"listed in NOT_RUN: {reason}")
    servers = PrivateServers(server_factory)
    (as_written,) = read_ini(block.text).values()
    config = {key: servers.substitute(value) if key.endswith(".url") else value
              for key, value in as_written.items()}
    if any(key.startswith("cache.") for key in config):
        for cache in check_cache_config(config):
            assert type(cache.backend).__module__.startswith("beaker_memcached.")
            assert servers.items(cache.backend.servers) > 0, (
                f"{block.name}: the cache's servers {cache.backend.servers} hold nothing")
    if any(key.startswith("session.") for key in config):
        addresses = [address for address in re.split(r"[;,\s]+", config["session.url"]) if address]
        before = servers.items(addresses)
        check_session_counts(lambda app: SessionMiddleware(app, config))
        assert servers.items(addresses) > before, f"{block.name}: the session is not in {addresses}"
