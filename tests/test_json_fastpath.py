"""The json module's internals used by the json serializer: chosen once at import, and equal to the public API."""
import json
import logging

import pytest

from beaker_core import json_fastpath

VALUES = [
    {"name": "ünïcode ☃ \u2028", "n": -3, "big": 10 ** 30, "r": 0.1, "flags": [True, False, None], "empty": {}},
    {"nan": float("nan"), "inf": [float("inf"), float("-inf")], "zero": -0.0, "tiny": 5e-324},
    [[], [[]], {"a": {"b": {"c": "\x00\x1f\"\\/"}}}],
    "just a string",
    "",
    3.5,
    0,
    None,
    True,
]


def test_cpython_uses_the_fast_paths():
    assert json_fastpath.fast_encoder and json_fastpath.fast_scanner
    assert json_fastpath.encode is not json_fastpath.standard_encode
    assert json_fastpath.scan is not json_fastpath.standard_scan


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_the_fast_encoder_writes_what_the_public_encoder_writes(value):
    assert json_fastpath.encode(value) == json_fastpath.standard_encode(value)
    assert json_fastpath.encode(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_the_fast_scan_reads_what_raw_decode_reads(value):
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for trailing in ("", "x", " {}"):
        assert repr(json_fastpath.scan(text + trailing, 0)) == repr(json_fastpath.standard_scan(text + trailing, 0))


@pytest.mark.parametrize("text", ["", " 1", "x", "]"])
def test_no_value_at_the_start_is_stop_iteration_or_a_decode_error(text):
    with pytest.raises(StopIteration):
        json_fastpath.scan(text, 0)
    with pytest.raises(json.JSONDecodeError):
        json_fastpath.standard_scan(text, 0)


def test_a_type_json_cannot_write_is_a_type_error_on_both_paths():
    for encode in (json_fastpath.encode, json_fastpath.standard_encode):
        with pytest.raises(TypeError):
            encode({"a": object()})


def test_the_choice_is_logged_at_import(caplog):
    import importlib
    with caplog.at_level(logging.DEBUG, logger="beaker_core.json_fastpath"):
        module = importlib.reload(json_fastpath)
    assert "JSON encoder: C encoder built once; JSON scanner: JSONDecoder.scan_once" in caplog.text
    assert module.fast_encoder and module.fast_scanner
