"""The memory backend is bounded by default: least recently used entries go first."""
from __future__ import annotations

import pytest

from beaker_core.backends.memory import DEFAULT_MAX_ENTRIES, MemoryBackend
from beaker_core.cache import Cache
from beaker_core.exceptions import ConfigurationError
from beaker_core.registry import Registry
from beaker_core.session import Session


def test_the_default_bound():
    backend = MemoryBackend()
    assert backend.max_entries == DEFAULT_MAX_ENTRIES == 10_000
    for index in range(DEFAULT_MAX_ENTRIES + 50):
        backend.set(f"k{index}", index)
    assert len(backend) == DEFAULT_MAX_ENTRIES
    assert backend.get("k0") is None and backend.get(f"k{DEFAULT_MAX_ENTRIES + 49}") == DEFAULT_MAX_ENTRIES + 49


def test_reading_an_entry_keeps_it():
    backend = MemoryBackend(max_entries=3)
    for key in "abc":
        backend.set(key, key)
    assert backend.get("a") == "a"
    backend.set("d", "d")
    assert backend.get("b") is None and backend.get("a") == "a"


def test_the_cache_hit_path_marks_entries_as_used():
    registry = Registry(load_entrypoints=False)
    cache = Cache("bounded", type="memory", registry=registry, max_entries=3)
    for key in "abc":
        cache.put(key, key)
    assert cache.get("a") == "a"          # through the direct hit path
    cache.put("d", "d")
    assert cache.has_key("a") and not cache.has_key("b")


@pytest.mark.parametrize("unbounded", ["none", "None", "unbounded"])
def test_no_bound_when_asked(unbounded):
    backend = MemoryBackend(max_entries=unbounded)
    assert backend.max_entries is None
    for index in range(DEFAULT_MAX_ENTRIES + 1):
        backend.set(f"k{index}", index)
    assert len(backend) == DEFAULT_MAX_ENTRIES + 1


@pytest.mark.parametrize("bad", ["many", 0, -1, 1.5])
def test_a_wrong_bound_names_the_option(bad):
    with pytest.raises(ConfigurationError, match="max_entries"):
        MemoryBackend(max_entries=bad)


def test_many_memory_sessions_stay_within_the_bound():
    registry = Registry(load_entrypoints=False)
    options = {"type": "memory", "max_entries": "500", "registry": registry, "use_cookies": False}
    ids = []
    for index in range(2000):
        session = Session({}, **options)
        session["n"] = index
        session.save()
        ids.append(session.id)
    backend = registry.open_backend("memory", max_entries="500")
    assert len(backend) == 500
    assert Session({}, id=ids[-1], **options)["n"] == 1999
    assert Session({}, id=ids[0], **options).is_new
