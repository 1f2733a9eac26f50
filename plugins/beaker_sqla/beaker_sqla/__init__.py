"""beaker-core-sqla: the ``sqla`` backend (also registered as ``database``, so that Beaker's ``ext:sqla`` and
``ext:database`` find it) and the ``sqla`` lock, storing sessions and cached values in a SQL database through
SQLAlchemy 2: SQLite, PostgreSQL, MariaDB and MySQL.

Importing this module is cheap: SQLAlchemy is imported only when a backend or lock is created.
"""
from beaker_core import hookimpl

__version__ = "0.1.0"


@hookimpl
def beaker_register_backends(register):
    from .backend import SqlaBackend

    register("sqla", SqlaBackend, aliases=("ext:sqla",))
    register("database", SqlaBackend, aliases=("ext:database",))


@hookimpl
def beaker_register_locks(register):
    from .lock import SqlaLock

    register("sqla", SqlaLock)


def make_table(metadata, table_name="beaker_cache", schema_name=None):
    """The backend's ``Table`` on ``metadata`` (for Alembic and ``metadata.create_all``); see
    :func:`beaker_sqla.backend.make_table`."""
    from .backend import make_table as make

    return make(metadata, table_name=table_name, schema_name=schema_name)
