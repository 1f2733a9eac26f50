"""The ```ini configurations of this plugin's README, taken from README.md and run as written against real servers.

Only the server address changes: in each ``*.url`` value, the host and port of the README's URL become those of a
server the fixtures started (a cluster URL's whole list of nodes becomes the test cluster's, a sentinel URL's list of
sentinels, and a ``*.sentinels`` value, the test sentinels'). The user, password, service name and database stay as
written; a URL with a password gets a private server that requires that password. Every other key is used exactly as
the README writes it. A ``cache.*`` block must cache (once per region, and for a second
``CacheManager``) and leave its values in the server under its ``prefix``; a ``session.*`` block must keep a counter
across requests through ``SessionMiddleware`` and leave the session in the server.
"""
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from beaker_core.middleware import SessionMiddleware
from beaker_core.testing.docs import check_cache_config, check_session_counts, fenced_blocks, read_ini
from beaker_redis.sentinel import parse_sentinel_url
from beaker_redis.testing import redis_sentinel  # noqa: F401  (fixture)

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = fenced_blocks(README, "ini")

#: blocks that cannot run against the test servers: a line of the block, and why (none today)
NOT_RUN: dict[str, str] = {}


def not_run_reason(block) -> str | None:
    return next((reason for line, reason in NOT_RUN.items() if line in block.text.splitlines()), None)


def test_every_block_is_run_or_listed():
    assert len(BLOCKS) >= 3, f"the sessions, caching and cluster blocks are no longer ```ini blocks of {README}"
    for block in BLOCKS:
        keys = [key for section in read_ini(block.text).values() for key in section]
        runnable = any(key.startswith(("cache.", "session.")) for key in keys)
        assert runnable or not_run_reason(block), f"{block.name} has neither cache.* nor session.* keys"
    for line in NOT_RUN:
        matches = [block.name for block in BLOCKS if line in block.text.splitlines()]
        assert len(matches) == 1, f"NOT_RUN names {line!r}, found in {matches or 'no block'} of {README}"


def with_test_server(url: str, request) -> str:
    """``url`` with the host and port of a test server in place of the README's."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if "sentinel" in parts.scheme:
        address = ",".join(sentinel.address for sentinel in request.getfixturevalue("redis_sentinel").sentinels)
    elif "cluster" in parts.scheme or "," in hostport:
        address = urlsplit(request.getfixturevalue("redis_cluster").url).netloc
    elif parts.password is not None:
        address = request.getfixturevalue("server_factory").redis(password=parts.password).address
    else:
        # the shared server's own credentials, if BEAKER_TEST_REDIS_URL names a server that has some
        userinfo, at, address = urlsplit(request.getfixturevalue("redis_server").url).netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{address}"))


def server_url(config: dict, scope: str) -> str:
    """The server of ``scope`` (``cache.short_term.``, ``cache.`` or ``session.``) as a URL: its ``url``, or its
    ``sentinels`` and ``service_name`` as a sentinel URL; a region without its own takes the ``cache.`` one."""
    top = scope.split(".")[0] + "."
    for prefix in (scope, top):
        if f"{prefix}url" in config:
            return config[f"{prefix}url"]
        if f"{prefix}sentinels" in config:
            sentinels = ",".join(address.strip() for address in config[f"{prefix}sentinels"].split(","))
            return f"redis+sentinel://{sentinels}/{config[f'{prefix}service_name']}/{config.get(f'{prefix}db', 0)}"
    raise KeyError(f"no url nor sentinels for {scope}*")


def stored_keys(url: str, pattern: str) -> list[str]:
    """The keys of the server (or cluster) at ``url`` that match the glob ``pattern``, read with redis-py itself."""
    parts = urlsplit(url)
    if "sentinel" in parts.scheme:
        target = parse_sentinel_url(url, "test")
        client = Sentinel(target.nodes).master_for(target.service_name, db=target.node_options.get("db", 0),
                                                   password=parts.password)
    elif "cluster" in parts.scheme:
        host, _, port = parts.netloc.rpartition("@")[2].split(",")[0].rpartition(":")
        client = RedisCluster(host=host, port=int(port), password=parts.password)
    else:
        client = redis.Redis.from_url(url)
    try:
        return [key.decode() for key in client.scan_iter(match=pattern)]
    finally:
        client.close()


def glob_escaped(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_readme_block_runs_as_written(block, request):
    reason = not_run_reason(block)
    if reason:
        pytest.skip(f"listed in NOT_RUN: {reason}")
    (as_written,) = read_ini(block.text).values()
    config = {key: with_test_server(value, request) if key.endswith(".url") else value
              for key, value in as_written.items()}
    for key in config:
        if key.endswith(".sentinels"):
            config[key] = request.getfixturevalue("redis_sentinel").sentinel_addresses
    if any(key.startswith("cache.") for key in config):
        regions = [name.strip() for name in config.get("cache.regions", "").split(",") if name.strip()]
        caches = check_cache_config(config)
        for region, cache in zip(regions or [None], caches):
            scope = f"cache.{region}." if region else "cache."
            url = server_url(config, scope)
            prefix = config.get(f"{scope}prefix", config.get("cache.prefix", ""))
            assert type(cache.backend).__module__.startswith("beaker_redis.")
            assert cache.backend.prefix == prefix
            stored = stored_keys(url, f"{glob_escaped(prefix)}*{glob_escaped(cache.namespace)}*")
            assert stored, f"{block.name}, {scope}*: no key under {prefix!r} for {cache.namespace!r} at {url}"
    if any(key.startswith("session.") for key in config):
        client = check_session_counts(lambda app: SessionMiddleware(app, config))
        session_id = client.cookies["beaker.session.id"].strip('"').split(".")[0]
        prefix = config.get("session.prefix", "")
        url = server_url(config, "session.")
        assert stored_keys(url, f"{glob_escaped(prefix)}*{session_id}*"), (
            f"{block.name}: session {session_id} is not in the server at {url}")
