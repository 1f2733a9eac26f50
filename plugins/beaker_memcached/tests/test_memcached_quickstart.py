"""Beaker's quickstart (a counter in environ['beaker.session']) on ext:memcached, served over real HTTP to a client
that keeps cookies."""
from beaker_core.testing.sessions import assert_quickstart_counts_over_http


def test_quickstart_counter_over_http(memcached_server):
    assert_quickstart_counts_over_http({"session.type": "ext:memcached", "session.url": memcached_server.url,
                                        "session.timeout": "60"})
