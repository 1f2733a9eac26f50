"""The example plugin, found the way users find it: through its installed entry point."""
import datetime
import importlib.metadata
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from beaker_core.exceptions import ConfigurationError, SerializationError
from beaker_core.registry import Registry
from beaker_core.serializers import json_serializer
from beaker_core.testing.docs import fenced_blocks

from beaker_example_plugin.lru import ExampleLRUBackend
from beaker_example_plugin.serializer import sorted_json_serializer


@pytest.fixture
def registry():
    registry = Registry()  # real entry points: the plugin must be installed (scripts/dev-setup does it)
    yield registry
    registry.close()


def test_the_entry_point_is_installed():
    entry_points = importlib.metadata.entry_points(group="beaker_core")
    ours = [ep for ep in entry_points if ep.value == "beaker_example_plugin"]
    assert [ep.name for ep in ours] == ["example-lru"], "pip install -e examples/beaker_example_plugin"
    assert ours[0].dist.metadata["Name"] == "beaker-example-plugin"


def test_the_backend_resolves_by_name_to_the_installed_distribution(registry):
    registration = registry.lookup("backend", "example-lru")
    assert registration.factory is ExampleLRUBackend
    assert registration.distribution == "beaker-example-plugin"
    assert registration.version == importlib.metadata.version("beaker-example-plugin")
    assert registration.plugin == "example-lru"
    assert registry.lookup("backend", "example-memory-lru") is registration
    assert "example-lru" not in registry.failures


def test_the_serializer_resolves_by_name(registry):
    registration = registry.lookup("serializer", "example-json-sorted")
    assert registration.factory is sorted_json_serializer
    assert registration.distribution == "beaker-example-plugin"


def test_open_backend_coerces_and_checks_options(registry):
    backend = registry.open_backend("example-lru", max_entries="2")
    assert backend.max_entries == 2
    with pytest.raises(ConfigurationError, match="max_entries"):
        registry.open_backend("example-lru", max_entries="many")
    with pytest.raises(ConfigurationError, match="max_entires"):
        registry.open_backend("example-lru", max_entires=5)


def test_least_recently_used_entries_are_evicted_first():
    backend = ExampleLRUBackend(max_entries=3)
    for key in "abc":
        backend.set(key, key.encode())
    assert backend.get("a") == b"a"  # a is now the most recently used
    backend.set("d", b"d")
    assert backend.get_many(["a", "b", "c", "d"]) == [b"a", None, b"c", b"d"]
    assert sorted(backend.keys()) == ["a", "c", "d"]


def test_values_must_be_bytes():
    with pytest.raises(TypeError, match="stores bytes, not dict"):
        ExampleLRUBackend().set("k", {"not": "serialized"})


def test_expired_entries_are_cleaned_up():
    backend = ExampleLRUBackend()
    backend.set("short", b"1", ttl=0.05)
    backend.set("long", b"2", ttl=60)
    time.sleep(0.1)
    assert backend.cleanup() == 1
    assert list(backend.keys()) == ["long"]


def test_incr_is_atomic_across_threads():
    backend = ExampleLRUBackend()

    def bump():
        for _ in range(500):
            backend.incr("hits")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(backend.get("hits")) == 2000


def test_sorted_json_gives_equal_bytes_for_equal_values():
    first = {"b": 1, "a": {"z": (1, 2), "y": datetime.date(2024, 1, 2)}}
    second = {"a": {"y": datetime.date(2024, 1, 2), "z": (1, 2)}, "b": 1}
    data = sorted_json_serializer.dumps(first)
    assert data == sorted_json_serializer.dumps(second)
    assert data.startswith(b'{"a":{"y":')
    assert sorted_json_serializer.loads(data) == first
    assert json_serializer.loads(data) == first  # readable by the core's own json serializer


def test_sorted_json_errors_are_the_cores():
    with pytest.raises(SerializationError, match="object"):
        sorted_json_serializer.dumps(object())
    with pytest.raises(SerializationError):
        sorted_json_serializer.loads(b"{broken")


def test_the_readme_commands_run_as_written():
    """The ``beaker-core`` lines of the README's "Try it" block: the listing shows the plugin and its distribution,
    and the check of a configuration using both of its names passes."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    (block,) = fenced_blocks(readme, "sh")
    commands = [line.split("#")[0].strip() for line in block.text.splitlines() if line.startswith("beaker-core ")]
    assert [command.split()[1] for command in commands] == ["backends", "check"]
    script = os.path.join(os.path.dirname(sys.executable), "beaker-core")
    outputs = {}
    for command in commands:
        argv = shlex.split(command)
        result = subprocess.run([script, *argv[1:]], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        outputs[argv[1]] = result.stdout
    listed = [line.split() for line in outputs["backends"].splitlines()]
    assert any(row[:2] == ["backend", "example-lru"] and "beaker-example-plugin" in row for row in listed), \
        outputs["backends"]
    assert "example-lru" in outputs["check"] and "example-json-sorted" in outputs["check"], outputs["check"]
