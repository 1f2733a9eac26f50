"""Hook specifications for beaker-core plugins.

A plugin is a module (or any object) with functions marked ``@beaker_core.hookimpl``. Installed plugins are found
through the entry-point group ``beaker_core`` (one group for backends, serializers and locks). The entry point's
name should be the main backend name it provides, so that a plugin which fails to import can still be reported when
that name is asked for::

    [project.entry-points.beaker_core]
    redis = "beaker_redis"

Each hook receives a ``register`` callback. Calling it, rather than returning values, lets the registry record who
provided what, detect two plugins claiming one name, and explain a lookup that fails. Hooks are always called with
keyword arguments.
"""
import pluggy

PROJECT_NAME = "beaker_core"
ENTRY_POINT_GROUP = "beaker_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def beaker_register_backends(register):
    """Register storage backends: call ``register(name, factory, aliases=())`` once per backend.

    ``factory(**options)`` returns an object implementing :class:`beaker_core.backends.Backend`.
    """


@hookspec
def beaker_register_serializers(register):
    """Register serializers: call ``register(name, serializer, aliases=())`` once per serializer.

    ``serializer`` has ``dumps(value) -> bytes`` and ``loads(data: bytes) -> value``.
    """


@hookspec
def beaker_register_locks(register):
    """Register lock types: call ``register(name, factory, aliases=())`` once per lock type.

    ``factory(name, *, backend=None, expire=30.0, **options)`` returns a :class:`beaker_core.locks.Lock`.
    """
