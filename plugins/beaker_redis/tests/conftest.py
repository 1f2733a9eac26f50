from beaker_core.testing.servers import redis_cluster, redis_server, server_factory  # noqa: F401  (fixtures)
