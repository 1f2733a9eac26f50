"""Beaker's ``clsmap``: the installed backends by name, as a read-only mapping answered by the plugin registry."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from ..exceptions import ConfigurationError, PluginNotFound
from ..registry import Registry, default_registry


class BackendClasses(Mapping):
    """Beaker's ``clsmap``: backend name (or alias, ``ext:redis``...) -> backend class, read-only, answered by the
    plugin registry, so it lists whatever is installed. A name nothing provides is a KeyError."""

    def __init__(self, registry: Registry | None = None):
        self._registry = registry

    def _resolve(self) -> Registry:
        return self._registry or default_registry()

    def __getitem__(self, name: str) -> Any:
        try:
            return self._resolve().backend_class(name)
        except (PluginNotFound, ConfigurationError):
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter([registration.name for registration in self._resolve().registrations("backend")])

    def __len__(self) -> int:
        return len(self._resolve().registrations("backend"))

    def __repr__(self) -> str:
        return f"<clsmap {sorted(self)}>"


#: Beaker's name for the installed backends: ``clsmap['redis']`` is the class ``cache.type = redis`` opens
clsmap = BackendClasses()
