"""The json serializer keeps the types sessions hold; pickle is there, but only for whoever asks for it."""
import collections
import datetime
import decimal
import enum
import json
import pickle
import uuid

import pytest

from beaker_core import json_fastpath
from beaker_core.exceptions import SerializationError
from beaker_core.serializers import TAG, JSONSerializer, PickleSerializer, json_serializer, pickle_serializer


@pytest.fixture(autouse=True, params=["fast path", "fallback"])
def json_path(request, monkeypatch):
    """Every test runs twice: with the json module's internals (beaker_core.json_fastpath), and with the public API
    they fall back to, which must give the same bytes, the same values and the same errors."""
    if request.param == "fallback":
        monkeypatch.setattr(JSONSerializer, "_encode", staticmethod(json_fastpath.standard_encode))
        monkeypatch.setattr(JSONSerializer, "_scan_plain", staticmethod(json_fastpath.standard_scan))
    return request.param

UTC = datetime.timezone.utc
TAGGED_VALUES = [
    datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
    datetime.datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC),
    datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))),
    datetime.date(1999, 12, 31),
    datetime.time(8, 30, 15, 5),
    datetime.timedelta(days=-2, seconds=5, microseconds=7),
    b"\x00\xffbinary\n",
    b"",
    (1, "two", 3.0),
    (),
    {1, 2, 3},
    frozenset({"a", "b"}),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("3.14159265358979323846264338327950288"),
    decimal.Decimal("-0.00"),
]


@pytest.mark.parametrize("value", TAGGED_VALUES, ids=lambda value: type(value).__name__)
def test_each_tagged_type_comes_back_with_its_type(value):
    restored = json_serializer.loads(json_serializer.dumps(value))
    assert restored == value
    assert type(restored) is type(value)


def test_plain_json_values_are_plain_json():
    value = {"name": "ünïcode ☃", "count": 3, "ratio": 0.5, "flags": [True, False, None], "empty": {}}
    data = json_serializer.dumps(value)
    assert json.loads(data.decode("utf-8")) == value  # readable by anything that reads JSON
    assert json_serializer.loads(data) == value


def test_nested_values_keep_their_types_at_every_level():
    value = {
        "when": [datetime.date(2020, 1, 1), (datetime.time(1, 2), {b"raw"})],
        "deep": {"deeper": {"tuple": (1, (2, (3,))), "ids": [uuid.UUID(int=7)]}},
        "money": {"total": decimal.Decimal("10.50")},
    }
    restored = json_serializer.loads(json_serializer.dumps(value))
    assert restored == value
    assert type(restored["deep"]["deeper"]["tuple"][1]) is tuple
    assert type(restored["when"][1][1]) is set


def test_bytearray_comes_back_as_bytes():
    assert json_serializer.loads(json_serializer.dumps(bytearray(b"abc"))) == b"abc"


def test_non_str_keys_keep_their_type():
    value = {5: "int", 2.5: "float", True: "bool", None: "none", (1, "a"): "tuple", "s": "str",
             datetime.date(2020, 1, 2): "date", frozenset({1}): "frozenset"}
    restored = json_serializer.loads(json_serializer.dumps(value))
    assert restored == value
    assert {type(key) for key in restored} == {int, float, bool, type(None), tuple, str, datetime.date, frozenset}


def test_a_user_dict_with_the_tag_key_is_not_mistaken_for_a_tag():
    for value in ({TAG: "tuple", "v": [1, 2]}, {TAG: "anything"}, {"outer": {TAG: "bytes", "v": "AAAA"}}):
        restored = json_serializer.loads(json_serializer.dumps(value))
        assert restored == value
        assert type(restored) is dict


def test_subclasses_are_stored_as_their_json_base_type():
    class Color(str, enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    class Point(collections.namedtuple("Point", "x y")):
        pass

    value = {
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "counter": collections.Counter({"x": 2}),
        "color": Color.RED,
        "level": Level.HIGH,
        "point": Point(1, 2),
        "list": type("MyList", (list,), {})([1, 2]),
    }
    restored = json_serializer.loads(json_serializer.dumps(value))
    assert restored == {"ordered": {"b": 1, "a": 2}, "counter": {"x": 2}, "color": "red", "level": 3,
                        "point": (1, 2), "list": [1, 2]}
    assert list(restored["ordered"]) == ["b", "a"]
    assert type(restored["color"]) is str and type(restored["level"]) is int and type(restored["point"]) is tuple


def test_a_datetime_subclass_is_stored_as_a_datetime():
    class Stamp(datetime.datetime):
        pass

    restored = json_serializer.loads(json_serializer.dumps(Stamp(2021, 5, 6, 7, 8)))
    assert restored == datetime.datetime(2021, 5, 6, 7, 8)
    assert type(restored) is datetime.datetime


def test_unsupported_type_error_names_the_type_and_suggests_pickle():
    class Custom:
        pass

    with pytest.raises(SerializationError) as excinfo:
        json_serializer.dumps({"key": [Custom()]})
    message = str(excinfo.value)
    assert "Custom" in message and __name__.rsplit(".", 1)[-1] in message
    assert "pickle" in message


def test_an_unsupported_dict_key_is_an_error_too():
    with pytest.raises(SerializationError, match="object"):
        json_serializer.dumps({object(): 1})


def test_a_reference_cycle_is_a_serialization_error():
    cycle = []
    cycle.append(cycle)
    with pytest.raises(SerializationError, match="cycle"):
        json_serializer.dumps(cycle)


@pytest.mark.parametrize("data", [
    b"",
    b"{not json",
    b"\xff\xfe\x00",                                    # not UTF-8
    b'{"__bk__": "no-such-tag", "v": 1}',
    b'{"__bk__": "tuple"}',                             # no value
    b'{"__bk__": "tuple", "v": [1], "extra": 2}',
    b'{"__bk__": "decimal", "v": "not a number"}',
    b'{"__bk__": "datetime", "v": "yesterday"}',
    b'{"__bk__": "uuid", "v": "123"}',
    b'{"__bk__": "bytes", "v": "***"}',
    b'{"__bk__": "timedelta", "v": [1]}',
    b'{"__bk__": "timedelta", "v": [1e300, 0, 0]}',
    b'{"__bk__": "map", "v": 5}',
    b'{"__bk__": "set", "v": [[1]]}',                   # an unhashable member
    b"[" * 100000,
], ids=lambda data: data[:30].decode("utf-8", "replace"))
def test_corrupt_data_raises_serialization_error(data):
    with pytest.raises(SerializationError):
        json_serializer.loads(data)


@pytest.mark.parametrize("data, expected", [
    (b' {"a": 1} ', {"a": 1}),                          # whitespace around the document
    (b'\n[1, 2]\n', [1, 2]),
    (b'NaN', "nan"),
    (b'"text"', "text"),
    (b'0', 0),
])
def test_json_written_by_others_is_read_like_json_loads_reads_it(data, expected):
    value = json_serializer.loads(data)
    assert (str(value) if expected == "nan" else value) == expected


@pytest.mark.parametrize("data", [b'{"a":1}x', b'{"a":1} {"b":2}', b'', b' ', b'[1,', b'{"a":1', b'x'])
def test_trailing_or_missing_data_is_a_serialization_error_saying_where(data):
    with pytest.raises(SerializationError, match="line 1 column"):
        json_serializer.loads(data)


def test_loads_accepts_bytes_like_objects():
    data = json_serializer.dumps({"a": (1,)})
    assert json_serializer.loads(bytearray(data)) == {"a": (1,)}
    assert json_serializer.loads(memoryview(data)) == {"a": (1,)}


# Values that look plain at the top but hide, deep down, something plain JSON would change without a word: a tuple
# (written as a list), a non-str key (written as a string), the tag key, a subclass, a type JSON lacks.
HIDDEN_IN_PLAIN = [
    {"a": [1, "x", (2, 3)]},
    {"a": {"b": [{"c": ()}]}},
    [[[[(1,)]]]],
    {"a": {1: "int key"}},
    {"a": [{None: 1, "b": 2}]},
    {"a": [{True: 1}]},
    {"a": [{2.5: 1}]},
    {"a": {"b": {TAG: "tuple", "v": [1]}}},
    {"a": [b"bytes"]},
    {"a": [{1, 2}]},
    {"a": [datetime.date(2020, 1, 2)]},
    {"a": [decimal.Decimal("1.10")]},
]


@pytest.mark.parametrize("value", HIDDEN_IN_PLAIN, ids=repr)
def test_a_value_hidden_deep_in_a_plain_structure_keeps_its_type(value):
    restored = json_serializer.loads(json_serializer.dumps(value))
    assert restored == value
    assert _types(restored) == _types(value)


def _types(value):
    """The value's shape with every type spelled out (== alone says (1,) == [1] is False but 1 == True)."""
    if isinstance(value, dict):
        return type(value), [(_types(key), _types(item)) for key, item in value.items()]
    if isinstance(value, (list, tuple)):
        return type(value), [_types(item) for item in value]
    return type(value), value


def test_subclasses_deep_in_a_plain_structure_are_stored_as_their_base_type():
    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    pair = collections.namedtuple("Pair", "a b")
    value = {"x": [{"level": Level.HIGH, "name": Name("n"), "pair": pair(1, [2])}],
             "ordered": [collections.OrderedDict([(1, "a")])]}
    restored = json_serializer.loads(json_serializer.dumps(value))
    assert restored == {"x": [{"level": 3, "name": "n", "pair": (1, [2])}], "ordered": [{1: "a"}]}
    inner = restored["x"][0]
    assert (type(inner["level"]), type(inner["name"]), type(inner["pair"])) == (int, str, tuple)
    assert type(next(iter(restored["ordered"][0]))) is int


@pytest.mark.parametrize("value", [
    {"name": "ünïcode ☃", "n": -3, "big": 10 ** 30, "r": 0.1, "flags": [True, False, None], "empty": {}, "l": []},
    {"nan": float("nan"), "inf": [float("inf"), float("-inf")]},
    [],
    "just a string \u2028 with \"quotes\"",
    3.5,
    None,
], ids=repr)
def test_plain_values_are_written_exactly_as_plain_json_writes_them(value):
    data = json_serializer.dumps(value)
    assert data == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert json.dumps(json_serializer.loads(data)) == json.dumps(value)


def test_a_cycle_through_plain_dicts_is_a_serialization_error():
    cycle = {"a": [1, "two"]}
    cycle["a"].append({"back": cycle})
    with pytest.raises(SerializationError, match="cycle"):
        json_serializer.dumps(cycle)


def test_a_plain_value_nested_too_deeply_is_a_serialization_error():
    deep = []
    for _ in range(100000):
        deep = [deep]
    with pytest.raises(SerializationError, match="nested too deeply"):
        json_serializer.dumps(deep)


def test_json_output_is_compact_utf8():
    assert json_serializer.dumps({"a": [1, 2], "é": "ü"}) == '{"a":[1,2],"é":"ü"}'.encode("utf-8")


class Picklable:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Picklable) and other.value == self.value


def test_pickle_stores_what_json_refuses():
    value = {"object": Picklable([1, 2]), "when": datetime.datetime(2020, 1, 1)}
    with pytest.raises(SerializationError):
        json_serializer.dumps(value)
    assert pickle_serializer.loads(pickle_serializer.dumps(value)) == value


def test_pickle_errors_are_serialization_errors():
    with pytest.raises(SerializationError, match="pickled"):
        pickle_serializer.dumps(lambda: None)
    with pytest.raises(SerializationError, match="unpickled"):
        pickle_serializer.loads(b"definitely not a pickle")


def test_json_never_unpickles():
    # bytes a client could forge as a pickle are only an error for the json serializer, never executed
    forged = pickle.dumps(Picklable(1))
    with pytest.raises(SerializationError):
        json_serializer.loads(forged)


def test_serializers_are_named_as_configuration_refers_to_them():
    assert JSONSerializer.name == "json" and isinstance(json_serializer, JSONSerializer)
    assert PickleSerializer.name == "pickle" and isinstance(pickle_serializer, PickleSerializer)
