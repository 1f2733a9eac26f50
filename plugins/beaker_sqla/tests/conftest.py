from beaker_sqla.testing import mariadb_server, postgresql_server, server_factory  # noqa: F401  (fixtures)
