"""Beaker's ``beaker.container`` names that applications and test suites still use.

Beaker's namespace managers are backends here (:mod:`beaker_core.backends`); of the module only the memory
manager's class is kept, because test suites reset memory sessions between tests with
``MemoryNamespaceManager.namespaces.clear()``, which empties every memory backend of the process.
"""
from .backends.memory import MemoryBackend as MemoryNamespaceManager

__all__ = ["MemoryNamespaceManager"]
