"""Redis Cluster: the URL forms of a cluster's startup nodes, and its client.

A cluster URL lists startup nodes; one reachable node is enough, redis-py discovers the others and the slot map.
Accepted forms:

* ``redis+cluster://[user:password@]host:port,host:port`` (``rediss+cluster://`` for TLS), this package's own;
* ``redis://host:port,redis://host:port``, as Beaker's ``ext:rediscluster`` takes it;
* ``host:port,host:port``.

Beaker's ``ext:rediscluster`` also takes the nodes as ``urls``, a list of URLs or one comma-separated string;
:func:`join_urls` turns that into the comma-separated form above.

A cluster has only database 0, so a URL naming another database is an error.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from beaker_core.exceptions import ConfigurationError

from .connection import CLUSTER_SCHEMES, DEFAULT_PORT, Target, parse_single_url


def is_cluster_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    stripped = url.strip()
    if stripped.startswith(CLUSTER_SCHEMES):
        return True
    # Beaker's ext:rediscluster form: several node URLs separated by commas
    return "," in stripped


def join_urls(urls: Any, owner: str) -> str:
    """Beaker's ``urls`` option (a list or tuple of node URLs, or a comma-separated string) as one url string."""
    if isinstance(urls, str):
        parts = [urls]
    elif isinstance(urls, (list, tuple)) and all(isinstance(part, str) for part in urls):
        parts = list(urls)
    else:
        raise ConfigurationError(f"{owner} option urls must be a list of urls or a comma-separated string, "
                                 f"not {urls!r}")
    joined = ",".join(part.strip() for part in parts if part.strip())
    if not joined:
        raise ConfigurationError(f"{owner} option urls names no node")
    return joined


def split_host_port(text: str, owner: str, what: str = "cluster node", default_port: int = DEFAULT_PORT
                    ) -> tuple[str, int]:
    """``host:port``, ``[ipv6]:port`` or a bare host (an unbracketed IPv6 address is a host without a port) as
    ``(host, port)``; ``what`` names the address in errors (a cluster node, a sentinel)."""
    text = text.strip()
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ConfigurationError(f"{owner}: a {what} must be host:port, not {text!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ConfigurationError(f"{owner}: invalid port in {what} {text!r}") from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"{owner}: port out of range in {what} {text!r}")
    return unquote(host), port


def split_authority(authority: str, owner: str, what: str = "cluster node", default_port: int = DEFAULT_PORT
                    ) -> tuple[dict[str, str], list[tuple[str, int]]]:
    """``[user][:password]@host:port,host:port`` as the credentials it names and its ``(host, port)`` list."""
    credentials: dict[str, str] = {}
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        username, _, password = userinfo.partition(":")
        if username:
            credentials["username"] = unquote(username)
        if password:
            credentials["password"] = unquote(password)
    nodes = [split_host_port(part, owner, what, default_port) for part in authority.split(",") if part.strip()]
    return credentials, nodes


def parse_cluster_url(url: str, owner: str) -> Target:
    """A cluster's startup nodes, in one of the forms above (with Beaker's, the credentials of the first node URL
    that has some)."""
    url = url.strip()
    node_options: dict[str, Any] = {}
    nodes: list[tuple[str, int]] = []
    if url.startswith(CLUSTER_SCHEMES):
        scheme, _, rest = url.partition("://")
        rest, _, query = rest.partition("?")
        authority, _, path = rest.partition("/")
        if query:
            raise ConfigurationError(f"{owner}: a cluster url takes no query string; pass options as options")
        if path not in ("", "0"):
            raise ConfigurationError(f"{owner}: a redis cluster has only database 0, the url names {path!r}")
        credentials, nodes = split_authority(authority, owner)
        node_options.update(credentials)
        if scheme == "rediss+cluster":
            node_options["ssl"] = True
        display_scheme = scheme
    else:
        display_scheme = "redis+cluster"
        for part in (piece.strip() for piece in url.split(",")):
            if not part:
                continue
            if "://" not in part:
                nodes.append(split_host_port(part, owner))
                continue
            if part.startswith("unix://"):
                raise ConfigurationError(f"{owner}: cluster nodes are reached over TCP, not unix sockets")
            parse_single_url(part, owner)  # checks the scheme and the syntax
            from redis.connection import parse_url
            parsed = parse_url(part)
            if parsed.get("db", 0) != 0:
                raise ConfigurationError(f"{owner}: a redis cluster has only database 0, a node url names "
                                         f"db {parsed['db']}")
            if part.startswith("rediss://"):
                node_options["ssl"] = True
                display_scheme = "rediss+cluster"
            for option in ("username", "password"):
                if parsed.get(option) and option not in node_options:
                    node_options[option] = parsed[option]
            nodes.append((parsed.get("host", "localhost"), parsed.get("port", DEFAULT_PORT)))
    if not nodes:
        raise ConfigurationError(f"{owner}: the cluster url names no node")
    user = f"{node_options['username']}@" if node_options.get("username") else ""
    shown = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in nodes)
    return Target(url=url, display=f"{display_scheme}://{user}{shown}", cluster=True,
                  password=node_options.get("password"), nodes=nodes, node_options=node_options)


def connect_cluster(target: Target, options: dict[str, Any]) -> Any:
    """A ``RedisCluster`` client for the target's startup nodes (it connects, and reads the slot map, at once)."""
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                        **{**target.node_options, **options})
