"""The registry: register-callback hooks, Beaker's aliases, helpful misses, broken and duplicate plugins.

Plugins here are real: objects with hookimpls registered through pluggy, and, where entry points matter, real
distributions (a ``*.dist-info`` directory with ``entry_points.txt`` on ``sys.path``) that importlib.metadata finds.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import beaker_core
from beaker_core import hookimpl
from beaker_core.backends import Backend
from beaker_core.exceptions import (ConfigurationError, DuplicatePlugin, InvalidCacheBackendError, PluginLoadError,
                                    PluginNotFound)
from beaker_core.locks import NullLock
from beaker_core.registry import DISABLE_ENV, Registry, default_registry
from beaker_core.serializers import json_serializer

REPO = Path(__file__).resolve().parents[1]


class StubBackend(Backend):
    """Just enough of a backend to be constructed and closed."""

    name = "stub"
    instances = 0

    def __init__(self, **options):
        type(self).instances += 1
        self.options = options
        self.closed = False

    def close(self):
        self.closed = True


def make_plugin(backends=(), serializers=(), locks=(), fail=None):
    """A plugin object whose hooks register ``(name, factory, aliases)`` triples; ``fail`` raises after them."""

    class Plugin:
        @hookimpl
        def beaker_register_backends(self, register):
            for name, factory, aliases in backends:
                register(name, factory, aliases=aliases)
            if fail == "backends":
                raise RuntimeError("boom in the backend hook")

        @hookimpl
        def beaker_register_serializers(self, register):
            for name, serializer, aliases in serializers:
                register(name, serializer, aliases=aliases)

        @hookimpl
        def beaker_register_locks(self, register):
            if fail == "locks":
                raise RuntimeError("boom in the lock hook")
            for name, factory, aliases in locks:
                register(name, factory, aliases=aliases)

    return Plugin()


def bare_registry():
    return Registry(load_entrypoints=False, builtins=False)


def make_distribution(root: Path, name: str, version: str, entry_points: dict, modules: dict) -> None:
    """Write an installed distribution: ``<name>-<version>.dist-info`` and its plugin modules, under ``root``."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep_name} = {target}\n" for ep_name, target in entry_points.items())
    (info / "entry_points.txt").write_text("[beaker_core]\n" + lines)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def backend_module(*names: str) -> str:
    registrations = "\n".join(f"    register({name!r}, MemoryBackend)" for name in names)
    return ("from beaker_core import hookimpl\n"
            "from beaker_core.backends.memory import MemoryBackend\n\n"
            "@hookimpl\n"
            "def beaker_register_backends(register):\n" + registrations + "\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path for fake installed distributions; their modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    before = set(sys.modules)
    yield tmp_path
    for module in set(sys.modules) - before:
        if getattr(sys.modules[module], "__file__", "") and sys.modules[module].__file__.startswith(str(tmp_path)):
            del sys.modules[module]


# -- registration through the hooks ------------------------------------------------------------------------------

def test_hooks_register_backends_serializers_and_locks_with_their_provider():
    registry = bare_registry()
    plugin = make_plugin(backends=[("alpha", StubBackend, ("alpha-store",))],
                         serializers=[("alpha-json", json_serializer, ())],
                         locks=[("alpha-lock", NullLock, ("al",))])
    registry.register_plugin(plugin, "alpha", distribution="beaker-alpha", version="1.2.3")

    backend = registry.lookup("backend", "alpha")
    assert backend.factory is StubBackend
    assert (backend.kind, backend.plugin, backend.distribution, backend.version) == \
        ("backend", "alpha", "beaker-alpha", "1.2.3")
    assert registry.lookup("backend", "alpha-store") is backend
    assert registry.backend_class("alpha-store") is StubBackend
    assert registry.serializer("alpha-json") is json_serializer
    assert registry.lock_class("al") is NullLock
    assert [reg.name for reg in registry.registrations("backend")] == ["alpha"]  # aliases are not listed twice
    assert registry.registrations("backend")[0].aliases == ("alpha-store",)


def test_the_same_plugin_object_is_registered_once():
    registry = bare_registry()
    plugin = make_plugin(backends=[("alpha", StubBackend, ())])
    registry.register_plugin(plugin, "alpha")
    registry.register_plugin(plugin, "alpha")
    assert len(registry.registrations("backend")) == 1


@pytest.mark.parametrize("beaker_name,canonical", [
    ("ext:redis", "redis"), ("ext:rediscluster", "rediscluster"), ("ext:memcached", "memcached"),
    ("ext:pylibmc", "memcached"), ("ext:bmemcached", "memcached"), ("ext:mongodb", "mongodb"),
    ("ext:sqla", "sqla"), ("ext:database", "database"),
])
def test_beakers_ext_names_resolve_to_the_plugin_name(beaker_name, canonical):
    registry = bare_registry()
    registry.register_plugin(make_plugin(backends=[(canonical, StubBackend, ())]), "network")
    assert registry.lookup("backend", beaker_name).name == canonical


def test_builtins_register_through_the_same_hooks():
    registry = Registry(load_entrypoints=False)
    for kind, names in {"backend": ["dbm", "file", "memory"], "serializer": ["json", "pickle"],
                        "lock": ["file", "null", "thread"]}.items():
        registrations = registry.registrations(kind)
        assert [reg.name for reg in registrations] == names, registry.failures
        assert {(reg.plugin, reg.distribution) for reg in registrations} == {("builtins", "beaker-core")}
    assert registry.serializer("json") is json_serializer
    assert not registry.failures


def test_wrong_kind_or_name_is_a_configuration_error():
    registry = bare_registry()
    with pytest.raises(ConfigurationError, match="kind must be one of backend, serializer, lock"):
        registry.lookup("widget", "x")
    with pytest.raises(ConfigurationError, match="non-empty string"):
        registry.lookup("backend", "")
    with pytest.raises(ConfigurationError, match="non-empty string"):
        registry.lookup("backend", None)
    with pytest.raises(ConfigurationError, match="kind must be one of"):
        registry.register("widget", "x", StubBackend)


# -- names nobody provides -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("asked,distribution,folder", [
    ("redis", "beaker-core-redis", "plugins/beaker_redis"), ("ext:redis", "beaker-core-redis", "plugins/beaker_redis"),
    ("ext:rediscluster", "beaker-core-redis", "plugins/beaker_redis"),
    ("memcached", "beaker-core-memcached", "plugins/beaker_memcached"),
    ("ext:memcached", "beaker-core-memcached", "plugins/beaker_memcached"),
])
def test_unknown_backend_message_names_what_was_asked_what_is_installed_and_what_to_install(asked, distribution,
                                                                                              folder):
    registry = bare_registry()
    registry.register_plugin(make_plugin(backends=[("alpha", StubBackend, ()), ("beta", StubBackend, ())]), "ab")
    with pytest.raises(PluginNotFound) as excinfo:
        registry.lookup("backend", asked)
    message = str(excinfo.value)
    assert repr(asked) in message
    assert "alpha, beta" in message
    assert f"pip install {distribution}" in message
    assert f"from the root of a beaker-core clone: pip install ./{folder}" in message  # not on PyPI yet
    assert (Path(__file__).parent.parent / folder / "pyproject.toml").is_file()


@pytest.mark.parametrize("asked,distribution", [
    ("redis", "beaker-core-redis"), ("memcached", "beaker-core-memcached"), ("mongodb", "beaker-core-mongo"),
    ("ext:mongodb", "beaker-core-mongo"), ("sqla", "beaker-core-sqla"), ("ext:sqla", "beaker-core-sqla"),
    ("ext:database", "beaker-core-sqla"), ("s3", "beaker-core-s3"),
])
def test_install_hint_names_the_beaker_core_distribution_never_a_short_beaker_name(asked, distribution):
    # beaker-redis, beaker-mongo... on PyPI are unrelated Beaker-era packages: installing one leaves the error
    with pytest.raises(PluginNotFound) as excinfo:
        bare_registry().lookup("backend", asked)
    message = str(excinfo.value)
    assert distribution in message
    short = distribution.replace("beaker-core-", "beaker-")
    assert short not in message.replace(distribution, "")


@pytest.mark.parametrize("asked,distribution", [
    ("ext:mongodb", "beaker-core-mongo"), ("ext:sqla", "beaker-core-sqla"), ("ext:database", "beaker-core-sqla"),
    ("s3", "beaker-core-s3"),
])
def test_a_planned_backend_is_named_without_a_command_that_cannot_work_yet(asked, distribution):
    with pytest.raises(PluginNotFound) as excinfo:
        bare_registry().lookup("backend", asked)
    message = str(excinfo.value)
    assert f"it will be provided by {distribution} (planned, not written yet)" in message
    assert "pip install" not in message


def test_unknown_name_without_a_known_distribution_points_to_the_entry_point_group():
    registry = bare_registry()
    with pytest.raises(PluginNotFound) as excinfo:
        registry.lookup("backend", "cassandra")
    message = str(excinfo.value)
    assert "'cassandra'" in message and "installed backends: none" in message
    assert "pip install" not in message and "beaker_core" in message


def test_unknown_serializer_and_lock_list_the_installed_ones():
    registry = bare_registry()
    registry.register_plugin(make_plugin(serializers=[("json", json_serializer, ())], locks=[("null", NullLock, ())]),
                             "few")
    with pytest.raises(PluginNotFound, match=r"'msgpack'.*installed serializers: json"):
        registry.serializer("msgpack")
    with pytest.raises(PluginNotFound, match=r"'redis'.*installed locks: null"):
        registry.lock_class("redis")


def test_not_found_is_catchable_as_lookup_error_and_as_beakers_exception():
    with pytest.raises(LookupError):
        bare_registry().lookup("backend", "nothing")
    with pytest.raises(InvalidCacheBackendError):
        bare_registry().lookup("backend", "nothing")


# -- broken plugins ------------------------------------------------------------------------------------------------

def test_a_hook_that_raises_fails_only_its_own_names():
    registry = bare_registry()
    registry.register_plugin(make_plugin(backends=[("good", StubBackend, ())]), "good", distribution="beaker-good")
    broken = make_plugin(backends=[("half", StubBackend, ("half-alias",))],
                         serializers=[("broken-json", json_serializer, ())], fail="backends")
    registry.register_plugin(broken, "broken", distribution="beaker-broken", version="0.9")

    for name in ("half", "half-alias"):  # registered before the hook raised: withdrawn, not half-working
        with pytest.raises(PluginLoadError) as excinfo:
            registry.lookup("backend", name)
        message = str(excinfo.value)
        assert "beaker-broken 0.9" in message and "boom in the backend hook" in message
        assert isinstance(excinfo.value.__cause__, RuntimeError)
    assert registry.lookup("backend", "good").distribution == "beaker-good"
    assert registry.serializer("broken-json") is json_serializer  # its other hooks ran fine
    assert [reg.name for reg in registry.registrations("backend")] == ["good"]
    assert set(registry.failures) == {"broken"}
    assert "RuntimeError: boom in the backend hook" in registry.failures["broken"].describe()


def test_a_hook_failing_before_registering_anything_is_reported_under_the_plugin_name():
    registry = bare_registry()
    registry.register_plugin(make_plugin(fail="locks"), "fragile-lock", distribution="beaker-fragile")
    with pytest.raises(PluginLoadError, match="boom in the lock hook"):
        registry.lock_class("fragile-lock")
    with pytest.raises(PluginNotFound):
        registry.lock_class("something-else")


def test_an_entry_point_that_fails_to_import_breaks_nothing_else(site):
    make_distribution(site, "beaker-brokenstore", "2.0", {"brokenstore": "broken_store_plugin"},
                      {"broken_store_plugin": 'raise ImportError("the brokenstore client library is missing")\n'})
    make_distribution(site, "beaker-goodstore", "1.0", {"goodstore": "good_store_plugin"},
                      {"good_store_plugin": backend_module("goodstore")})
    registry = Registry(builtins=False)

    registration = registry.lookup("backend", "goodstore")
    assert (registration.distribution, registration.version, registration.plugin) == \
        ("beaker-goodstore", "1.0", "goodstore")
    with pytest.raises(PluginLoadError) as excinfo:
        registry.lookup("backend", "brokenstore")
    message = str(excinfo.value)
    assert "beaker-brokenstore 2.0" in message and "client library is missing" in message
    failure = registry.failures["brokenstore"]
    assert (failure.distribution, failure.version) == ("beaker-brokenstore", "2.0")
    assert isinstance(failure.error, ImportError)


def test_a_failed_plugin_answers_for_the_beaker_alias_of_its_name(site):
    make_distribution(site, "beaker-core-redis-broken", "0.1", {"redis": "broken_redis_plugin"},
                      {"broken_redis_plugin": "import no_such_redis_client_module\n"})
    registry = Registry(builtins=False, disabled=["beaker-core-redis"])  # keep a real beaker-core-redis out of the way
    with pytest.raises(PluginLoadError, match="beaker-core-redis-broken 0.1.*no_such_redis_client_module"):
        registry.lookup("backend", "ext:redis")


def test_a_plugin_pluggy_refuses_is_recorded_not_raised(site):
    bad_hook = ("from beaker_core import hookimpl\n\n"
                "@hookimpl\n"
                "def beaker_register_backends(registry):  # wrong argument name\n"
                "    pass\n")
    make_distribution(site, "beaker-badhook", "1.0", {"badhook": "bad_hook_plugin"}, {"bad_hook_plugin": bad_hook})
    make_distribution(site, "beaker-fine", "1.0", {"finestore": "fine_store_plugin"},
                      {"fine_store_plugin": backend_module("finestore")})
    registry = Registry(builtins=False)
    assert registry.lookup("backend", "finestore").distribution == "beaker-fine"
    with pytest.raises(PluginLoadError, match="beaker-badhook"):
        registry.lookup("backend", "badhook")


# -- duplicates ----------------------------------------------------------------------------------------------------

def test_two_distributions_claiming_one_name_is_an_error_naming_both(site):
    make_distribution(site, "beaker-twin-one", "1.0", {"twin": "twin_one_plugin"},
                      {"twin_one_plugin": backend_module("twin", "only-one")})
    make_distribution(site, "beaker-twin-two", "2.0", {"twin2": "twin_two_plugin"},
                      {"twin_two_plugin": backend_module("twin", "only-two")})
    registry = Registry(builtins=False)
    with pytest.raises(DuplicatePlugin) as excinfo:
        registry.lookup("backend", "twin")
    message = str(excinfo.value)
    assert "beaker-twin-one" in message and "beaker-twin-two" in message and DISABLE_ENV in message
    assert [str(conflict) for conflict in registry.conflicts()] == [message]
    # the names that are not disputed keep working
    assert registry.lookup("backend", "only-one").distribution == "beaker-twin-one"
    assert registry.lookup("backend", "only-two").distribution == "beaker-twin-two"


def test_an_alias_clashing_with_a_name_is_a_duplicate():
    registry = bare_registry()
    registry.register_plugin(make_plugin(backends=[("shared", StubBackend, ())]), "first", distribution="dist-a")
    registry.register_plugin(make_plugin(backends=[("other", StubBackend, ("shared",))]), "second",
                             distribution="dist-b")
    with pytest.raises(DuplicatePlugin, match="dist-a.*dist-b"):
        registry.lookup("backend", "shared")
    assert registry.lookup("backend", "other").distribution == "dist-b"


def test_direct_registration_of_a_taken_name_raises_at_once():
    registry = bare_registry()
    registry.register("backend", "mine", StubBackend, distribution="app")
    with pytest.raises(DuplicatePlugin, match="'mine'"):
        registry.register("backend", "mine", StubBackend, plugin="other", distribution="other-app")
    assert registry.lookup("backend", "mine").distribution == "app"


# -- disabling -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("disabled", ["beaker-goodstore", "Beaker_GoodStore", "goodstore", " other , goodstore "])
def test_the_environment_variable_disables_a_plugin(site, monkeypatch, disabled):
    make_distribution(site, "beaker-goodstore", "1.0", {"goodstore": "good_store_plugin"},
                      {"good_store_plugin": backend_module("goodstore")})
    assert Registry(builtins=False).lookup("backend", "goodstore")
    monkeypatch.setenv(DISABLE_ENV, disabled)
    registry = Registry(builtins=False)
    with pytest.raises(PluginNotFound):
        registry.lookup("backend", "goodstore")
    assert "goodstore" not in registry.failures


def test_an_explicit_disabled_list_wins_over_the_environment(site, monkeypatch):
    make_distribution(site, "beaker-goodstore", "1.0", {"goodstore": "good_store_plugin"},
                      {"good_store_plugin": backend_module("goodstore")})
    monkeypatch.setenv(DISABLE_ENV, "goodstore")
    assert Registry(builtins=False, disabled=()).lookup("backend", "goodstore").distribution == "beaker-goodstore"


def test_load_entrypoints_false_ignores_installed_plugins(site):
    make_distribution(site, "beaker-goodstore", "1.0", {"goodstore": "good_store_plugin"},
                      {"good_store_plugin": backend_module("goodstore")})
    with pytest.raises(PluginNotFound):
        bare_registry().lookup("backend", "goodstore")
    assert "good_store_plugin" not in sys.modules


# -- laziness ------------------------------------------------------------------------------------------------------

LAZY_SCRIPT = """
import importlib.metadata, importlib.util, sys

calls = []
real_entry_points = importlib.metadata.entry_points

def counting_entry_points(*args, **kwargs):
    calls.append(kwargs.get("group"))
    return real_entry_points(*args, **kwargs)

importlib.metadata.entry_points = counting_entry_points

import beaker_core, beaker_core.registry, beaker_core.cli
for optional in ("beaker_core.cache", "beaker_core.session", "beaker_core.middleware", "beaker_core.asgi"):
    if importlib.util.find_spec(optional) is not None:
        __import__(optional)
registry = beaker_core.registry.default_registry()
assert "lazy_store_plugin" not in sys.modules, "plugin imported before the first lookup"
assert "beaker_core" not in calls, f"entry points read before the first lookup: {calls}"

registration = registry.lookup("backend", "lazystore")
assert registration.distribution == "beaker-lazystore", registration
assert "lazy_store_plugin" in sys.modules
assert calls.count("beaker_core") == 1, calls
registry.lookup("backend", "lazystore")
assert calls.count("beaker_core") == 1, "entry points read again on the second lookup"
print("lazy ok")
"""


def test_entry_points_are_read_on_the_first_lookup_not_at_import(tmp_path):
    make_distribution(tmp_path, "beaker-lazystore", "1.0", {"lazystore": "lazy_store_plugin"},
                      {"lazy_store_plugin": backend_module("lazystore")})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    env.pop(DISABLE_ENV, None)
    result = subprocess.run([sys.executable, "-c", LAZY_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "lazy ok" in result.stdout


def test_default_registry_is_one_shared_instance():
    assert default_registry() is default_registry()
    assert isinstance(default_registry(), Registry)


# -- shared backend instances --------------------------------------------------------------------------------------

def test_open_backend_shares_one_instance_per_name_and_options():
    registry = bare_registry()
    registry.register("backend", "stub", StubBackend, aliases=("stub-alias",))
    first = registry.open_backend("stub", url="x://a", options={"pool": [1, 2]})
    assert registry.open_backend("stub", options={"pool": [1, 2]}, url="x://a") is first
    assert registry.open_backend("stub-alias", url="x://a", options={"pool": [1, 2]}) is first
    other = registry.open_backend("stub", url="x://b")
    assert other is not first
    assert first.options == {"url": "x://a", "options": {"pool": [1, 2]}}

    registry.close()
    assert first.closed and other.closed
    assert registry.open_backend("stub", url="x://a", options={"pool": [1, 2]}) is not first


def test_open_backend_of_an_unknown_name_raises_the_helpful_error():
    with pytest.raises(PluginNotFound, match="pip install beaker-core-memcached"):
        bare_registry().open_backend("ext:memcached", url="127.0.0.1:11211")


def test_the_package_exports_hookimpl():
    assert beaker_core.hookimpl is hookimpl
