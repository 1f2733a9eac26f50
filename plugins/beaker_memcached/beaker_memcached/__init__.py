"""beaker-memcached: the ``memcached`` backend and the ``memcached`` lock for beaker-core.

Importing this module is cheap: pymemcache is imported only when a backend or lock is used.
"""
from beaker_core import hookimpl

__version__ = "0.1.0"


@hookimpl
def beaker_register_backends(register):
    from .backend import MemcachedBackend

    register("memcached", MemcachedBackend, aliases=("ext:memcached",))


@hookimpl
def beaker_register_locks(register):
    from .lock import MemcachedLock

    register("memcached", MemcachedLock)
