"""The conformance suite on SQLite (a database file: the embedded default, no server). The PostgreSQL and MariaDB
runs are in test_sqla_databases.py."""
from beaker_core.testing import BackendConformance


class TestSqliteConformance(BackendConformance):
    backend = "sqla"

    def make_options(self, tmp_path):
        return {"url": f"sqlite:///{tmp_path}/beaker.db"}


class TestExtDatabaseSqliteConformance(BackendConformance):
    """Beaker's name and table option: the whole suite again through ``ext:database``."""

    backend = "ext:database"

    def make_options(self, tmp_path):
        return {"url": f"sqlite:///{tmp_path}/beaker.db", "table_name": "beaker_sessions"}
