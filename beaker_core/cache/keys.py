"""Cache keys: how a function decorated by the cache decorators turns its arguments into a key, and Beaker's
key-length rule.

Shared by ``@cache.cache``, ``@cache_region``, ``invalidate`` and ``region_invalidate``
(:mod:`beaker_core.cache.regions`, :mod:`beaker_core.cache.manager`):
a decorated function carries its :class:`KeySpec` as ``_beaker_spec``, so invalidation builds the very key the
decorated call used.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from ..exceptions import ConfigurationError
from ..util import func_namespace, sha1

#: the longest key (namespace included) kept as it is; longer keys are replaced by their SHA-1
DEFAULT_KEY_LENGTH = 250


def fit_key(key: str, namespace: str, key_length: int) -> str:
    """``key``, or its SHA-1 when the key and its namespace together are longer than ``key_length`` (Beaker's rule;
    the decorators' hot path applies it inline)."""
    return sha1(key) if len(key) + len(namespace) > key_length else key


class KeySpec:
    """How a decorated function turns its arguments into a cache key.

    Beaker's key is the decorator's arguments and the call's arguments joined by spaces, with a first parameter
    named ``self`` or ``cls`` left out, in the namespace ``module|name`` (:func:`~beaker_core.util.func_namespace`).
    As in Beaker, two functions of one module with the same name (methods of two classes, say) share a namespace:
    give their decorators different arguments (``@cache.cache('users')``) to keep their values apart.
    Beyond Beaker: keyword arguments are bound to the signature, defaults included (``f(1, limit=2)`` and
    ``f(1, 2)`` share a key).
    """

    def __init__(self, func: Callable, deco_args: tuple, region: str | None, options: Mapping[str, Any]):
        self.func = func
        self.namespace = func_namespace(func)
        self.deco_args = tuple(str(arg) for arg in deco_args)
        self.region = region
        self.options = dict(options)
        self._key_length = self.options.pop("key_length", None)
        self.signature = inspect.signature(func)
        positional = [p for p in self.signature.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        first = positional[0].name if positional else None
        self.skip_self = first in ("self", "cls")
        self.positional_count = len(positional)
        self.simple = len(self.signature.parameters) == len(positional)
        self.names = tuple(param.name for param in positional)
        self.defaults = tuple(param.default for param in positional)

    def key_length(self, region_options: Mapping[str, Any] | None) -> int:
        if region_options is not None:
            return int(region_options.get("key_length") or DEFAULT_KEY_LENGTH)
        return int(self._key_length or DEFAULT_KEY_LENGTH)

    def parts(self, args: tuple, kwargs: Mapping[str, Any]) -> list:
        values = self._simple_parts(args, kwargs) if self.simple else None
        if values is None:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = []
            for name, param in self.signature.parameters.items():
                value = bound.arguments.get(name)
                if param.kind is param.VAR_POSITIONAL:
                    values.extend(value or ())
                elif param.kind is param.VAR_KEYWORD:
                    values.extend(f"{key}={item}" for key, item in sorted((value or {}).items()))
                elif param.kind is param.KEYWORD_ONLY:
                    values.append(f"{name}={value}")
                else:
                    values.append(value)
        if self.skip_self and values:
            del values[0]
        return values

    def _simple_parts(self, args: tuple, kwargs: Mapping[str, Any]) -> list | None:
        """Bind a call to a signature of plain positional-or-keyword parameters, the common case, without
        ``inspect``; None when the call needs the general path (or is wrong, which the general path reports)."""
        count = len(args)
        if count == self.positional_count and not kwargs:
            return list(args)
        if count > self.positional_count:
            return None
        values = list(args)
        used = 0
        empty = inspect.Parameter.empty
        for index in range(count, self.positional_count):
            name = self.names[index]
            if name in kwargs:
                values.append(kwargs[name])
                used += 1
            elif self.defaults[index] is not empty:
                values.append(self.defaults[index])
            else:
                return None
        if used != len(kwargs):
            return None
        return values

    def key(self, args: tuple, kwargs: Mapping[str, Any], key_length: int) -> str:
        parts = self.parts(args, kwargs)
        key = " ".join([*self.deco_args, *map(str, parts)]) if parts or self.deco_args else ""
        return fit_key(key, self.namespace, key_length)

    def invalidation_key(self, args: tuple, kwargs: Mapping[str, Any], key_length: int,
                         bound_to: Any = None) -> str:
        """The key of a call, from Beaker's invalidation arguments (decorator arguments first, then the call's).

        Arguments that do not bind to the function's signature (fewer than it requires, as Beaker allows) make
        Beaker's key: everything given, joined by spaces.
        """
        call_args = tuple(args[len(self.deco_args):])
        if self.skip_self:
            call_args = (bound_to, *call_args)
        try:
            return self.key(call_args, kwargs, key_length)
        except TypeError:
            key = " ".join(map(str, (*args, *(f"{name}:{value}" for name, value in kwargs.items()))))
            return fit_key(key, self.namespace, key_length)


def spec_of(func: Any) -> KeySpec:
    """The :class:`KeySpec` of a function decorated by the cache decorators (its ``namespace``, how it makes keys);
    a ConfigurationError for any other callable."""
    spec = getattr(getattr(func, "__func__", func), "_beaker_spec", None)
    if spec is None:
        raise ConfigurationError(f"{func!r} is not a function decorated by beaker_core's cache decorators")
    return spec
