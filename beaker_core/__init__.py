"""beaker-core: sessions and caching for Python web applications, with pluggable storage.

Plugins implement the hooks in :mod:`beaker_core.hookspecs` with :data:`hookimpl`. Code written for Beaker can run
unchanged after :func:`install_as_beaker`.
"""
from .beaker_alias import install_as_beaker, uninstall_as_beaker
from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "install_as_beaker", "uninstall_as_beaker", "__version__"]
