"""The conformance suite on one real memcached, and on three with keys spread over them."""
import pytest

from beaker_core.testing import BackendConformance


class MemcachedConformance(BackendConformance):
    supports_keys = False
    native_expiry = True
    ttl_resolution = 1.0  # memcached expires in whole seconds


class TestMemcachedConformance(MemcachedConformance):
    backend = "memcached"

    @pytest.fixture(autouse=True)
    def _server(self, memcached_server):
        self.url = memcached_server.url

    def make_options(self, tmp_path):
        return {"url": self.url}


@pytest.fixture(scope="module")
def three_memcached():
    from beaker_memcached.testing import MemcachedServerFactory
    factory = MemcachedServerFactory()
    try:
        servers = [factory.memcached() for _ in range(3)]
        yield servers
    finally:
        factory.stop_all()


class TestThreeMemcachedConformance(MemcachedConformance):
    backend = "ext:memcached"

    @pytest.fixture(autouse=True)
    def _servers(self, three_memcached):
        self.url = ";".join(server.url for server in three_memcached)

    def make_options(self, tmp_path):
        return {"url": self.url, "prefix": "app:"}
