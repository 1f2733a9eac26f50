"""The ``sqla`` backend (Beaker's ``ext:sqla`` and ``ext:database``): values in one SQL table, through SQLAlchemy 2.

The table (see :func:`make_table`) has one row per key:

* ``key``: the key's UTF-8 bytes, the primary key. A key of up to :data:`DIRECT_KEY_BYTES` bytes is stored as it
  is; a longer one as its first :data:`READABLE_BYTES` bytes followed by the 64 hexadecimal digits of its SHA-256,
  exactly :data:`KEY_BYTES` bytes, with the whole key in ``full_key``. The two forms differ in length, so they never
  collide. A binary column compares bytes exactly on every dialect (no collation folds case or pads spaces, and a
  NUL character is a character like any other) and keeps prefix scans on the primary key's index.
* ``value``: the bytes (``BLOB`` on SQLite, ``BYTEA`` on PostgreSQL, ``LONGBLOB`` on MariaDB/MySQL).
* ``expires``: when the row expires, in seconds since the epoch on :data:`beaker_core.clock.now` (a double), or
  NULL; indexed, for :meth:`SqlaBackend.cleanup`. Reads compare it with the time of this process, so they never
  return an expired row, and a test's fake clock reaches them.
* ``full_key``: the whole key's UTF-8 bytes when ``key`` holds its mapped form, else NULL.

Writes are single statements where the dialect has one: ``set`` is an upsert (``INSERT ... ON CONFLICT DO UPDATE``
on SQLite and PostgreSQL, ``INSERT ... ON DUPLICATE KEY UPDATE`` on MariaDB/MySQL) and ``add`` on SQLite and
PostgreSQL an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the existing row has expired. Read-modify-write
operations (``incr``, ``update``, and ``add`` on MariaDB/MySQL, whose affected-row count cannot tell an insert from
a row left alone) run in one transaction that holds the row: ``BEGIN IMMEDIATE`` on SQLite (the database's write
lock, taken before the read), ``SELECT ... FOR UPDATE`` on PostgreSQL and MariaDB/MySQL. A key that has no row yet
cannot be locked that way: the transaction inserts it, and when another one inserted it first (PostgreSQL's
``ON CONFLICT DO NOTHING`` reports it, MariaDB raises a duplicate-key error or a deadlock) the whole transaction is
run again, now waiting on that row's lock.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Iterator

from beaker_core import clock
from beaker_core.backends import Backend, check_delta, check_ttl, deadline
from beaker_core.exceptions import BackendError, ConfigurationError, ValueTooLarge
from beaker_core.pool import InstancePool, freeze
from beaker_core.util import coerce_bool, coerce_int, coerce_str, unknown_options

log = logging.getLogger(__name__)

#: the width of the ``key`` column, in bytes
KEY_BYTES = 512
#: the longest key stored as it is; a longer one is mapped (see the module docstring)
DIRECT_KEY_BYTES = KEY_BYTES - 1
#: how much of a mapped key stays readable in the ``key`` column
READABLE_BYTES = KEY_BYTES - 64
#: rows one ``cleanup()`` statement deletes at most
DEFAULT_CLEANUP_BATCH = 1000
#: seconds a SQLite connection waits for another writer before failing (sqlite3's busy timeout)
DEFAULT_SQLITE_TIMEOUT = 30.0
#: the largest value by default, per dialect: SQLite's default SQLITE_MAX_LENGTH is 10^9 bytes per row, a
#: PostgreSQL ``bytea`` holds up to 1 GB; MariaDB's default ``max_allowed_packet`` is 16 MiB and PyMySQL may send a
#: value escaped at up to twice its size, hence 8 MB (raise it with ``max_value_size`` and ``max_allowed_packet``)
DEFAULT_MAX_VALUE_SIZE = {"sqlite": 999_000_000, "postgresql": 1_000_000_000, "mysql": 8_000_000,
                          "mariadb": 8_000_000}
#: transactions run again at most this many times after losing a race to insert a key (or a deadlock)
MAX_ATTEMPTS = 20
#: drivers by SQLAlchemy's name, and what to pip install for them
DRIVERS = {
    "pysqlite": "nothing (the sqlite3 module of Python's standard library)",
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "pymysql": "PyMySQL",
    "mysqldb": "mysqlclient",
    "mariadbconnector": "mariadb",
    "mysqlconnector": "mysql-connector-python",
}
SUPPORTED_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")
URL_EXAMPLES = ("sqlite:////var/lib/app/beaker.db, postgresql+psycopg://user:password@host/db, "
                "mysql+pymysql://user:password@host/db")


def make_table(metadata: Any, table_name: str = "beaker_cache", schema_name: str | None = None) -> Any:
    """The ``Table`` the backend stores into, defined on ``metadata`` (an application's ``MetaData``), for Alembic
    (``target_metadata``) or ``metadata.create_all``. Nothing is created in the database.

    Pass the same ``table_name`` and ``schema_name`` as the backend's options, or pass the returned table as the
    backend's ``table`` option. The table has the index ``<table_name>_expires`` on ``expires``.
    """
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    binary_key = sa.LargeBinary().with_variant(mysql.VARBINARY(KEY_BYTES), "mysql", "mariadb")
    binary_value = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    long_key = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
    return sa.Table(
        table_name, metadata,
        sa.Column("key", binary_key, primary_key=True, autoincrement=False),
        sa.Column("value", binary_value, nullable=False),
        sa.Column("expires", sa.Double(asdecimal=False), nullable=True),
        sa.Column("full_key", long_key, nullable=True),
        sa.Index(f"{table_name}_expires", "expires"),
        schema=schema_name,
    )


#: the name Beaker's ``beaker.ext.sqla`` gives the same function
make_cache_table = make_table


# -- keys ----------------------------------------------------------------------------------------------------------

def encode_key(key: str) -> tuple[bytes, bytes | None]:
    """``(stored key, full key or None)`` for ``key`` (see the module docstring)."""
    if not isinstance(key, str):
        raise TypeError(f"keys are str, not {type(key).__name__}")
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) <= DIRECT_KEY_BYTES:
        return raw, None
    return raw[:READABLE_BYTES] + hashlib.sha256(raw).hexdigest().encode("ascii"), raw


def decode_key(stored: bytes, full: bytes | None) -> str:
    return bytes(full if full is not None else stored).decode("utf-8", "surrogatepass")


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix`` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


# -- engines -------------------------------------------------------------------------------------------------------

def _dispose(engine: Any) -> None:
    engine.dispose()


#: one engine per URL (a SQLite file by its absolute path) and engine options, for every backend and lock
shared_engines = InstancePool(close=_dispose)
_engines_made: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _after_fork() -> None:
    # a forked child must not use its parent's connections: it opens its own
    for engine in list(_engines_made):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)



def parse_url(url: Any, owner: str) -> Any:
    """``url`` as a SQLAlchemy ``URL``, or ConfigurationError naming the option."""
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, sa.URL):
        return url
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{owner} needs a url option, a SQLAlchemy URL such as {URL_EXAMPLES} "
                                 f"(got {url!r})")
    try:
        return sa.make_url(url.strip())
    except ArgumentError as exc:
        raise ConfigurationError(f"{owner}: the url option {url!r} is not a SQLAlchemy URL ({exc}); "
                                 f"examples: {URL_EXAMPLES}") from None


def public_url(url: Any) -> str:
    """``url`` as text without its password."""
    return url.render_as_string(hide_password=True)


def _engine_key(url: Any, engine_options: dict) -> Any:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:"):
        url = url.set(database=os.path.abspath(url.database))
    return url.render_as_string(hide_password=False), freeze(engine_options)


def _create_engine(url: Any, engine_options: dict, owner: str) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    backend_name = url.get_backend_name()
    driver = url.drivername.partition("+")[2] or "the default"
    if backend_name not in SUPPORTED_DIALECTS:
        raise ConfigurationError(
            f"{owner}: the url option {public_url(url)!r} names the database {backend_name!r}; this backend "
            f"supports sqlite, postgresql (pip install psycopg[binary]) and mysql/mariadb (pip install PyMySQL), "
            f"e.g. {URL_EXAMPLES}")
    options = {f"sa.{name}": value for name, value in engine_options.items()}
    options["sa.url"] = url
    extra: dict[str, Any] = {"pool_pre_ping": True}
    if backend_name == "sqlite":
        if not url.database or url.database == ":memory:" or "mode=memory" in str(url.query):
            raise ConfigurationError(
                f"{owner}: the url option {public_url(url)!r} is an in-memory SQLite database, which each connection "
                f"sees empty: name a file (sqlite:////path/to/beaker.db), or use the memory backend")
        if "sa.connect_args" not in options:
            extra["connect_args"] = {"timeout": DEFAULT_SQLITE_TIMEOUT, "check_same_thread": False}
    try:
        engine = sa.engine_from_config(options, prefix="sa.", **extra)
    except NoSuchModuleError:
        raise ConfigurationError(
            f"{owner}: SQLAlchemy has no driver {driver!r} for {backend_name} (url option {public_url(url)!r}); "
            f"use e.g. {URL_EXAMPLES}") from None
    except ImportError as exc:
        try:
            driver = url.get_driver_name()  # the dialect's default driver when the url names none
        except Exception:
            pass
        package = DRIVERS.get(driver, driver)
        raise ConfigurationError(
            f"{owner}: the url option {public_url(url)!r} needs the {driver} driver, which is not installed "
            f"(pip install {package}): {exc}") from None
    except (ArgumentError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{owner}: bad engine options {sorted(engine_options)} for "
                                 f"{public_url(url)!r}: {exc}") from None
    if getattr(engine.dialect, "is_async", False):
        engine.dispose()
        raise ConfigurationError(f"{owner}: the url option {public_url(url)!r} names an asyncio driver ({driver}); "
                                 f"this backend needs a synchronous one, e.g. {URL_EXAMPLES}")
    if backend_name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_connected)
    _engines_made.add(engine)
    return engine


def _sqlite_connected(dbapi_connection: Any, record: Any) -> None:
    # WAL: readers never block the writer nor the writer the readers, and several processes can share the file;
    # synchronous=NORMAL is durable across a crash of the application (a power loss may lose the last commits)
    import sqlite3

    cursor = dbapi_connection.cursor()
    try:
        # the mode is kept in the file once set; switching needs a moment alone with the file, and SQLite does not
        # wait for it (busy timeout) as for writes: when other connections are busy, try again until it is set
        give_up = time.monotonic() + DEFAULT_SQLITE_TIMEOUT
        while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.005)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class _InsertRace(Exception):
    """Another transaction inserted the key this one meant to insert: run again."""


# -- the backend ---------------------------------------------------------------------------------------------------

class SqlaBackend(Backend):
    """Values in a SQL table, through SQLAlchemy 2 (SQLite, PostgreSQL, MariaDB/MySQL).

    :param url: a SQLAlchemy URL: ``sqlite:////var/lib/app/beaker.db`` (a file; SQLite is part of Python),
        ``postgresql+psycopg://user:password@host/db`` (pip install psycopg[binary]),
        ``mysql+pymysql://user:password@host/db`` for MariaDB or MySQL (pip install PyMySQL). Every backend and
        lock given the same URL and engine options shares one engine (one connection pool) per process.
    :param table_name: the table (default ``beaker_cache``).
    :param schema_name: the table's schema (PostgreSQL schema, MariaDB database), default the connection's.
    :param create_table: create the table and its index when they are missing (default true, ``CREATE TABLE``
        with a check first); false leaves the schema to the application (see :func:`make_table`).
    :param bind: an SQLAlchemy ``Engine`` to use instead of ``url`` (Beaker's ``ext:sqla``); it stays the
        caller's: :meth:`close` does not dispose it.
    :param table: a ``Table`` made by :func:`make_table` to use instead of ``table_name``/``schema_name``.
    :param sa_opts: Beaker's dict of ``sa.*`` engine options, an alternative to passing them one by one.
    :param optimistic: Beaker's ``ext:database`` option, accepted and without effect: every write here is atomic.
    :param max_value_size: the largest value in bytes (defaults by dialect: about 1 GB on SQLite and PostgreSQL,
        8 MB on MariaDB/MySQL, whose ``max_allowed_packet`` must be above twice this size); a larger value raises
        :class:`~beaker_core.exceptions.ValueTooLarge` before anything is sent.
    :param cleanup_batch: rows :meth:`cleanup` deletes per statement (default 1000), so that it never holds a
        long transaction.
    :param sa.*: engine options (``sa.pool_size``, ``sa.pool_recycle``, ``sa.echo``...) as SQLAlchemy's
        ``engine_from_config`` reads them, strings from an INI file included. ``pool_pre_ping`` is on unless
        ``sa.pool_pre_ping = false``.

    Beaker's ``data_dir`` and ``lock_dir`` are accepted and ignored (locks live in the database: the ``sqla`` lock).
    Database errors are raised as :class:`~beaker_core.exceptions.BackendError` naming the backend and the URL,
    without its password; a transaction that fails leaves the row as it was.
    """

    name = "sqla"
    preferred_lock = "sqla"
    shared = True
    local_expiry = True
    atomic_update = True
    max_value_size: int | None = None

    def __init__(self, url: Any = None, *, table_name: Any = "beaker_cache", schema_name: Any = None,
                 create_table: Any = True, bind: Any = None, table: Any = None, sa_opts: Any = None,
                 optimistic: Any = False, max_value_size: Any = None, cleanup_batch: Any = DEFAULT_CLEANUP_BATCH,
                 **options: Any):
        import sqlalchemy as sa

        owner = f"the {self.name} backend"
        engine_options: dict[str, Any] = {}
        if sa_opts is not None:
            if not isinstance(sa_opts, dict):
                raise ConfigurationError(f"{owner}'s sa_opts must be a dict of sa.* options, not {sa_opts!r}")
            options = {**sa_opts, **options}
        rejected = {}
        for key, value in options.items():
            if key.startswith("sa."):
                engine_options[key[3:]] = value
            elif key not in ("data_dir", "lock_dir"):  # Beaker's shared options: the database needs no directory
                rejected[key] = value
        if rejected:
            unknown_options(owner, rejected, ["url", "table_name", "schema_name", "create_table", "bind", "table",
                                              "sa_opts", "optimistic", "max_value_size", "cleanup_batch", "sa.*"])
        if "url" in engine_options:  # Beaker's sa.url
            if url is not None:
                raise ConfigurationError(f"{owner} got both url and sa.url: give one")
            url = engine_options.pop("url")
        coerce_bool(f"{owner}'s optimistic option", optimistic)
        self.create_table = coerce_bool(f"{owner}'s create_table option", create_table)
        self.cleanup_batch = coerce_int(f"{owner}'s cleanup_batch option", cleanup_batch, minimum=1)
        if engine_options.get("pool_pre_ping") is not None:
            engine_options["pool_pre_ping"] = coerce_bool(f"{owner}'s sa.pool_pre_ping option",
                                                          engine_options["pool_pre_ping"])

        self._engine_key: Any = None
        if bind is not None:
            if url is not None or engine_options:
                raise ConfigurationError(f"{owner} got bind (an Engine) and url or sa.* options: give one")
            if not isinstance(bind, sa.Engine):
                raise ConfigurationError(f"{owner}'s bind option must be an SQLAlchemy Engine, not "
                                         f"{type(bind).__name__}")
            engine = bind
            if engine.dialect.name not in SUPPORTED_DIALECTS:
                raise ConfigurationError(f"{owner}: the bind engine's database {engine.dialect.name!r} is not "
                                         f"supported (sqlite, postgresql, mysql, mariadb)")
        else:
            parsed = parse_url(url, owner)
            key = _engine_key(parsed, engine_options)
            engine = shared_engines.checkout(key, lambda: _create_engine(parsed, engine_options, owner))
            self._engine_key = key
        self.engine = engine
        self.dialect = engine.dialect.name
        self.url = public_url(engine.url)
        self._password = engine.url.password
        self._sqlite = self.dialect == "sqlite"
        self._postgresql = self.dialect == "postgresql"
        self._mysql = self.dialect in ("mysql", "mariadb")
        try:
            if table is not None:
                if not isinstance(table, sa.Table):
                    raise ConfigurationError(f"{owner}'s table option must be an SQLAlchemy Table, not "
                                             f"{type(table).__name__}")
                missing = [name for name in ("key", "value", "expires", "full_key") if name not in table.c]
                if missing:
                    raise ConfigurationError(
                        f"{owner}: the table {table.fullname!r} has no column(s) {', '.join(missing)}; make it with "
                        f"beaker_sqla.make_table(metadata, table_name) (a table of Beaker's make_cache_table has "
                        f"another layout)")
            else:
                table_name = coerce_str(f"{owner}'s table_name option", table_name, allow_none=False)
                if not table_name:
                    raise ConfigurationError(f"{owner}'s table_name option is empty")
                schema_name = coerce_str(f"{owner}'s schema_name option", schema_name) or None
                table = make_table(sa.MetaData(), table_name, schema_name)  # a MetaData of its own: never shared
            if max_value_size is None:
                self.max_value_size = DEFAULT_MAX_VALUE_SIZE[self.dialect]
            else:
                self.max_value_size = coerce_int(f"{owner}'s max_value_size option", max_value_size, minimum=1)
        except BaseException:
            self.close()
            raise
        self.table = table
        self._ready = not self.create_table
        self._ready_guard = threading.Lock()
        self._build_statements()

    # -- statements ----------------------------------------------------------------------------------------------

    def _build_statements(self) -> None:
        import sqlalchemy as sa

        t = self.table
        c = t.c
        live = sa.or_(c.expires.is_(None), c.expires > sa.bindparam("now"))
        self._live = live
        self._select = sa.select(c.value).where(c.key == sa.bindparam("k"), live)
        self._select_many = sa.select(c.key, c.value).where(c.key.in_(sa.bindparam("ks", expanding=True)), live)
        self._delete = t.delete().where(c.key == sa.bindparam("k"))
        self._touch = t.update().where(c.key == sa.bindparam("k"), live).values(expires=sa.bindparam("e"))
        values = {"key": sa.bindparam("k"), "value": sa.bindparam("v"), "expires": sa.bindparam("e"),
                  "full_key": sa.bindparam("f")}
        if self._sqlite or self._postgresql:
            if self._sqlite:
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            new = insert(t).values(values)
            replace = {"value": new.excluded.value, "expires": new.excluded.expires, "full_key": new.excluded.full_key}
            self._upsert = new.on_conflict_do_update(index_elements=[c.key], set_=replace)
            self._add = new.on_conflict_do_update(
                index_elements=[c.key], set_=replace,
                where=sa.and_(c.expires.is_not(None), c.expires <= sa.bindparam("now"))
            ).execution_options(preserve_rowcount=True)  # psycopg reports -1 for an INSERT unless asked
            self._insert_new = new.on_conflict_do_nothing(index_elements=[c.key]).execution_options(
                preserve_rowcount=True)
        else:
            from sqlalchemy.dialects.mysql import insert

            new = insert(t).values(values)
            self._upsert = new.on_duplicate_key_update(value=new.inserted.value, expires=new.inserted.expires,
                                                       full_key=new.inserted.full_key)
            self._add = None
            self._insert_new = t.insert().values(values)
        self._lock_row = sa.select(c.value, c.expires).where(c.key == sa.bindparam("k"))
        if not self._sqlite:
            self._lock_row = self._lock_row.with_for_update()
        self._rewrite = t.update().where(c.key == sa.bindparam("k")).values(
            value=sa.bindparam("v"), expires=sa.bindparam("e"), full_key=sa.bindparam("f"))

    # -- plumbing ------------------------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"{self.name} backend at {self.url} (table {self.table.fullname})"

    def failure(self, doing: str, exc: BaseException) -> BackendError:
        """A BackendError for a database error while ``doing`` something, without the password."""
        orig = getattr(exc, "orig", None) or exc
        detail = f"{type(orig).__name__}: {orig}".strip()
        if self._password:
            detail = detail.replace(str(self._password), "***")
        detail = detail.splitlines()[0] if detail else type(exc).__name__
        return BackendError(f"the {self.name} backend at {self.url} failed {doing}: {detail}")

    def _errors(self) -> tuple[type[BaseException], ...]:
        from sqlalchemy.exc import SQLAlchemyError
        return (SQLAlchemyError,)

    def _ensure_table(self) -> None:
        if self._ready:
            return
        with self._ready_guard:
            if self._ready:
                return
            from sqlalchemy.exc import SQLAlchemyError
            try:
                with self.engine.begin() as connection:
                    if self._sqlite:  # the write lock before the check: a read turned write fails when contended
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                    self.table.create(connection, checkfirst=True)
            except SQLAlchemyError as exc:
                # another process may have created it between the check and the CREATE
                try:
                    import sqlalchemy as sa
                    exists = sa.inspect(self.engine).has_table(self.table.name, schema=self.table.schema)
                except SQLAlchemyError:
                    exists = False
                if not exists:
                    raise self.failure(f"creating the table {self.table.fullname}", exc) from exc
            self._ready = True

    def _run(self, doing: str, work: Callable[[Any], Any], *, write: bool = False, immediate: bool = False) -> Any:
        """``work(connection)`` in one transaction, committed when it returns; database errors as BackendError."""
        from sqlalchemy.exc import SQLAlchemyError

        self._ensure_table()
        try:
            if not write:
                with self.engine.connect() as connection:
                    return work(connection)
            with self.engine.begin() as connection:
                if immediate and self._sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                return work(connection)
        except SQLAlchemyError as exc:
            raise self.failure(doing, exc) from exc

    def _check_value(self, key: str, value: Any) -> bytes:
        if type(value) is not bytes:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"the {self.name} backend stores bytes, not {type(value).__name__} (key {key!r})")
            value = bytes(value)
        if self.max_value_size is not None and len(value) > self.max_value_size:
            raise ValueTooLarge(
                f"the value for {key!r} is {len(value)} bytes, over the {self.name} backend's max_value_size of "
                f"{self.max_value_size} bytes ({self.dialect} at {self.url})")
        return value

    def _retryable(self, exc: BaseException) -> bool:
        """A lost race to insert a key, or a deadlock: the transaction runs again."""
        from sqlalchemy.exc import IntegrityError, OperationalError

        if isinstance(exc, IntegrityError):
            return not self._sqlite  # SQLite's BEGIN IMMEDIATE leaves no race: a real constraint failure
        if isinstance(exc, OperationalError) and self._mysql:
            code = getattr(getattr(exc, "orig", None), "args", (None,))[0]
            return code in (1213, 1205)  # deadlock, lock wait timeout
        return False

    def _locked_change(self, doing: str, key: str, change: Callable[[bytes | None, float | None], Any]) -> Any:
        """Read the row of ``key`` under its lock (see the module docstring) and apply ``change(value, expires)``
        to the live value (None when missing or expired): it returns ``(new value, new expires, result)`` to write,
        or ``(None, None, result)`` to leave the row; the call returns ``result``."""
        from sqlalchemy.exc import SQLAlchemyError

        stored, full = encode_key(key)
        self._ensure_table()
        for _ in range(MAX_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    if self._sqlite:
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                    row = connection.execute(self._lock_row, {"k": stored}).first()
                    now = clock.now()
                    live = row is not None and (row.expires is None or row.expires > now)
                    value, expires, result = change(bytes(row.value) if live else None,
                                                    row.expires if live else None)
                    if value is None:
                        return result
                    params = {"k": stored, "v": value, "e": expires, "f": full}
                    if row is not None:
                        connection.execute(self._rewrite, params)
                        return result
                    if connection.execute(self._insert_new, params).rowcount == 1:
                        return result
                    # PostgreSQL's ON CONFLICT DO NOTHING: another transaction inserted the key first
                    raise _InsertRace()
            except _InsertRace:
                continue
            except SQLAlchemyError as exc:
                if not self._retryable(exc):
                    raise self.failure(doing, exc) from exc
        raise BackendError(f"the {self.name} backend at {self.url} failed {doing}: the key was contended "
                           f"{MAX_ATTEMPTS} times in a row")

    # -- the contract --------------------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        stored, _ = encode_key(key)
        row = self._run("reading", lambda conn: conn.execute(self._select, {"k": stored, "now": clock.now()}).first())
        return None if row is None else bytes(row.value)

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        keys = list(keys)
        if not keys:
            return []
        stored = [encode_key(key)[0] for key in keys]
        found: dict[bytes, bytes] = {}

        def read(conn: Any) -> None:
            now = clock.now()
            for start in range(0, len(stored), 500):
                chunk = list(dict.fromkeys(stored[start:start + 500]))
                for row in conn.execute(self._select_many, {"ks": chunk, "now": now}):
                    found[bytes(row.key)] = bytes(row.value)
        self._run("reading", read)
        return [found.get(key) for key in stored]

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        stored, full = encode_key(key)
        value = self._check_value(key, value)
        params = {"k": stored, "v": value, "e": deadline(ttl), "f": full}
        self._run("writing", lambda conn: conn.execute(self._upsert, params), write=True)

    def set_many(self, items: dict[str, Any], ttl: float | None = None) -> None:
        expires = deadline(ttl)
        rows = []
        for key, value in items.items():
            stored, full = encode_key(key)
            rows.append({"k": stored, "v": self._check_value(key, value), "e": expires, "f": full})
        if not rows:
            return
        # one transaction; executemany of an upsert per row (the last of a repeated key wins)
        self._run("writing", lambda conn: [conn.execute(self._upsert, row) for row in rows], write=True)

    def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        stored, full = encode_key(key)
        value = self._check_value(key, value)
        expires = deadline(ttl)
        if self._add is not None:
            params = {"k": stored, "v": value, "e": expires, "f": full, "now": clock.now()}
            return self._run("adding", lambda conn: conn.execute(self._add, params).rowcount == 1, write=True)
        return self._locked_change("adding", key, lambda current, _: (None, None, False) if current is not None
                                   else (value, expires, True))

    def delete(self, key: str) -> bool:
        stored, _ = encode_key(key)
        return self._run("deleting", lambda conn: conn.execute(self._delete, {"k": stored}).rowcount > 0, write=True)

    def delete_many(self, keys: Iterable[str]) -> None:

        stored = list(dict.fromkeys(encode_key(key)[0] for key in keys))
        if not stored:
            return

        def remove(conn: Any) -> None:
            for start in range(0, len(stored), 500):
                conn.execute(self.table.delete().where(self.table.c.key.in_(stored[start:start + 500])))
        self._run("deleting", remove, write=True)

    def touch(self, key: str, ttl: float | None) -> bool:
        stored, _ = encode_key(key)
        params = {"k": stored, "e": deadline(ttl), "now": clock.now()}
        return self._run("touching", lambda conn: conn.execute(self._touch, params).rowcount > 0, write=True)

    def incr(self, key: str, delta: int = 1) -> int:
        check_delta(delta)

        def change(current: bytes | None, expires: float | None) -> tuple[bytes, float | None, int]:
            try:
                number = int(current) if current is not None else 0
            except ValueError:
                raise BackendError(f"incr of {key!r}: the stored value is not an integer") from None
            number += delta
            return str(number).encode("ascii"), expires, number
        return self._locked_change("incrementing", key, change)

    def update(self, key: str, change: Callable[[bytes | None], Any], ttl: float | None = None) -> bool:
        """Replace the value under ``key`` with ``change(current)`` in one transaction holding the row (SQLite:
        ``BEGIN IMMEDIATE``; PostgreSQL, MariaDB: ``SELECT ... FOR UPDATE``). ``change`` may run again when the
        key had no row and another transaction inserted it first."""
        check_ttl(ttl)

        def apply(current: bytes | None, _: float | None) -> tuple[Any, Any, bool]:
            value = change(current)
            if value is None:
                return None, None, False
            return self._check_value(key, value), deadline(ttl), True
        return self._locked_change("updating", key, apply)

    def keys(self, prefix: str = "") -> Iterator[str]:
        import sqlalchemy as sa

        raw = prefix.encode("utf-8", "surrogatepass")
        scan = raw[:READABLE_BYTES]  # a mapped key shows this much of the original
        c = self.table.c
        query = sa.select(c.key, c.full_key).where(self._live)
        if scan:
            query = query.where(c.key >= scan)
            upper = _successor(scan)
            if upper is not None:
                query = query.where(c.key < upper)
        rows = self._run("listing keys", lambda conn: conn.execute(query, {"now": clock.now()}).all())
        for row in rows:
            key = decode_key(row.key, row.full_key)
            if key.startswith(prefix):
                yield key

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.keys(prefix))
        removed = 0
        for start in range(0, len(keys), 500):
            chunk = list(dict.fromkeys(encode_key(key)[0] for key in keys[start:start + 500]))
            c = self.table.c
            statement = self.table.delete().where(c.key.in_(chunk))
            removed += self._run("deleting", lambda conn: conn.execute(statement).rowcount, write=True)
        return removed

    def cleanup(self, progress: Callable[[int], Any] | None = None) -> int:
        """Delete expired rows, :attr:`cleanup_batch` at a time (each batch its own short transaction); return how
        many. ``progress(removed so far)`` is called after each batch."""
        import sqlalchemy as sa

        c = self.table.c
        expired = sa.and_(c.expires.is_not(None), c.expires <= sa.bindparam("now"))
        pick = sa.select(c.key).where(expired).limit(self.cleanup_batch)
        removed = 0
        now = clock.now()
        while True:
            keys = [bytes(row.key) for row in self._run("cleaning up",
                                                        lambda conn: conn.execute(pick, {"now": now}).all())]
            if not keys:
                return removed
            statement = self.table.delete().where(c.key.in_(keys), expired)
            removed += self._run("cleaning up", lambda conn: conn.execute(statement, {"now": now}).rowcount,
                                 write=True)
            if progress is not None:
                progress(removed)
            if len(keys) < self.cleanup_batch:
                return removed

    # -- what the sqla lock uses -----------------------------------------------------------------------------------

    def touch_if(self, key: str, value: bytes, ttl: float) -> bool:
        """Give ``key`` ``ttl`` more seconds only while it holds ``value`` and is live; return whether it did."""

        stored, _ = encode_key(key)
        c = self.table.c
        statement = self.table.update().where(c.key == stored, c.value == value, self._live).values(
            expires=clock.now() + ttl)
        return self._run("renewing", lambda conn: conn.execute(statement, {"now": clock.now()}).rowcount > 0,
                         write=True)

    def delete_if(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``; return whether it was live then (False: it had expired, or held
        another value, which is left alone)."""
        stored, _ = encode_key(key)
        c = self.table.c
        mine = self.table.delete().where(c.key == stored, c.value == value)

        def remove(conn: Any) -> bool:
            if conn.execute(mine.where(self._live), {"now": clock.now()}).rowcount > 0:
                return True
            conn.execute(mine)  # an expired row of this holder's: gone too, but the lock had lapsed
            return False
        return self._run("releasing", remove, write=True)

    def close(self) -> None:
        key, self._engine_key = self._engine_key, None
        if key is not None:
            shared_engines.checkin(key)
