from beaker_memcached.testing import memcached_server, server_factory  # noqa: F401  (fixtures)
