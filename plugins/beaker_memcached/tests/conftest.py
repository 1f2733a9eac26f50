from beaker_core.testing.servers import memcached_server, server_factory  # noqa: F401  (fixtures)
