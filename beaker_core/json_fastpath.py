"""The fast paths that rely on the ``json`` module's internals, and the public API they fall back to.

* :data:`encode`: compact UTF-8 JSON (``separators=(",", ":")``, ``ensure_ascii=False``) of a value made of JSON's
  own types, by the C encoder that ``json.encoder.c_make_encoder`` builds, built once here:
  ``JSONEncoder.encode`` would build it again on every call. It runs without the encoder's cycle check, as the
  serializer's producers of its input already end a cycle in RecursionError; a type JSON cannot write raises
  TypeError, as with ``JSONEncoder.encode``.
* :data:`scan`: ``scan(text, index) -> (value, end)``, the plain decoder's scanner (``JSONDecoder.scan_once``)
  called directly: ``decode`` wraps it in two whitespace matches and two Python calls, which cost as much again as
  the scan of a small document. It raises StopIteration where no JSON value starts at ``index``.

Each is checked once, at import, against the public API on a sample (:data:`fast_encoder`, :data:`fast_scanner`,
and a debug log, say which is used). The fallbacks are the public API itself: ``JSONEncoder(...).encode``, and
``JSONDecoder.raw_decode``, which raises ``JSONDecodeError`` (a ValueError) where the scanner raises StopIteration.
"""
from __future__ import annotations

import json
import json.encoder
import logging
from typing import Any, Callable

log = logging.getLogger(__name__)

#: the public API's compact encoder, which the fast encoder must match
standard_encode: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                                         allow_nan=True).encode
#: a decoder without hooks: JSON's own types only
PLAIN_DECODER = json.JSONDecoder()
#: the public API's scan: ``raw_decode(text, index) -> (value, end)``
standard_scan: Callable[[str, int], tuple[Any, int]] = PLAIN_DECODER.raw_decode

_SAMPLE = {"a": [1, 2.5, None, True, False, "\u00e9\n\"", float("nan"), -0.0, 10 ** 20], "b": {}, "c": []}


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__qualname__} reached the JSON encoder untagged")


def make_fast_encoder() -> Callable[[Any], str] | None:
    """The C encoder with the separators and options of :data:`standard_encode`, or None when the interpreter has
    none or it does not give the same text on a sample."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return None
    try:
        chunks = make(None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, True)
        join = "".join
        if join(chunks(_SAMPLE, 0)) != standard_encode(_SAMPLE):
            return None
    except Exception:  # a C encoder with another signature
        return None

    def encode(value: Any) -> str:
        return join(chunks(value, 0))
    return encode


def make_fast_scan() -> Callable[[str, int], tuple[Any, int]] | None:
    """The plain decoder's scanner, or None when it is missing or does not behave as :data:`standard_scan`."""
    scan_once = getattr(PLAIN_DECODER, "scan_once", None)
    if not callable(scan_once):
        return None
    text = standard_encode(_SAMPLE)
    try:
        if repr(scan_once(text, 0)) != repr(standard_scan(text, 0)):
            return None
    except Exception:
        return None
    try:
        scan_once(" 1", 0)  # whitespace is not a value: the scanner must say so with StopIteration
    except StopIteration:
        return scan_once
    except Exception:
        pass
    return None


_fast_encode = make_fast_encoder()
_fast_scan = make_fast_scan()
#: whether :data:`encode` is the C encoder (True) or ``JSONEncoder.encode`` (False)
fast_encoder = _fast_encode is not None
#: whether :data:`scan` is the decoder's scanner (True) or ``JSONDecoder.raw_decode`` (False)
fast_scanner = _fast_scan is not None
encode: Callable[[Any], str] = _fast_encode or standard_encode
scan: Callable[[str, int], tuple[Any, int]] = _fast_scan or standard_scan
log.debug("JSON encoder: %s; JSON scanner: %s", "C encoder built once" if fast_encoder else "JSONEncoder.encode",
          "JSONDecoder.scan_once" if fast_scanner else "JSONDecoder.raw_decode")
