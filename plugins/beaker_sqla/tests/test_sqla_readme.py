"""The ```ini and ```python blocks of this plugin's README.md, taken from the file and run as written.

SQLite blocks run with their database file moved under the test's temporary directory (the only change): a
``cache.*`` block must cache (once per region, and for a second ``CacheManager``) and leave its rows in the table; a
``session.*`` block must keep a counter across requests through ``SessionMiddleware`` and leave the session's row.
Blocks for PostgreSQL and MariaDB name a server that is not there: their options are checked by building the
backend they configure (which connects only on first use), and the URL must name the driver the README installs.
"""
from pathlib import Path

import pytest
import sqlalchemy as sa

from beaker_core.util import parse_cache_config_options
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.testing.docs import check_cache_config, check_session_counts, fenced_blocks, read_ini
from beaker_sqla.backend import SqlaBackend

README = Path(__file__).resolve().parents[1] / "README.md"
INI_BLOCKS = fenced_blocks(README, "ini")
PYTHON_BLOCKS = fenced_blocks(README, "python")
#: options of the core, not the backend's
CORE_OPTIONS = {"type", "key", "secret", "expire", "regions", "data_dir", "lock_dir"}


def config_of(block) -> dict:
    (config,) = read_ini(block.text).values()
    return config


def url_of(config: dict) -> str:
    return next(value for key, value in config.items() if key.endswith(".url"))


def test_blocks_are_found():
    urls = [url_of(config_of(block)) for block in INI_BLOCKS]
    assert len([url for url in urls if url.startswith("sqlite:")]) >= 2
    assert any(url.startswith("postgresql+psycopg://") for url in urls)
    assert any(url.startswith("mysql+pymysql://") for url in urls)
    assert len(PYTHON_BLOCKS) == 1


@pytest.mark.parametrize("block", INI_BLOCKS, ids=[block.name for block in INI_BLOCKS])
def test_readme_block_runs_as_written(block, tmp_path):
    config = config_of(block)
    url = url_of(config)
    if not url.startswith("sqlite:"):
        assert url.startswith(("postgresql+psycopg://", "mysql+pymysql://")), url
        scope = next(key for key in config if key.endswith(".type")).split(".")[0]
        options = {key[len(scope) + 1:]: value for key, value in config.items() if key.startswith(scope + ".")}
        registry = Registry()
        try:
            backend = registry.open_backend(options["type"], **{key: value for key, value in options.items()
                                                                 if key not in CORE_OPTIONS})
            assert isinstance(backend, SqlaBackend) and "secret" not in backend.describe()
        finally:
            registry.close()
        return
    database = tmp_path / Path(sa.make_url(url).database).name
    config = {key: f"sqlite:///{database}" if key.endswith(".url") else value for key, value in config.items()}
    for key in config:
        if key.endswith("data_dir"):
            config[key] = str(tmp_path / "data")
    if any(key.startswith("cache.") for key in config):
        caches = check_cache_config(config)
        table = config.get("cache.table_name", "beaker_cache")
        assert all(isinstance(cache.backend, SqlaBackend) for cache in caches)
        assert all(cache.backend.table.name == table for cache in caches)
        assert parse_cache_config_options(config)["type"] == config["cache.type"]
    else:
        check_session_counts(lambda app: SessionMiddleware(app, config))
        table = "beaker_cache"
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() >= 1
    finally:
        engine.dispose()


def test_python_block_runs(tmp_path):
    (block,) = PYTHON_BLOCKS
    code = block.text.replace("/var/lib/myapp/app.db", str(tmp_path / "app.db"))
    namespace: dict = {}
    exec(compile(code, block.name, "exec"), namespace)
    cache = namespace["cache"].get_cache("readme")
    assert cache.get("k", createfunc=lambda: "made") == "made"
    assert cache.get("k", createfunc=lambda: "again") == "made"
    assert cache.backend.engine is namespace["engine"]
    namespace["engine"].dispose()
