"""beaker-example-plugin: how a beaker-core plugin is put together.

This module is what the ``beaker_core`` entry point names. beaker-core imports it on its first registry lookup, so
it stays cheap: the hook implementations import the backend and serializer modules only when they run.

It provides:

* the ``example-lru`` backend (alias ``example-memory-lru``): bytes in a bounded, least-recently-used dict of the
  current process;
* the ``example-json-sorted`` serializer: beaker-core's tagged JSON written with sorted keys, so equal values always
  give equal bytes.
"""
from beaker_core import hookimpl

__version__ = "0.1.0"


@hookimpl
def beaker_register_backends(register):
    from .lru import ExampleLRUBackend

    register("example-lru", ExampleLRUBackend, aliases=("example-memory-lru",))


@hookimpl
def beaker_register_serializers(register):
    from .serializer import sorted_json_serializer

    register("example-json-sorted", sorted_json_serializer)
