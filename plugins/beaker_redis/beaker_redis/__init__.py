"""beaker-redis: the ``redis`` backend (a single server or a Sentinel service), the ``rediscluster`` backend and the
``redis`` lock for beaker-core.

Importing this module is cheap: redis-py is imported only when a backend or lock is created.
"""
from beaker_core import hookimpl

__version__ = "0.1.0"


@hookimpl
def beaker_register_backends(register):
    from .backend import RedisBackend, RedisClusterBackend

    register("redis", RedisBackend, aliases=("ext:redis",))
    register("rediscluster", RedisClusterBackend, aliases=("ext:rediscluster",))


@hookimpl
def beaker_register_locks(register):
    from .lock import RedisLock

    register("redis", RedisLock)
