"""Beaker's quickstart (a counter in environ['beaker.session']) on redis, served over real HTTP to a client that
keeps cookies."""
from beaker_core.testing.sessions import assert_quickstart_counts_over_http


def test_quickstart_counter_over_http(redis_server):
    assert_quickstart_counts_over_http({"session.type": "redis", "session.url": redis_server.url,
                                        "session.timeout": "60"})
