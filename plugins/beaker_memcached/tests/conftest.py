import pytest

from beaker_memcached import fastpath
from beaker_memcached.testing import memcached_server, server_factory  # noqa: F401  (fixtures)


@pytest.fixture(params=["fast path", "fallback"])
def client_path(request, monkeypatch):
    """A test module that uses it (``pytestmark = pytest.mark.usefixtures("client_path")``) runs every test with
    pymemcache's internals (beaker_memcached.fastpath) and with the public API they fall back to: the results and
    the failures must be the same."""
    if request.param == "fallback":
        monkeypatch.setattr(fastpath, "enabled", False)
    return request.param
