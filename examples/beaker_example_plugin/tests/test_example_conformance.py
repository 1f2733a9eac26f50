"""The conformance suite every backend runs, pointed at example-lru: this is all a plugin's test needs."""
from beaker_core.testing import BackendConformance


class TestExampleLRUConformance(BackendConformance):
    backend = "example-lru"
    options = {"max_entries": 10_000}
