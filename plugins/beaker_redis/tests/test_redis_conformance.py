"""The conformance suite on a real redis-server and on a real three-master Redis Cluster."""
import pytest

from beaker_core.testing import BackendConformance


class TestRedisConformance(BackendConformance):
    backend = "redis"
    native_expiry = True
    ttl_resolution = 0.1

    @pytest.fixture(autouse=True)
    def _server(self, redis_server):
        self.url = redis_server.url

    def make_options(self, tmp_path):
        return {"url": self.url}


class TestRedisClusterConformance(BackendConformance):
    backend = "rediscluster"
    native_expiry = True
    ttl_resolution = 0.1

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster):
        self.url = redis_cluster.url

    def make_options(self, tmp_path):
        return {"url": self.url}


class TestExtRedisAliasConformance(BackendConformance):
    """Beaker's name, with a key prefix: the whole suite again through ``ext:redis``."""

    backend = "ext:redis"
    native_expiry = True
    ttl_resolution = 0.1

    @pytest.fixture(autouse=True)
    def _server(self, redis_server):
        self.url = redis_server.url

    def make_options(self, tmp_path):
        return {"url": self.url, "prefix": "app{1}:"}
