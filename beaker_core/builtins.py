"""beaker-core's own plugin: registered through the same hooks as any installed plugin."""
from .hookspecs import hookimpl


@hookimpl
def beaker_register_backends(register):
    from .backends.dbm import DBMBackend
    from .backends.file import FileBackend
    from .backends.memory import MemoryBackend

    register("memory", MemoryBackend)
    register("file", FileBackend)
    register("dbm", DBMBackend)


@hookimpl
def beaker_register_serializers(register):
    from .serializers import json_serializer, pickle_serializer

    register("json", json_serializer)
    register("pickle", pickle_serializer)


@hookimpl
def beaker_register_locks(register):
    from .locks import NullLock, ThreadLock
    from .locks.file import FileLock

    register("thread", ThreadLock)
    register("file", FileLock)
    register("null", NullLock)
