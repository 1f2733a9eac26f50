"""Serializers: Python values to bytes and back.

``json`` is the default everywhere. Plain JSON would silently turn a tuple into a list, a datetime into an error and
an ``{1: 'a'}`` into ``{'1': 'a'}``, so values of those types are written as tagged objects
(``{"__bk__": "tuple", "v": [...]}``) and come back with their type: datetime, date, time, timedelta, bytes, tuple,
set, frozenset, UUID, Decimal, and dicts whose keys are not all strings. A user dict that itself has the key
``"__bk__"`` is escaped the same way, so no stored data can be mistaken for a tag.

Most values hold nothing to tag (the str, int, float, bool, None, lists and str-keyed dicts of a typical session), and
for them the tagging walk would only copy the value. :func:`_plain` proves that first, without building anything,
and such a value goes straight to the encoder (:mod:`beaker_core.json_fastpath`). The proof must be exact, since the
encoder never complains about what JSON would change: it writes a tuple as a list and an int key as a string.

``pickle`` exists for values JSON cannot express, and is used only when configured: unpickling data runs code, so it
must never see bytes a client can forge.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import json
import pickle
import uuid
from typing import Any

from . import json_fastpath
from .exceptions import SerializationError

TAG = "__bk__"


class Serializer:
    """Base class; ``name`` is how configuration refers to it."""

    name = ""

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """Whether ``value`` is made only of JSON's own types (exactly: no subclass) with str keys and no tag key, so that
    JSON alone writes it as it is and gives it back equal, with the same types. Walks the value without copying it;
    a reference cycle ends in RecursionError."""
    kind = type(value)
    if kind is dict:
        if TAG in value:
            return False
        scalars = _SCALARS
        for key, item in value.items():
            if type(key) is not str or (type(item) not in scalars and not _plain(item)):
                return False
        return True
    if kind is list:
        scalars = _SCALARS
        for item in value:
            if type(item) not in scalars and not _plain(item):
                return False
        return True
    return kind in _SCALARS


def _tagged(tag: str, value: Any) -> dict:
    return {TAG: tag, "v": value}


def _to_json(value: Any) -> Any:
    """Return a structure made only of JSON's own types, tagging everything else."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        if all(type(key) is str for key in value) and TAG not in value:
            return {key: _to_json(item) for key, item in value.items()}
        return _tagged("map", [[_to_json(key), _to_json(item)] for key, item in value.items()])
    if kind is list:
        return [_to_json(item) for item in value]
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        # subclasses (OrderedDict, IntEnum, str subclasses...) are stored as their JSON base type
        for base, base_encoder in _BASE_ENCODERS:
            if isinstance(value, base):
                return base_encoder(value)
        raise SerializationError(f"values of type {kind.__module__}.{kind.__qualname__} are not JSON serializable "
                                 f"(configure the 'pickle' serializer to store arbitrary objects)")
    return encoder(value)


def _encode_datetime(value: datetime.datetime) -> dict:
    return _tagged("datetime", value.isoformat())


_ENCODERS = {
    tuple: lambda value: _tagged("tuple", [_to_json(item) for item in value]),
    set: lambda value: _tagged("set", [_to_json(item) for item in value]),
    frozenset: lambda value: _tagged("frozenset", [_to_json(item) for item in value]),
    bytes: lambda value: _tagged("bytes", base64.b64encode(value).decode("ascii")),
    bytearray: lambda value: _tagged("bytes", base64.b64encode(bytes(value)).decode("ascii")),
    datetime.datetime: _encode_datetime,
    datetime.date: lambda value: _tagged("date", value.isoformat()),
    datetime.time: lambda value: _tagged("time", value.isoformat()),
    datetime.timedelta: lambda value: _tagged("timedelta", [value.days, value.seconds, value.microseconds]),
    uuid.UUID: lambda value: _tagged("uuid", str(value)),
    decimal.Decimal: lambda value: _tagged("decimal", str(value)),
}
_BASE_ENCODERS = (
    (bool, bool),
    (int, int),
    (float, float),
    (str, str.__str__),  # str() of a (str, Enum) member would give "Cls.NAME", not its value
    (dict, lambda value: _to_json(dict(value))),
    (list, lambda value: [_to_json(item) for item in value]),
    (tuple, lambda value: _tagged("tuple", [_to_json(item) for item in value])),
    (datetime.datetime, _encode_datetime),
    (datetime.date, lambda value: _tagged("date", value.isoformat())),
)

_DECODERS = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "bytes": lambda value: base64.b64decode(value, validate=True),
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "timedelta": lambda value: datetime.timedelta(value[0], value[1], value[2]),
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "map": lambda pairs: {_hashable(key): item for key, item in pairs},
}


def _hashable(key: Any) -> Any:
    # a list can only arrive here from a JSON array that was not tagged, which _to_json never writes as a key
    return tuple(key) if isinstance(key, list) else key


def _object_hook(obj: dict) -> Any:
    if TAG in obj:
        decoder = _DECODERS.get(obj[TAG])
        if decoder is None or len(obj) != 2 or "v" not in obj:
            raise SerializationError(f"unknown tagged value {obj[TAG]!r} in stored JSON")
        return decoder(obj["v"])
    return obj


class JSONSerializer(Serializer):
    """JSON with tagged types (see the module docstring). Output is compact UTF-8."""

    name = "json"
    _encode = staticmethod(json_fastpath.encode)
    _decode = json.JSONDecoder(object_hook=_object_hook).decode
    # Most stored values hold no tagged object; decoding those without the Python-level object hook is about
    # twice as fast. The tag's name in the text is what sends a document through the hook.
    _decode_plain = json_fastpath.PLAIN_DECODER.decode
    # What this serializer writes has no whitespace around it: one scan reads it whole (see json_fastpath.scan);
    # anything else (and every error) goes through ``decode``.
    _scan_plain = staticmethod(json_fastpath.scan)

    def dumps(self, value: Any) -> bytes:
        try:
            if _plain(value):
                return self._encode(value).encode("utf-8")
            return self._encode(_to_json(value)).encode("utf-8")
        except RecursionError:
            raise SerializationError(f"a value of type {type(value).__qualname__} contains a reference cycle "
                                     f"or is nested too deeply to serialize") from None

    def loads(self, data: bytes) -> Any:
        try:
            if isinstance(data, bytes):
                text = data.decode("utf-8")
            elif isinstance(data, (bytearray, memoryview)):
                text = bytes(data).decode("utf-8")
            else:
                text = data
            if TAG in text:
                return self._decode(text)
            try:
                value, end = self._scan_plain(text, 0)
                if end == len(text):
                    return value
            except (StopIteration, ValueError):  # no JSON value at the start, or a malformed one: decode says why
                pass
            return self._decode_plain(text)
        except SerializationError:
            raise
        # ArithmeticError: a corrupt tagged Decimal or timedelta; RecursionError: absurdly nested input
        except (ValueError, TypeError, KeyError, IndexError, ArithmeticError, RecursionError) as exc:
            raise SerializationError(f"stored data is not valid beaker-core JSON: {exc}") from exc


class PickleSerializer(Serializer):
    """Pickle: any picklable object. Only for trusted storage, never for data a client sends."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(f"values of type {type(value).__qualname__} cannot be pickled: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError(f"stored data could not be unpickled: {exc}") from exc


json_serializer = JSONSerializer()
pickle_serializer = PickleSerializer()
