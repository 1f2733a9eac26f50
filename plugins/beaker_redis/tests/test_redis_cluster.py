"""What is special to the rediscluster backend, on a real three-master cluster started by the fixtures."""
import uuid

import pytest
from redis.cluster import RedisCluster

from beaker_core.exceptions import BackendError, ConfigurationError
from beaker_core.registry import Registry
from beaker_redis.backend import RedisClusterBackend
from beaker_redis.lock import RedisLock


@pytest.fixture
def cluster(redis_cluster):
    if not hasattr(redis_cluster, "nodes"):
        pytest.skip("needs a cluster started by the fixtures (BEAKER_TEST_REDIS_CLUSTER_URL is set)")
    return redis_cluster


@pytest.fixture
def prefix():
    return f"bkcluster-{uuid.uuid4().hex[:12]}:"


def test_cluster_has_three_masters_holding_the_slots(cluster):
    state = cluster.state()
    assert state["cluster_state"] == "ok"
    assert int(state["cluster_size"]) >= 3
    assert int(state["cluster_slots_assigned"]) == 16384


def test_url_forms_reach_the_same_cluster(cluster, prefix):
    addresses = [node.address for node in cluster.nodes]
    forms = [
        cluster.url,                                            # redis+cluster://h:p,h:p,h:p
        ",".join(f"redis://{address}" for address in addresses),  # Beaker's ext:rediscluster form
        ",".join(addresses),                                    # bare host:port list
        f"redis://{addresses[1]}/0",                            # one startup node is enough
    ]
    writer = RedisClusterBackend(url=forms[0], prefix=prefix)
    writer.set("k", b"v")
    for url in forms:
        backend = RedisClusterBackend(url=url, prefix=prefix)
        assert backend.cluster
        assert backend.get("k") == b"v", url
        backend.close()
    writer.close()


def test_redis_type_with_a_cluster_url_is_a_cluster_backend(cluster, prefix):
    backend = Registry().open_backend("redis", url=cluster.url, prefix=prefix)
    assert isinstance(backend.client, RedisCluster)
    assert backend.describe() == "redis backend at " + cluster.url
    backend.set("k", b"v")
    assert backend.get("k") == b"v"


def test_get_many_across_slots_and_nodes_keeps_order(cluster, prefix):
    backend = RedisClusterBackend(url=cluster.url, prefix=prefix)
    keys = [f"key-{index}" for index in range(60)]
    client = backend.client
    nodes = {client.get_node_from_key(prefix + key).name for key in keys}
    assert len(nodes) == 3  # the keys really are spread over the three masters
    backend.set_many({key: key.encode() for key in keys[::2]})
    assert backend.get_many(keys) == [key.encode() if index % 2 == 0 else None for index, key in enumerate(keys)]
    assert sorted(backend.keys()) == sorted(keys[::2])  # SCAN on every master
    backend.delete_many(keys)
    assert backend.get_many(keys) == [None] * 60
    backend.close()


def test_hash_tag_prefix_keeps_keys_in_one_slot(cluster, prefix):
    backend = RedisClusterBackend(url=cluster.url, prefix="{" + prefix + "}")
    slots = {backend.client.keyslot(backend._key(f"k{index}")) for index in range(20)}
    assert len(slots) == 1
    backend.close()


def test_lock_and_records_on_the_cluster(cluster, prefix):
    backend = RedisClusterBackend(url=cluster.url, prefix=prefix)
    with RedisLock("job", backend=backend, expire=5):
        assert RedisLock("job", backend=backend).acquire(False) is False
    assert backend.merge_record("record", {"a": b"1"}, [], 30) is True
    assert backend.get_record("record") == {"a": b"1"}
    assert 0 < backend.ttl("record") <= 30
    backend.close()


def test_unreachable_cluster_names_the_nodes_without_the_password():
    with pytest.raises(BackendError) as raised:
        RedisClusterBackend(url="redis+cluster://admin:cl-secret@127.0.0.1:1,127.0.0.1:2", socket_connect_timeout=1)
    message = str(raised.value)
    assert "rediscluster backend at redis+cluster://admin@127.0.0.1:1,127.0.0.1:2" in message
    assert "cl-secret" not in message


# -- Beaker's urls option ------------------------------------------------------------------------------------------

def test_urls_as_a_list_or_a_comma_separated_string(cluster, prefix):
    node_urls = [f"redis://{node.address}" for node in cluster.nodes]
    writer = RedisClusterBackend(url=cluster.url, prefix=prefix)
    writer.set("k", b"v")
    for urls in (node_urls, tuple(node_urls), ", ".join(node_urls), node_urls[1:2]):
        backend = Registry().open_backend("ext:rediscluster", urls=urls, prefix=prefix)
        assert backend.cluster and isinstance(backend.client, RedisCluster)
        assert backend.get("k") == b"v", urls
        backend.close()
    writer.close()


def test_session_and_cache_urls_reach_the_cluster(cluster, prefix):
    from beaker_core.cache import Cache
    from beaker_core.middleware import SessionMiddleware
    from beaker_core.testing.sessions import WSGIClient, session_app

    urls = ",".join(f"redis://{node.address}" for node in cluster.nodes)
    registry = Registry()
    app = SessionMiddleware(session_app, {"session.type": "ext:rediscluster", "session.urls": urls,
                                          "session.prefix": prefix}, registry=registry)
    client = WSGIClient(app)
    assert [client.json("/incr") for _ in range(2)] == [1, 2]
    cache = Cache("cluster-urls", type="ext:rediscluster", urls=urls.split(","), prefix=prefix, registry=registry)
    assert cache.get("answer", createfunc=lambda: 42) == 42
    assert cache.get("answer", createfunc=lambda: 0) == 42
    registry.close()


@pytest.mark.parametrize("options, fragment", [
    ({"url": "redis://127.0.0.1:1", "urls": "redis://127.0.0.1:2"}, "either url or urls"),
    ({"urls": " , "}, "names no node"),
    ({"urls": []}, "urls names no node"),
    ({"urls": 7000}, "urls must be a list of urls or a comma-separated string"),
    ({"urls": ["redis://127.0.0.1:1", 2]}, "urls must be a list"),
])
def test_urls_mistakes_are_configuration_errors(options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        RedisClusterBackend(**options)
