from beaker_redis.testing import redis_cluster, redis_server, server_factory  # noqa: F401  (fixtures)
