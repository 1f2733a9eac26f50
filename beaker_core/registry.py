"""The registry: which backends, serializers and locks exist, and who provides them.

A :class:`Registry` registers beaker-core's built-in plugin module through the same hooks as an installed plugin,
and loads the ``beaker_core`` entry-point group lazily, on the first lookup (never at import time). Beaker's names
(``ext:redis``, ``ext:memcached``...) are accepted as aliases.

Failure handling, by design:

* a name nobody provides raises :class:`~beaker_core.exceptions.PluginNotFound` whose message says what was asked,
  what is installed, and which distribution to ``pip install``;
* a plugin that fails to import (or whose register hook raises) is recorded, and its error is raised only when one
  of its names is asked for; every other lookup keeps working;
* two plugins registering one name is a :class:`~beaker_core.exceptions.DuplicatePlugin` error naming both; it is
  raised when that name is asked for (or at once, for a direct :meth:`Registry.register` call);
* the environment variable ``BEAKER_CORE_DISABLE_PLUGINS`` (comma separated entry-point or distribution names)
  keeps installed plugins from loading.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .exceptions import ConfigurationError, DuplicatePlugin, PluginLoadError, PluginNotFound
from .pool import InstancePool, freeze
from .util import fit_options

KINDS = ("backend", "serializer", "lock")
DISABLE_ENV = "BEAKER_CORE_DISABLE_PLUGINS"
CORE_DISTRIBUTION = "beaker-core"

# Beaker's backend names, and the names of the distributions that provide backends this core does not ship.
BEAKER_ALIASES = {
    "ext:redis": "redis",
    "ext:rediscluster": "rediscluster",
    "ext:memcached": "memcached",
    "ext:pylibmc": "memcached",
    "ext:bmemcached": "memcached",
    "ext:mongodb": "mongodb",
    "ext:sqla": "sqla",
    "ext:database": "database",
}
# Every plugin distribution is named beaker-core-<name>: the short names (beaker-redis, beaker-mongo) belong to
# unrelated Beaker-era packages on PyPI, which would install without providing the backend.
KNOWN_DISTRIBUTIONS = {
    "redis": "beaker-core-redis",
    "rediscluster": "beaker-core-redis",
    "memcached": "beaker-core-memcached",
    "mongodb": "beaker-core-mongo",
    "sqla": "beaker-core-sqla",
    "database": "beaker-core-sqla",
    "s3": "beaker-core-s3",
}
# The written plugins are not on PyPI yet: the folder that installs each one, from the root of a beaker-core clone.
# A known distribution without a folder here is planned, and the install hint says so instead of naming a command.
PLUGIN_FOLDERS = {
    "beaker-core-redis": "plugins/beaker_redis",
    "beaker-core-memcached": "plugins/beaker_memcached",
}
_HOOKS = {
    "backend": "beaker_register_backends",
    "serializer": "beaker_register_serializers",
    "lock": "beaker_register_locks",
}


@dataclass(frozen=True)
class Registration:
    """One registered backend, serializer or lock type."""

    kind: str
    name: str
    factory: Any
    aliases: tuple[str, ...]
    plugin: str
    distribution: str
    version: str


@dataclass
class PluginFailure:
    """An installed plugin that could not be loaded, and why."""

    plugin: str
    distribution: str
    version: str
    error: BaseException
    names: set[str] = field(default_factory=set)

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


def _canonical(name: str) -> str:
    return BEAKER_ALIASES.get(name, name)


def _normalize(distribution: str) -> str:
    """A distribution name as packaging compares them: beaker_core_redis and Beaker.Core-Redis are one."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _disabled_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class Registry:
    """Backends, serializers and locks by name.

    :param load_entrypoints: load installed plugins from the ``beaker_core`` entry-point group on first lookup.
    :param builtins: register beaker-core's own memory, file and dbm backends, serializers and locks.
    :param disabled: plugin or distribution names not to load; defaults to ``$BEAKER_CORE_DISABLE_PLUGINS``.
    """

    def __init__(self, *, load_entrypoints: bool = True, builtins: bool = True,
                 disabled: Iterable[str] | None = None):
        self._load_entrypoints = load_entrypoints
        self._builtins = builtins
        self._disabled = set(disabled) if disabled is not None else None
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._tables: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[tuple[str, str], DuplicatePlugin] = {}
        self.failures: dict[str, PluginFailure] = {}
        self._loaded = False
        self._lock = threading.RLock()
        self._backends = InstancePool(close=_close_backend)

    # -- loading ---------------------------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            if self._builtins:
                from . import builtins as builtin_plugin
                self._add_plugin(builtin_plugin, "builtins", CORE_DISTRIBUTION, _core_version())
            if self._load_entrypoints:
                self._load_entry_points()
            self._loaded = True

    def _load_entry_points(self) -> None:
        disabled = self._disabled if self._disabled is not None else _disabled_from_env()
        disabled_distributions = {_normalize(name) for name in disabled}
        for entry_point in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = getattr(entry_point, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "unknown"
            version = dist.version if dist is not None else "unknown"
            if entry_point.name in disabled or _normalize(dist_name) in disabled_distributions:
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken plugin must not break lookups of the others
                self._record_failure(entry_point.name, dist_name, version, exc)
                continue
            self._add_plugin(plugin, entry_point.name, dist_name, version)

    def _record_failure(self, plugin_name: str, dist_name: str, version: str, exc: BaseException,
                        names: Iterable[str] = ()) -> None:
        failure = self.failures.get(plugin_name)
        if failure is None:
            failure = self.failures[plugin_name] = PluginFailure(plugin_name, dist_name, version, exc)
        failure.names.add(_canonical(plugin_name))
        failure.names.update(_canonical(name) for name in names)

    def _add_plugin(self, plugin: Any, plugin_name: str, dist_name: str, version: str) -> None:
        if self._pm.is_registered(plugin) or self._pm.has_plugin(plugin_name):
            return
        try:
            self._pm.register(plugin, name=plugin_name)
        except Exception as exc:  # e.g. a hookimpl taking the wrong arguments: pluggy refuses the plugin
            self._record_failure(plugin_name, dist_name, version, exc)
            return
        for kind, hook_name in _HOOKS.items():
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                attempted: list[str] = []
                inserted: list[Registration] = []

                def register(name, factory, aliases=(), _kind=kind, _attempted=attempted, _inserted=inserted):
                    _attempted.append(name)
                    aliases = tuple(aliases)
                    _attempted.extend(aliases)
                    registration = Registration(_kind, name, factory, aliases, plugin_name, dist_name, version)
                    _inserted.append(registration)
                    self._insert(registration, deferred=True)

                try:
                    impl.function(register=register)
                except Exception as exc:
                    # a hook that raised half way leaves nothing behind: all its names report the error
                    self._withdraw(inserted)
                    self._record_failure(plugin_name, dist_name, version, exc, attempted)

    def _withdraw(self, registrations: Iterable[Registration]) -> None:
        for registration in registrations:
            table = self._tables[registration.kind]
            for name in (registration.name, *registration.aliases):
                if table.get(name) is registration:
                    del table[name]

    def _insert(self, registration: Registration, *, deferred: bool) -> None:
        table = self._tables[registration.kind]
        for name in (registration.name, *registration.aliases):
            held = table.get(name)
            if held is not None and held.plugin != registration.plugin:
                error = DuplicatePlugin(
                    f"{registration.kind} {name!r} is registered twice: by {held.distribution} "
                    f"(plugin {held.plugin!r}) and by {registration.distribution} (plugin {registration.plugin!r}); "
                    f"uninstall one, or disable one with {DISABLE_ENV}")
                if not deferred:
                    raise error
                self._conflicts[(registration.kind, name)] = error
                continue
            table[name] = registration

    def register_plugin(self, plugin: Any, name: str | None = None, *, distribution: str = "local",
                        version: str = "") -> None:
        """Register a plugin object (a module or instance with hookimpls) directly, as tests and apps may."""
        self._ensure_loaded()
        with self._lock:
            self._add_plugin(plugin, name or getattr(plugin, "__name__", repr(plugin)), distribution, version)

    def register(self, kind: str, name: str, factory: Any, aliases: Iterable[str] = (), *,
                 plugin: str = "local", distribution: str = "local", version: str = "") -> None:
        """Register one backend, serializer or lock directly; a name already taken raises DuplicatePlugin."""
        if kind not in KINDS:
            raise ConfigurationError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self._ensure_loaded()
        with self._lock:
            self._insert(Registration(kind, name, factory, tuple(aliases), plugin, distribution, version),
                         deferred=False)

    # -- lookups ---------------------------------------------------------------------------------------------

    def lookup(self, kind: str, name: str) -> Registration:
        """Return the registration for ``name`` (or one of its aliases), or raise a helpful error."""
        if kind not in KINDS:
            raise ConfigurationError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{kind} name must be a non-empty string, not {name!r}")
        self._ensure_loaded()
        table = self._tables[kind]
        for candidate in (name, _canonical(name)):
            conflict = self._conflicts.get((kind, candidate))
            if conflict is not None:
                raise conflict
            registration = table.get(candidate)
            if registration is not None:
                return registration
        canonical = _canonical(name)
        for failure in self.failures.values():
            wanted = KNOWN_DISTRIBUTIONS.get(canonical)
            if canonical in failure.names or (wanted is not None and wanted == failure.distribution):
                raise PluginLoadError(
                    f"{kind} {name!r} is provided by {failure.distribution} {failure.version} "
                    f"(plugin {failure.plugin!r}), which failed to load: {failure.describe()}") from failure.error
        raise PluginNotFound(self._not_found_message(kind, name))

    def _not_found_message(self, kind: str, name: str) -> str:
        installed = ", ".join(sorted(reg.name for reg in self.registrations(kind))) or "none"
        message = f"no {kind} named {name!r} is installed (installed {kind}s: {installed})"
        distribution = KNOWN_DISTRIBUTIONS.get(_canonical(name))
        if kind == "backend" and distribution in PLUGIN_FOLDERS:
            message += (f"; to use it: pip install {distribution} once it is on PyPI; until then, from the root of "
                        f"a beaker-core clone: pip install ./{PLUGIN_FOLDERS[distribution]}")
        elif kind == "backend" and distribution:
            message += f"; it will be provided by {distribution} (planned, not written yet)"
        elif kind == "backend":
            message += ("; a backend plugin registers itself through the 'beaker_core' entry-point group, "
                        "see `beaker-core backends`")
        return message

    def registrations(self, kind: str) -> list[Registration]:
        """Every registration of a kind, once each (aliases are attributes of their registration)."""
        self._ensure_loaded()
        seen: dict[int, Registration] = {}
        for registration in self._tables[kind].values():
            seen.setdefault(id(registration), registration)
        return sorted(seen.values(), key=lambda reg: reg.name)

    def conflicts(self) -> list[DuplicatePlugin]:
        """The names two installed plugins both claim (each raises its error when looked up)."""
        self._ensure_loaded()
        return list(self._conflicts.values())

    def backend_class(self, name: str) -> Callable[..., Any]:
        return self.lookup("backend", name).factory

    def serializer(self, name: str) -> Any:
        return self.lookup("serializer", name).factory

    def lock_class(self, name: str) -> Callable[..., Any]:
        return self.lookup("lock", name).factory

    def open_backend(self, name: str, **options: Any) -> Any:
        """A backend instance for ``name`` and ``options``, shared by every caller asking for the same pair.

        Sharing matters: Beaker's memory namespaces are process-wide, and network backends keep one connection
        pool per URL. Options set to None are left out, and so are Beaker's shared ``data_dir`` and ``lock_dir`` for
        a backend that does not take them (a memory region in a configuration whose other regions use files); any
        other option the backend does not take raises ConfigurationError.
        """
        registration = self.lookup("backend", name)

        def create() -> Any:
            fitted = fit_options(registration.factory, f"the {registration.name} backend", options,
                                 optional=("data_dir", "lock_dir"))
            return registration.factory(**fitted)
        return self._backends.get((registration.name, freeze(options)), create)

    def close(self) -> None:
        """Close every backend this registry opened."""
        self._backends.close()


def _close_backend(backend: Any) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()



def _core_version() -> str:
    try:
        return importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        from . import __version__
        return __version__


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry used when none is passed explicitly (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
    return _default
