"""``install_as_beaker()``: code written for Beaker imports beaker-core under Beaker's module names.

After ``beaker_core.install_as_beaker()``, ``import beaker.session`` gives :mod:`beaker_core.session`,
``from beaker.cache import cache_region`` gives :func:`beaker_core.cache.cache_region`, and so on for every module:
``beaker.X`` is ``beaker_core.X``, the same module object, so ``isinstance`` checks and module-level state (the
cache regions) are shared whichever name imported them. Call it once, before anything imports ``beaker``; it is
what PyMySQL's ``install_as_MySQLdb()`` is to MySQLdb.

A Beaker module beaker-core has no counterpart of (``beaker.ext.redisnm``: backends are plugins here) raises
``ModuleNotFoundError`` with a message that says so.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from types import ModuleType
from typing import Sequence

__all__ = ["install_as_beaker", "uninstall_as_beaker"]

_PACKAGE = "beaker"
_TARGET = "beaker_core"
_lock = threading.Lock()


def _target_name(fullname: str) -> str | None:
    """``beaker_core.X`` for ``beaker.X``; None for a name outside the ``beaker`` package."""
    if fullname == _PACKAGE:
        return _TARGET
    if fullname.startswith(_PACKAGE + "."):
        return _TARGET + fullname[len(_PACKAGE):]
    return None


class _AliasLoader(importlib.abc.Loader):
    """Hands the import system an already imported beaker-core module instead of creating one."""

    def __init__(self, module: ModuleType):
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        # the import system stamped the alias's spec on the module; the module keeps its own name and spec
        module.__spec__ = self.spec


class BeakerAliasFinder(importlib.abc.MetaPathFinder):
    """A meta path finder answering ``beaker`` and ``beaker.*`` with the beaker-core modules of the same names."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        target_name = _target_name(fullname)
        if target_name is None:
            return None
        try:
            module = importlib.import_module(target_name)
        except ModuleNotFoundError as exc:
            if exc.name != target_name:
                raise  # a dependency of the module is missing: that error says more
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: install_as_beaker() maps beaker.* to beaker_core.*, and "
                f"beaker-core has no {target_name!r} (backends are plugins, see docs/migration.md)",
                name=fullname) from None
        is_package = hasattr(module, "__path__")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module), is_package=is_package)


_finder = BeakerAliasFinder()


def install_as_beaker() -> None:
    """Make ``import beaker`` and ``import beaker.<module>`` import beaker-core (idempotent).

    Modules of a real Beaker that were imported before this call are dropped from ``sys.modules`` with a
    ``RuntimeWarning``: objects already taken from them stay Beaker's, so call this before anything imports
    ``beaker``.
    """
    with _lock:
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        stale = sorted(name for name, module in list(sys.modules.items())
                       if _target_name(name) is not None and module is not None
                       and not getattr(module, "__name__", "").startswith(_TARGET))
        for name in stale:
            del sys.modules[name]
    if stale:
        warnings.warn(f"install_as_beaker(): {', '.join(stale)} had already been imported from Beaker; objects "
                      f"taken from them before this call are still Beaker's", RuntimeWarning, stacklevel=2)


def uninstall_as_beaker() -> None:
    """Undo :func:`install_as_beaker`: ``import beaker`` finds whatever is installed under that name again."""
    with _lock:
        while _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        for name in [name for name, module in list(sys.modules.items())
                     if _target_name(name) is not None and getattr(module, "__name__", "").startswith(_TARGET)]:
            del sys.modules[name]
