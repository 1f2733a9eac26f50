"""Configuration: Beaker's ``cache.*`` and ``session.*`` keys, parsed and checked.

Values usually arrive as strings from an INI file, so every coercion accepts the string form, and every wrong value
raises :class:`~beaker_core.exceptions.ConfigurationError` naming the option.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import inspect
import math
import socket
import struct
import sys
import unittest
from typing import Any, Callable, Iterable, Mapping

from .exceptions import ConfigurationError

#: the words Beaker reads as true and as false
TRUE_WORDS = frozenset({"true", "yes", "on", "y", "t", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "n", "f", "0"})
_FALSE = FALSE_WORDS | {""}  # an empty option reads as false


def asbool(value: Any, name: str = "value") -> bool:
    """Beaker's truth rules: bools, numbers, and the strings true/yes/on/1 and false/no/off/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in _FALSE:
            return False
    if value is None:
        return False
    raise ConfigurationError(f"{name} must be a boolean (true/false), not {value!r}")


def coerce_bool(name: str, value: Any) -> bool:
    return asbool(value, name)


def coerce_int(name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be an integer, not {value!r}")
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
        if not isinstance(value, (int, str)) and number != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ConfigurationError(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, not {number}")
    return number


def coerce_float(name: str, value: Any, *, minimum: float | None = None, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a number, not {value!r}")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigurationError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"{name} must be a finite number, not {value!r}")
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, not {number}")
    return number


def coerce_expire(name: str, value: Any) -> float | None:
    """An expiry in seconds: a positive number, a timedelta, or None / "none" for never."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    seconds = coerce_float(name, value)
    if seconds <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return int(seconds) if seconds == int(seconds) else seconds


def coerce_list(name: str, value: Any) -> list[str]:
    """A list given as a list, or as a string separated by commas (and/or whitespace)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    if isinstance(value, (list, tuple)):
        if not all(isinstance(part, str) for part in value):
            raise ConfigurationError(f"{name} must be a list of strings, not {value!r}")
        return list(value)
    raise ConfigurationError(f"{name} must be a list or a comma-separated string, not {value!r}")


def coerce_str(name: str, value: Any, *, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, not {value!r}")
    return value


def unknown_options(owner: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise for options nobody understands, listing the ones that are understood."""
    raise ConfigurationError(
        f"unknown option(s) for {owner}: {', '.join(sorted(map(str, options)))} "
        f"(accepted: {', '.join(sorted(known)) or 'none'})")


# Options the caching layer reads itself; everything else goes to the backend's constructor.
_CACHE_COERCIONS = {
    "type": lambda name, value: coerce_str(name, value),
    "expire": coerce_expire,
    "enabled": coerce_bool,
    "key_length": lambda name, value: coerce_int(name, value, minimum=16),
    "fail_open": coerce_bool,
    "lock_timeout": lambda name, value: coerce_float(name, value, minimum=0.0),
    "lock_expire": lambda name, value: coerce_float(name, value, minimum=0.001),
    "lock_type": lambda name, value: coerce_str(name, value),
    "serializer": lambda name, value: coerce_str(name, value),
    "stale_ttl": lambda name, value: coerce_float(name, value, minimum=0.0, allow_none=True),
    "data_dir": lambda name, value: coerce_str(name, value),
    "lock_dir": lambda name, value: coerce_str(name, value),
}


def coerce_cache_params(params: dict[str, Any], prefix: str = "cache.") -> dict[str, Any]:
    """Coerce the caching layer's own options in place (and return ``params``)."""
    for key, coerce in _CACHE_COERCIONS.items():
        if key in params:
            params[key] = coerce(prefix + key, params[key])
    if "regions" in params:
        params["regions"] = coerce_list(prefix + "regions", params["regions"])
    return params


#: region name -> region options: every region a configuration named, filled by
#: :func:`parse_cache_config_options` and by each ``CacheManager`` (Beaker's ``beaker.cache.cache_regions``, which
#: :mod:`beaker_core.cache` re-exports; the decorators look their region up here on their first call)
cache_regions: dict[str, dict[str, Any]] = {}

# top-level options a region does not inherit: they describe the set of regions, not one cache
_NOT_INHERITED = {"regions", "cache_regions"}


def parse_cache_config_options(config: Mapping[str, Any], include_defaults: bool = True) -> dict[str, Any]:
    """Turn ``cache.*`` / ``beaker.cache.*`` keys into keyword arguments for :class:`~beaker_core.cache.CacheManager`.

    ``cache.regions = short_term, long_term`` with ``cache.short_term.expire = 60`` becomes
    ``cache_regions={'short_term': {...}}`` (always present, empty when no region is named). Each region inherits
    every top-level option (type, directories, url, expiry, backend options such as ``prefix`` or ``sa.*``) and
    overrides what it names with ``cache.<region>.<option>``. The regions are also recorded in
    :data:`cache_regions`, so ``@cache_region`` functions find them.
    """
    if not isinstance(config, Mapping):
        raise ConfigurationError(f"configuration must be a mapping, not {type(config).__name__}")
    options: dict[str, Any] = {}
    if include_defaults:
        options.update(type="memory", data_dir=None, expire=None, log_file=None)
    for key, value in config.items():
        if not isinstance(key, str):
            continue
        if key.startswith("beaker.cache."):
            options[key[len("beaker.cache."):]] = value
        elif key.startswith("cache."):
            options[key[len("cache."):]] = value
    regions = coerce_list("cache.regions", options.pop("regions", None))
    # a key whose first part names a region belongs to that region; any other key is a top-level option
    region_keys: dict[str, dict[str, Any]] = {region: {} for region in regions}
    for key in list(options):
        head, dot, rest = key.partition(".")
        if dot and head in region_keys:
            region_keys[head][rest] = options.pop(key)
    coerce_cache_params(options)
    if include_defaults:
        options.setdefault("enabled", True)
    inherited = {key: value for key, value in options.items() if key not in _NOT_INHERITED}
    inherited.setdefault("enabled", True)
    inherited.setdefault("key_length", 250)
    region_configs: dict[str, dict[str, Any]] = {}
    for region in regions:
        region_options = {**inherited, **region_keys[region]}
        region_configs[region] = coerce_cache_params(region_options, prefix=f"cache.{region}.")
    options["cache_regions"] = region_configs
    cache_regions.update(region_configs)
    return options


def coerce_cookie_expires(option: str, value: Any) -> Any:
    """Beaker's ``cookie_expires``: True (the cookie ends with the browser session), False (it never expires), a
    number of seconds or a timedelta (from each time the cookie is sent), or a datetime (a fixed date; a naive one
    is UTC). Returns True, False, a positive float of seconds, or an aware datetime.
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return True
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_WORDS:  # "1" is true and "0" false, as Beaker reads them
            return True
        if lowered in FALSE_WORDS or lowered == "never":
            return False
        try:
            seconds = float(lowered)
        except ValueError:
            raise ConfigurationError(f"{option} must be true, false, a number of seconds, a timedelta or a "
                                     f"datetime, not {value!r}") from None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        raise ConfigurationError(f"{option} must be true, false, a number of seconds, a timedelta or a datetime, "
                                 f"not {value!r}")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigurationError(f"{option} must be a positive number of seconds, not {value!r}")
    return seconds


def coerce_session_params(params: dict[str, Any]) -> dict[str, Any]:
    """Beaker's ``util.coerce_session_params``: the session options of ``params`` with their types checked and
    coerced (booleans, integers, ``cookie_expires`` as True, False, a timedelta or a datetime), in place; returns
    ``params``. Options it does not know are left as they are: the session checks them when it is built.
    """
    for key in ("secure", "httponly", "save_accessed_time", "auto", "invalidate_corrupt", "cookie_on_exception"):
        if key in params and params[key] is not None:
            params[key] = coerce_bool(f"session.{key}", params[key])
    for key in ("timeout", "absolute_timeout"):
        if key in params:
            params[key] = coerce_expire(f"session.{key}", params[key])
    if "encrypt_nonce_bits" in params:
        params["encrypt_nonce_bits"] = coerce_int("session.encrypt_nonce_bits", params["encrypt_nonce_bits"],
                                                  allow_none=True)
    if params.get("cookie_expires") is not None and not isinstance(params["cookie_expires"], datetime.datetime):
        expires = coerce_cookie_expires("session.cookie_expires", params["cookie_expires"])
        params["cookie_expires"] = expires if isinstance(expires, bool) else datetime.timedelta(seconds=expires)
    return params


def fit_options(factory: Any, owner: str, options: Mapping[str, Any], optional: Iterable[str] = ()) -> dict:
    """The subset of ``options`` to pass to ``factory``: None values dropped, and the ``optional`` names (Beaker's
    shared ``data_dir``/``lock_dir``, which apply to some backends only) dropped where the factory does not take them.
    Any other option the factory does not accept raises ConfigurationError listing what it accepts.
    """
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: pass everything through
        return {key: value for key, value in options.items() if value is not None}
    open_ended = any(param.kind is param.VAR_KEYWORD for param in parameters.values())
    optional = set(optional)
    accepted: dict[str, Any] = {}
    rejected: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in parameters or open_ended:
            accepted[key] = value
        elif key not in optional:
            rejected[key] = value
    if rejected:
        known = [name for name, param in parameters.items()
                 if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and name != "self"]
        unknown_options(owner, rejected, known)
    return accepted


def sha1(text: str | bytes) -> str:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return hashlib.sha1(text).hexdigest()


def func_namespace(func: Any) -> str:
    """Beaker's namespace for a decorated function: ``module|name``; for a method bound to a class or an instance,
    ``module.Class``.

    Beaker writes the source file where this writes the module, so that a cache shared by hosts that install the
    application in different directories still shares its namespaces.
    """
    owner = getattr(func, "__self__", None)
    if owner is not None and hasattr(func, "__func__"):
        cls = owner if isinstance(owner, type) else type(owner)
        return f"{cls.__module__}.{cls.__name__}"
    module = getattr(func, "__module__", None) or "__main__"
    return f"{module}|{getattr(func, '__name__', None) or repr(func)}"


def set_socket_io_timeout(sock: socket.socket, seconds: float) -> bool:
    """Make reads and writes on the blocking socket ``sock`` fail after ``seconds`` (an OSError with EAGAIN, which
    Python raises as BlockingIOError); False where the platform does not support it.

    Network backends use it instead of a Python socket timeout, which polls the socket before every read: one more
    system call per command, for the same protection against a server that stops answering.
    """
    if not sys.platform.startswith("linux"):
        return False
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:
        return False
    return True


# -- Beaker's helpers of the same names --------------------------------------------------------------------------

def serialize(data: Any, method: str) -> bytes:
    """``data`` as bytes with the named serializer (``json``, ``pickle``...), as Beaker's ``util.serialize``."""
    return _beaker_serializer(method).dumps(data)


def deserialize(data_string: bytes, method: str) -> Any:
    """The inverse of :func:`serialize` (Beaker's ``util.deserialize``)."""
    return _beaker_serializer(method).loads(data_string)


def _beaker_serializer(method: str) -> Any:
    """The serializer Beaker's ``serialize``/``deserialize`` name: ``json`` or ``pickle``, as in Beaker."""
    from .serializers import json_serializer, pickle_serializer
    serializers = {"json": json_serializer, "pickle": pickle_serializer}
    if method not in serializers:
        raise ConfigurationError(f"unknown serialization method {method!r}: 'json' or 'pickle'")
    return serializers[method]


def skip_if(predicate: Callable[[], bool], reason: str | None = None) -> Callable:
    """Decorate a test to skip it when ``predicate()`` is true at call time (Beaker's ``util.skip_if``)."""
    def decorate(test: Callable) -> Callable:
        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> Any:
            if predicate():
                raise unittest.SkipTest(reason or getattr(predicate, "__name__", "skipped"))
            return test(*args, **kwargs)
        return run
    return decorate
