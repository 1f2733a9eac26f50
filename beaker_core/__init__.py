"""beaker-core: sessions and caching for Python web applications, with pluggable storage.

Plugins implement the hooks in :mod:`beaker_core.hookspecs` with :data:`hookimpl`.
"""
from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
