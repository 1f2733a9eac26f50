"""Redis Sentinel: where the sentinels are, and a client that follows the primary through a failover.

A sentinel configuration names the sentinels and the service they monitor, never the primary itself:

* ``redis+sentinel://[[user]:password@]host:port,host:port/<service_name>[/<db>][?option=value&...]``
  (``rediss+sentinel://`` speaks TLS to the sentinels and to the data servers); a sentinel's port defaults to 26379;
* or the options ``sentinels = host:port, host:port`` and ``service_name = mymaster``, with ``db``, ``username``,
  ``password`` and the other options of the backend as separate keys.

The user and password of the URL (or the ``username``/``password`` options) are those of the primary and its
replicas; ``sentinel_username``/``sentinel_password`` are those of the sentinels, which often have none. The query
string takes the backend's scalar options (``socket_timeout``, ``sentinel_password``...); explicit options override
the URL.

The client is redis-py's ``Sentinel(...).master_for(service_name)``: each new connection asks a sentinel where the
primary is, so after a failover the connections to the old primary fail once and the next ones reach the new one.
Its commands go through redis-py's own ``execute_command``, never through the backend's set of direct connections
(``beaker_redis.fastpath.DirectCommands``), which would stay connected to whatever server they first reached.

Beaker had no Sentinel support, hence no key names of its own to accept here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from beaker_core.exceptions import ConfigurationError

from .cluster import split_authority
from .connection import Target, client_options

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
DEFAULT_SENTINEL_PORT = 26379
#: the backend's options a sentinel URL may carry in its query string
QUERY_OPTIONS = ("socket_timeout", "socket_connect_timeout", "health_check_interval", "max_connections",
                 "retry_on_timeout", "ssl_ca_certs", "ssl_cert_reqs", "sentinel_username", "sentinel_password")
# the options that reach the sentinels' own connections as well as the data servers'
_SHARED_WITH_SENTINELS = ("socket_timeout", "socket_connect_timeout", "ssl_ca_certs", "ssl_cert_reqs")


@dataclass
class SentinelTarget(Target):
    """A sentinel configuration: ``nodes`` are the sentinels, ``node_options`` what the URL says (credentials of
    the data servers, TLS, query options)."""

    service_name: str = ""


def is_sentinel_url(url: Any) -> bool:
    return isinstance(url, str) and url.strip().startswith(SENTINEL_SCHEMES)


def sentinel_url(sentinels: Any, owner: str) -> str:
    """The ``sentinels`` option (``host:port, host:port``, or a list of ``host:port`` strings or ``(host, port)``
    pairs) as a ``redis+sentinel://`` URL without a service name."""
    if isinstance(sentinels, str):
        parts = sentinels.split(",")
    elif isinstance(sentinels, (list, tuple)):
        parts = []
        for part in sentinels:
            if isinstance(part, (list, tuple)) and len(part) == 2:
                host, port = part
                part = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
            if not isinstance(part, str):
                parts = None
                break
            parts.append(part)
    else:
        parts = None
    if parts is None:
        raise ConfigurationError(f"{owner} option sentinels must be host:port pairs separated by commas, or a "
                                 f"list of them, not {sentinels!r}")
    addresses = [part.strip() for part in parts if part.strip()]
    if not addresses:
        raise ConfigurationError(f"{owner} option sentinels names no sentinel")
    for address in addresses:
        if "://" in address or "/" in address or "@" in address:
            raise ConfigurationError(f"{owner} option sentinels takes host:port pairs, not {address!r} (a "
                                     f"redis+sentinel:// URL goes in url)")
    return "redis+sentinel://" + ",".join(addresses)


def parse_sentinel_url(url: str, owner: str, service_name: Any = None) -> SentinelTarget:
    """A ``redis+sentinel://`` URL; ``service_name`` (the option) overrides the URL's."""
    url = url.strip()
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    authority, _, path = rest.partition("/")
    credentials, nodes = split_authority(authority, owner, "sentinel", DEFAULT_SENTINEL_PORT)
    node_options: dict[str, Any] = dict(credentials)
    if not nodes:
        raise ConfigurationError(f"{owner}: the sentinel url names no sentinel")
    url_service, _, db_text = (unquote(part) for part in path.partition("/"))
    if service_name is not None and not isinstance(service_name, str):
        raise ConfigurationError(f"{owner} option service_name must be a string, not {service_name!r}")
    service = (service_name or url_service).strip()
    if not service:
        raise ConfigurationError(f"{owner}: a sentinel configuration needs the service name the sentinels monitor "
                                 f"(redis+sentinel://host:26379,host:26379/mymaster, or service_name = mymaster)")
    if db_text.strip("/"):
        node_options["db"] = db_text.strip("/")
    query_options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(query_options) - set(QUERY_OPTIONS))
    if unknown:
        raise ConfigurationError(f"{owner}: the sentinel url's query takes {', '.join(QUERY_OPTIONS)}; not "
                                 f"{', '.join(unknown)}")
    sentinel_auth = {name: query_options.pop(name) for name in ("sentinel_username", "sentinel_password")
                     if name in query_options}
    scalars = {name: None for name in ("socket_timeout", "socket_connect_timeout", "health_check_interval",
                                       "max_connections", "retry_on_timeout", "username", "password", "db",
                                       "ssl_ca_certs", "ssl_cert_reqs", "connection_options")}
    node_options = {**client_options(f"{owner} url", **{**scalars, **node_options, **query_options}),
                    **sentinel_auth}
    if scheme == "rediss+sentinel":
        node_options["ssl"] = True
    user = f"{quote(node_options['username'], safe='')}@" if node_options.get("username") else ""
    shown = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in nodes)
    display = f"{scheme}://{user}{shown}/{quote(service, safe='')}/{node_options.get('db', 0)}"
    return SentinelTarget(url=url, display=display, cluster=False, password=node_options.get("password"),
                          nodes=nodes, node_options=node_options, service_name=service)


def connect_sentinel(target: SentinelTarget, options: dict[str, Any], defaults: dict[str, Any]) -> Any:
    """A ``redis.Redis`` client of the service's primary, found through the sentinels (lazily: nothing connects
    before the first command). ``options`` override the URL's, which override ``defaults``."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    settings = {**defaults, **target.node_options, **options}
    settings.pop("service_name", None)
    sentinel_kwargs = {name: settings[name] for name in _SHARED_WITH_SENTINELS if name in settings}
    for name in ("username", "password"):
        value = settings.pop(f"sentinel_{name}", None)
        if value:
            sentinel_kwargs[name] = value
    if settings.get("ssl"):
        sentinel_kwargs["ssl"] = True
    # a sentinel that does not answer is passed over for the next one at once (redis-py's clients would otherwise
    # retry it with growing sleeps, seconds in all, on every command of the failover window)
    sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)
    sentinels_class, pool_class = _classes()
    sentinels = sentinels_class(target.nodes, sentinel_kwargs=sentinel_kwargs)
    return sentinels.master_for(target.service_name, connection_pool_class=pool_class, **settings)


_classes_made: tuple[Any, Any] | None = None


def _classes() -> tuple[Any, Any]:
    """redis-py's ``Sentinel`` and ``SentinelConnectionPool``, with two changes (made on first use, as redis-py is
    imported only then):

    * when no sentinel names a primary, the error says what each sentinel answered in a line (redis-py's own
      message holds the whole ``repr`` of each sentinel's client);
    * closing the pool (the backend closes a client by disconnecting its pool) also closes the connections to the
      sentinels; a failover only drops the idle connections to the old primary, and keeps those.
    """
    global _classes_made
    if _classes_made is None:
        from redis.exceptions import RedisError
        from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

        class Sentinels(Sentinel):
            def discover_master(self, service_name: str) -> tuple[str, int]:
                answers = []
                for index, sentinel in enumerate(self.sentinels):
                    kwargs = sentinel.connection_pool.connection_kwargs
                    where = f"sentinel {kwargs.get('host')}:{kwargs.get('port')}"
                    try:
                        state = sentinel.sentinel_masters().get(service_name)
                    except RedisError as exc:
                        answers.append(f"{where}: {type(exc).__name__}: {exc}")
                        continue
                    if state and self.check_master_state(state, service_name):
                        # the sentinel that answered is asked first next time
                        self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                        return state["ip"], state["port"]
                    answers.append(f"{where}: " + (f"{state['ip']}:{state['port']} is {state.get('flags')}"
                                                   if state else "does not monitor it"))
                raise MasterNotFoundError(f"no sentinel names a primary for {service_name!r} "
                                          f"({'; '.join(answers)})")

        class PrimaryPool(SentinelConnectionPool):
            def disconnect(self, inuse_connections: bool = True) -> None:
                super().disconnect(inuse_connections)
                if inuse_connections:
                    for sentinel in self.sentinel_manager.sentinels:
                        sentinel.connection_pool.disconnect()

        _classes_made = (Sentinels, PrimaryPool)
    return _classes_made


def describe_sentinel_client(client: Any) -> Target | None:
    """A target for a client passed in that redis-py's ``Sentinel.master_for`` built (None for another client)."""
    from redis.sentinel import SentinelConnectionPool

    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return None
    nodes = []
    for sentinel in pool.sentinel_manager.sentinels:
        kwargs = sentinel.connection_pool.connection_kwargs
        nodes.append((kwargs.get("host", "localhost"), kwargs.get("port", DEFAULT_SENTINEL_PORT)))
    shown = ",".join(f"{host}:{port}" for host, port in nodes)
    db = pool.connection_kwargs.get("db", 0)
    return SentinelTarget(url=None, display=f"redis+sentinel://{shown}/{quote(pool.service_name, safe='')}/{db}",
                          cluster=False, password=pool.connection_kwargs.get("password"), nodes=nodes,
                          service_name=pool.service_name)
