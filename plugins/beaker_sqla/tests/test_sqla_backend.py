"""What is special to the sqla backend, on SQLite files (the PostgreSQL and MariaDB runs are in their own modules)."""
import subprocess
import sys

import pytest
import sqlalchemy as sa

from beaker_core.cache import Cache
from beaker_core.exceptions import BackendError, ConfigurationError, ValueTooLarge
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.concurrency import run_in_threads
from beaker_core.testing.docs import check_cache_config, check_session_counts
from beaker_core.testing.sessions import WSGIClient, session_app
from beaker_sqla import make_table as face_make_table
from beaker_sqla.backend import (DIRECT_KEY_BYTES, KEY_BYTES, READABLE_BYTES, SqlaBackend, make_cache_table,
                                 make_table)
from beaker_sqla.lock import SqlaLock


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/beaker.db"


@pytest.fixture
def store(url):
    backend = SqlaBackend(url=url)
    yield backend
    backend.close()


def rows(url, table="beaker_cache"):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(f"SELECT key, value, expires, full_key FROM {table}")).all()
    finally:
        engine.dispose()


def table_names(url):
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


# -- registration --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sqla", "database", "ext:sqla", "ext:database"])
def test_every_name_resolves_to_this_distribution(name):
    registry = Registry()
    try:
        registration = registry.lookup("backend", name)
        assert registration.distribution == "beaker-core-sqla"
        assert registration.factory is SqlaBackend
        assert registry.lookup("lock", "sqla").factory is SqlaLock
    finally:
        registry.close()


def test_attributes(store, url):
    assert store.dialect == "sqlite"
    assert isinstance(store.engine, sa.Engine)
    assert isinstance(store.table, sa.Table) and store.table.name == "beaker_cache"
    assert store.preferred_lock == "sqla"
    assert SqlaBackend.local_expiry and SqlaBackend.shared and SqlaBackend.atomic_update
    assert "beaker.db" in store.describe()


# -- keys ----------------------------------------------------------------------------------------------------------

def test_long_keys_are_mapped_without_collision_and_listed_as_written(store, url):
    common = "k" * (DIRECT_KEY_BYTES + 10)
    long_a, long_b = common + "a", common + "b"
    boundary = "x" * DIRECT_KEY_BYTES           # the longest key stored as it is
    over = "x" * (DIRECT_KEY_BYTES + 1)          # the shortest mapped one
    for index, key in enumerate([long_a, long_b, boundary, over, "é" * 400]):
        store.set(key, str(index).encode())
    assert store.get_many([long_a, long_b, boundary, over, "é" * 400]) == [b"0", b"1", b"2", b"3", b"4"]
    assert sorted(store.keys()) == sorted([long_a, long_b, boundary, over, "é" * 400])
    assert sorted(store.keys(common)) == [long_a, long_b]
    assert list(store.keys(common + "b")) == [long_b]
    stored = {bytes(row.key): row.full_key for row in rows(url)}
    assert stored[boundary.encode()] is None
    mapped = [key for key, full in stored.items() if full is not None]
    assert len(mapped) == 4 and all(len(key) == KEY_BYTES for key in mapped)
    assert all(key.startswith(b"k" * READABLE_BYTES) for key in mapped[:2] if key.startswith(b"k"))
    assert store.delete_prefix(common) == 2
    assert store.get(long_a) is None and store.get(boundary) == b"2"


def test_keys_compare_exactly(store):
    """Case, trailing spaces, NUL and a lone surrogate are part of the key on every dialect (a binary column)."""
    keys = ["a", "A", "a ", "a\x00", "\ud800", "a\u0301", "\u00e1"]
    for index, key in enumerate(keys):
        store.set(key, str(index).encode())
    assert store.get_many(keys) == [str(index).encode() for index in range(len(keys))]
    assert sorted(store.keys()) == sorted(keys)


# -- the table -----------------------------------------------------------------------------------------------------

def test_make_table_on_an_application_metadata():
    metadata = sa.MetaData()
    table = make_table(metadata, "sessions", schema_name="main")
    assert metadata.tables["main.sessions"] is table
    assert [column.name for column in table.columns] == ["key", "value", "expires", "full_key"]
    assert [column.name for column in table.primary_key] == ["key"]
    assert [index.name for index in table.indexes] == ["sessions_expires"]
    assert face_make_table is not make_table and face_make_table(sa.MetaData()).name == "beaker_cache"
    assert make_cache_table is make_table


def test_create_table_false_creates_nothing(url, tmp_path):
    backend = SqlaBackend(url=url, create_table="false")
    try:
        with pytest.raises(BackendError) as raised:
            backend.set("k", b"v")
        assert "beaker_cache" in str(raised.value) and "sqla backend at sqlite:///" in str(raised.value)
        assert "beaker_cache" not in table_names(url)
        metadata = sa.MetaData()
        make_table(metadata)
        metadata.create_all(backend.engine)   # the application's migration
        backend.set("k", b"v")
        assert backend.get("k") == b"v"
    finally:
        backend.close()


def test_the_table_is_created_once_with_its_index(store, url):
    store.set("k", b"v")
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert [index["name"] for index in inspector.get_indexes("beaker_cache")] == ["beaker_cache_expires"]
    finally:
        engine.dispose()


def test_two_backends_on_one_url_share_the_engine_and_never_collide(url):
    first, second = SqlaBackend(url=url), SqlaBackend(url=url)
    other_table = SqlaBackend(url=url, table_name="beaker_other")
    try:
        assert first.engine is second.engine is other_table.engine  # one engine per URL
        assert first.table is not second.table                      # each its own MetaData
        first.set("k", b"one")
        assert second.get("k") == b"one"
        assert other_table.get("k") is None
        other_table.set("k", b"other")
        assert first.get("k") == b"one"
        assert set(table_names(url)) == {"beaker_cache", "beaker_other"}
    finally:
        for backend in (first, second, other_table):
            backend.close()


def test_the_last_backend_closed_disposes_the_engine(url):
    first, second = SqlaBackend(url=url), SqlaBackend(url=url)
    engine = first.engine
    first.close()
    second.set("k", b"v")          # still usable
    second.close()
    third = SqlaBackend(url=url)
    try:
        assert third.engine is not engine
        assert third.get("k") == b"v"
    finally:
        third.close()


def test_two_managers_from_one_configuration(url):
    """Flask-Session's "Table already defined": two managers, and two registries, on one URL and table."""
    config = {"cache.type": "ext:database", "cache.url": url, "cache.table_name": "cache_values"}
    check_cache_config(config)
    check_cache_config(config)


# -- options -------------------------------------------------------------------------------------------------------

def test_beaker_ext_database_options(tmp_path, url):
    """Beaker's documented keys: url, table_name, schema_name, sa.* engine options (strings), and data_dir and
    lock_dir, which the database needs not."""
    config = {
        "cache.type": "ext:database", "cache.url": url, "cache.table_name": "beaker_values",
        "cache.schema_name": "main", "cache.sa.pool_recycle": "3600", "cache.sa.echo": "false",
        "cache.data_dir": str(tmp_path / "data"), "cache.lock_dir": str(tmp_path / "lock"),
    }
    (cache,) = check_cache_config(config)
    assert isinstance(cache.backend, SqlaBackend)
    assert cache.backend.table.fullname == "main.beaker_values"
    assert cache.backend.engine.pool._recycle == 3600
    assert not (tmp_path / "data").exists() and not (tmp_path / "lock").exists()
    assert [row.key for row in rows(url, "beaker_values")]


def test_beaker_session_configuration(url, tmp_path):
    config = {"session.type": "ext:database", "session.url": url, "session.data_dir": str(tmp_path / "sessions"),
              "session.lock_dir": str(tmp_path / "locks"), "session.sa.pool_size": "3"}
    check_session_counts(lambda app: SessionMiddleware(app, config))
    assert len(rows(url)) == 1


def test_sa_url_and_sa_opts(url):
    with_sa_url = SqlaBackend(**{"sa.url": url})
    with_opts = SqlaBackend(sa_opts={"sa.url": url, "sa.pool_recycle": "60"})
    try:
        with_sa_url.set("k", b"v")
        assert with_opts.get("k") == b"v"
        assert with_opts.engine.pool._recycle == 60
    finally:
        with_sa_url.close()
        with_opts.close()


def test_ext_sqla_bind_and_table(url):
    """Beaker's ext:sqla: an Engine and a Table of the application's; the engine stays the application's."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = make_table(metadata, "app_cache")
    try:
        cache = Cache("ns", type="ext:sqla", bind=engine, table=table, expire=60)
        assert cache.get("k", createfunc=lambda: "created") == "created"
        assert cache.get("k", createfunc=lambda: "again") == "created"
        assert cache.backend.engine is engine and cache.backend.table is table
        cache.backend.close()
        with engine.connect() as connection:  # not disposed
            assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() >= 1
    finally:
        engine.dispose()


def test_a_beaker_table_is_refused_with_the_way_out(url):
    engine = sa.create_engine(url)
    beaker_table = sa.Table("beaker_cache", sa.MetaData(), sa.Column("namespace", sa.String(255), primary_key=True),
                            sa.Column("data", sa.LargeBinary))
    try:
        with pytest.raises(ConfigurationError, match=r"make_table"):
            SqlaBackend(bind=engine, table=beaker_table)
    finally:
        engine.dispose()


@pytest.mark.parametrize("options, message", [
    ({}, r"needs a url option.*sqlite:///"),
    ({"url": "not a url"}, r"url option 'not a url' is not a SQLAlchemy URL"),
    ({"url": "oracle://scott:tiger@db/orcl"}, r"names the database 'oracle'.*pip install"),
    ({"url": "nosuch://host/db"}, r"names the database 'nosuch'"),
    ({"url": "postgresql+nosuchdriver://host/db"}, r"no driver 'nosuchdriver'"),
    ({"url": "postgresql+psycopg2://u:secret@host/db"}, r"needs the psycopg2 driver.*pip install psycopg2-binary"),
    ({"url": "mysql+mysqldb://u:secret@host/db"}, r"needs the mysqldb driver.*pip install mysqlclient"),
    ({"url": "mysql://u:secret@host/db"}, r"needs the mysqldb driver.*pip install mysqlclient"),
    ({"url": "sqlite+aiosqlite:///x.db"}, r"aiosqlite|asyncio"),
    ({"url": "sqlite://"}, r"in-memory SQLite"),
    ({"url": "sqlite:///:memory:"}, r"in-memory SQLite"),
    ({"url": "sqlite:///x.db", "create_table": "maybe"}, r"create_table"),
    ({"url": "sqlite:///x.db", "cleanup_batch": "0"}, r"cleanup_batch"),
    ({"url": "sqlite:///x.db", "colour": "blue"}, r"unknown option.*colour.*accepted:.*sa\.\*"),
    ({"url": "sqlite:///x.db", "sa.pool_size": "many"}, r"pool_size|engine options"),
])
def test_bad_options_name_the_option(options, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=message) as raised:
        SqlaBackend(**options)
    assert "secret" not in str(raised.value)


def test_unreachable_database_is_a_backend_error_without_the_password():
    backend = SqlaBackend(url="postgresql+psycopg://user:s3cr3t@127.0.0.1:1/db?connect_timeout=2")
    try:
        with pytest.raises(BackendError) as raised:
            backend.get("k")
        message = str(raised.value)
        assert "sqla backend at postgresql+psycopg://user:***@127.0.0.1:1/db" in message
        assert "s3cr3t" not in message
    finally:
        backend.close()


# -- values and expiry ---------------------------------------------------------------------------------------------

def test_value_over_max_value_size_is_refused_at_save_time(url):
    backend = SqlaBackend(url=url, max_value_size="1000")
    try:
        backend.set("fits", b"x" * 1000)
        with pytest.raises(ValueTooLarge, match=r"1001 bytes.*max_value_size of 1000"):
            backend.set("big", b"x" * 1001)
        with pytest.raises(ValueTooLarge):
            backend.add("big", b"x" * 1001)
        with pytest.raises(ValueTooLarge):
            backend.update("fits", lambda current: current + b"y")
        assert backend.get("big") is None and backend.get("fits") == b"x" * 1000
        cache = Cache("ns", type="sqla", url=url, max_value_size=1000)
        with pytest.raises(ValueTooLarge):
            cache.put("k", "y" * 2000)
    finally:
        backend.close()


def test_default_max_value_sizes():
    assert SqlaBackend.max_value_size is None
    from beaker_sqla.backend import DEFAULT_MAX_VALUE_SIZE
    assert DEFAULT_MAX_VALUE_SIZE["mysql"] == DEFAULT_MAX_VALUE_SIZE["mariadb"] < 16 * 1024 * 1024 // 2


def test_cleanup_deletes_in_batches(url, fake_clock):
    backend = SqlaBackend(url=url, cleanup_batch=3)
    try:
        for index in range(10):
            backend.set(f"old{index}", b"v", ttl=10)
        backend.set("live", b"v", ttl=100)
        backend.set("forever", b"v")
        fake_clock.advance(11)
        progress = []
        assert backend.cleanup(progress=progress.append) == 10
        assert progress == [3, 6, 9, 10]
        assert sorted(bytes(row.key) for row in rows(url)) == [b"forever", b"live"]
        assert backend.cleanup() == 0
    finally:
        backend.close()


def test_expired_rows_are_never_returned(store, fake_clock):
    store.set("k", b"v", ttl=5)
    store.set_many({"a": b"1", "b": b"2"}, ttl=5)
    fake_clock.advance(5)
    assert store.get("k") is None and store.get_many(["a", "b", "k"]) == [None, None, None]
    assert list(store.keys()) == [] and store.touch("k", 10) is False
    assert store.add("k", b"new") is True and store.get("k") == b"new"
    assert store.incr("a") == 1


def test_beaker_core_cleanup_command(url, fake_clock):
    backend = SqlaBackend(url=url)
    backend.set("gone", b"v", ttl=1)
    backend.set("kept", b"v")
    backend.close()
    # the command runs in its own process, on the real clock: a row that expired a second ago
    completed = subprocess.run([sys.executable, "-m", "beaker_core", "cleanup", "--type", "sqla", "--url", url],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "removed 0 expired entries" in completed.stdout  # the fake clock wrote a deadline in the future
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE beaker_cache SET expires = 1 WHERE key = :k"), {"k": b"gone"})
    finally:
        engine.dispose()
    completed = subprocess.run([sys.executable, "-m", "beaker_core", "cleanup", "--type", "sqla", "--url", url],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "removed 1 expired entry from sqla backend at sqlite:///" in completed.stdout
    assert [bytes(row.key) for row in rows(url)] == [b"kept"]


# -- atomicity -----------------------------------------------------------------------------------------------------

def test_incr_keeps_the_expiry(store, fake_clock):
    store.set("n", b"41", ttl=10)
    assert store.incr("n") == 42
    fake_clock.advance(9)
    assert store.get("n") == b"42"
    fake_clock.advance(2)
    assert store.get("n") is None
    assert store.incr("n", 5) == 5


def test_update_runs_change_on_the_live_value(store):
    assert store.update("k", lambda current: None) is False
    assert store.get("k") is None
    assert store.update("k", lambda current: (current or b"") + b"a", ttl=30) is True
    assert store.update("k", lambda current: current + b"b") is True
    assert store.get("k") == b"ab"


def test_threads_incrementing_reach_the_exact_total(store):
    run_in_threads(lambda index: [store.incr("counter") for _ in range(25)], 8)
    assert store.get("counter") == b"200"


def test_eight_concurrent_requests_each_setting_its_own_key_on_one_session_are_all_kept(url):
    config = {"session.type": "sqla", "session.url": url}
    app = SessionMiddleware(session_app, config)
    client = WSGIClient(app)
    client.json("/set?start=1")
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())

    def request(index):
        status, _, body = WSGIClient(app).request(f"/set?key{index}={index}", cookie=cookie)
        assert status.startswith("200"), body
    run_in_threads(request, 8)
    assert client.json("/get") == {"start": "1", **{f"key{index}": str(index) for index in range(8)}}


# -- the lock ------------------------------------------------------------------------------------------------------

def test_lock_row_lives_in_the_table_and_goes_on_release(store, url):
    lock = SqlaLock("creator", backend=store, lease=5, expire=30, timeout=1)
    other = SqlaLock("creator", backend=store, lease=5, expire=30, timeout=0.05)
    with lock:
        assert [bytes(row.key) for row in rows(url)] == [b"beaker-lock:creator"]
        assert other.acquire(timeout=0.05) is False
    assert rows(url) == []
    assert other.acquire(blocking=False) is True
    other.release()


def test_lock_by_url_for_another_backend(url):
    lock = SqlaLock("by-url", backend=None, url=url, timeout=1)
    twin = SqlaLock("by-url", url=url, timeout=0.05)
    assert lock.acquire() is True
    try:
        assert twin.acquire(timeout=0.05) is False
    finally:
        lock.release()
    assert twin.acquire(blocking=False) is True
    twin.release()


def test_lock_of_a_holder_that_died_frees_after_its_lease(store, fake_clock):
    store.add("beaker-lock:stale", b"someone else's token", ttl=5)
    lock = SqlaLock("stale", backend=store, lease=5, timeout=0.05)
    assert lock.acquire(timeout=0.05) is False
    fake_clock.advance(6)
    assert lock.acquire(blocking=False) is True
    lock.release()


def test_release_leaves_another_holders_lock_alone(store, fake_clock):
    lock = SqlaLock("taken-over", backend=store, lease=5, expire=30, timeout=1)
    assert lock.acquire()
    fake_clock.advance(6)                              # the lease lapsed (no renewal on the fake clock's time)
    assert store.add("beaker-lock:taken-over", b"next holder", ttl=5) is True
    lock.release()                                     # logs a warning, removes nothing
    assert store.get("beaker-lock:taken-over") == b"next holder"


def test_registry_builds_the_preferred_lock(url):
    registry = Registry()
    try:
        backend = registry.open_backend("sqla", url=url)
        factory = registry.lookup("lock", backend.preferred_lock).factory
        lock = factory("x", backend=backend)
        assert isinstance(lock, SqlaLock) and lock.backend is backend
    finally:
        registry.close()
