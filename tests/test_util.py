"""Configuration coercion and Beaker's cache.* parsing: string forms accepted, wrong values named."""
import datetime

import pytest

from beaker_core.exceptions import ConfigurationError
from beaker_core.util import (asbool, coerce_expire, coerce_float, coerce_int, coerce_list, coerce_str,
                              func_namespace, parse_cache_config_options, sha1, unknown_options)


@pytest.mark.parametrize("value", [True, 1, 7, "true", "True", " yes ", "on", "y", "t", "1", "ON"])
def test_asbool_true(value):
    assert asbool(value) is True


@pytest.mark.parametrize("value", [False, 0, None, "false", "No", "off", "n", "f", "0", "", "  "])
def test_asbool_false(value):
    assert asbool(value) is False


@pytest.mark.parametrize("value", ["maybe", "2", 1.5, [], object()])
def test_asbool_rejects_everything_else_naming_the_option(value):
    with pytest.raises(ConfigurationError, match="session.secure"):
        asbool(value, "session.secure")


def test_coerce_int():
    assert coerce_int("n", "42") == 42
    assert coerce_int("n", " 7 ") == 7
    assert coerce_int("n", 3.0) == 3
    assert coerce_int("n", None, allow_none=True) is None
    assert coerce_int("n", "16", minimum=16) == 16


@pytest.mark.parametrize("value", ["4.5", "ten", 4.5, True, None, [], float("inf"), float("nan"), ""])
def test_coerce_int_rejects(value):
    with pytest.raises(ConfigurationError, match="cache.key_length must be an integer"):
        coerce_int("cache.key_length", value)


def test_coerce_int_minimum_names_the_option():
    with pytest.raises(ConfigurationError, match="cache.key_length must be at least 16, not 3"):
        coerce_int("cache.key_length", "3", minimum=16)


def test_coerce_float():
    assert coerce_float("t", "1.5") == 1.5
    assert coerce_float("t", 2) == 2.0
    assert coerce_float("t", None, allow_none=True) is None
    with pytest.raises(ConfigurationError, match="lock_timeout must be at least 0"):
        coerce_float("lock_timeout", "-1", minimum=0.0)


@pytest.mark.parametrize("value", ["fast", True, None, "nan", "inf", "-inf", "1e400", 10 ** 400, {}])
def test_coerce_float_rejects(value):
    with pytest.raises(ConfigurationError, match="cache.lock_timeout"):
        coerce_float("cache.lock_timeout", value)


@pytest.mark.parametrize("value,expected", [
    ("60", 60), (60, 60), ("1.5", 1.5), (" 30 ", 30), (datetime.timedelta(minutes=2), 120),
    (None, None), ("none", None), ("None", None), ("", None),
])
def test_coerce_expire(value, expected):
    result = coerce_expire("cache.expire", value)
    assert result == expected
    if isinstance(expected, int):
        assert type(result) is int


@pytest.mark.parametrize("value", ["0", "-5", 0, "soon", "nan", "inf", True, datetime.timedelta(0)])
def test_coerce_expire_rejects(value):
    with pytest.raises(ConfigurationError, match="cache.expire"):
        coerce_expire("cache.expire", value)


def test_coerce_list():
    assert coerce_list("r", "short_term, long_term") == ["short_term", "long_term"]
    assert coerce_list("r", "a b,,c") == ["a", "b", "c"]
    assert coerce_list("r", ["a", "b"]) == ["a", "b"]
    assert coerce_list("r", ("a",)) == ["a"]
    assert coerce_list("r", None) == []
    assert coerce_list("r", "") == []
    with pytest.raises(ConfigurationError, match="cache.regions"):
        coerce_list("cache.regions", 5)
    with pytest.raises(ConfigurationError, match="cache.regions"):
        coerce_list("cache.regions", ["a", 1])


def test_coerce_str():
    assert coerce_str("s", "x") == "x"
    assert coerce_str("s", None) is None
    with pytest.raises(ConfigurationError, match="cache.type must be a string"):
        coerce_str("cache.type", 3)
    with pytest.raises(ConfigurationError):
        coerce_str("cache.type", None, allow_none=False)


def test_unknown_options_lists_given_and_accepted():
    with pytest.raises(ConfigurationError) as excinfo:
        unknown_options("the file backend", {"dta_dir": 1}, ["data_dir", "lock_dir"])
    message = str(excinfo.value)
    assert "the file backend" in message and "dta_dir" in message and "data_dir, lock_dir" in message


# -- parse_cache_config_options ---------------------------------------------------------------------------------

def test_defaults_without_any_cache_option():
    options = parse_cache_config_options({"session.type": "file", "unrelated": 1})
    assert options == {"type": "memory", "data_dir": None, "expire": None, "log_file": None, "enabled": True,
                       "cache_regions": {}}


def test_top_level_options_are_coerced():
    options = parse_cache_config_options({
        "cache.type": "file", "cache.data_dir": "/tmp/cache", "cache.expire": "300", "cache.enabled": "false",
        "cache.key_length": "64", "cache.fail_open": "yes", "cache.lock_timeout": "2.5", "cache.url": "left as is",
    })
    assert options["type"] == "file"
    assert options["data_dir"] == "/tmp/cache"
    assert options["expire"] == 300
    assert options["enabled"] is False
    assert options["key_length"] == 64
    assert options["fail_open"] is True
    assert options["lock_timeout"] == 2.5
    assert options["url"] == "left as is"  # a backend option: passed on to the backend untouched


def test_include_defaults_false_returns_only_what_was_given():
    assert parse_cache_config_options({"cache.expire": "5"}, include_defaults=False) == {"expire": 5,
                                                                                        "cache_regions": {}}


@pytest.mark.parametrize("prefix", ["cache.", "beaker.cache."])
def test_regions_inherit_and_override(prefix):
    config = {
        prefix + "regions": "short_term, long_term",
        prefix + "type": "file",
        prefix + "data_dir": "/var/cache/app",
        prefix + "lock_dir": "/var/lock/app",
        prefix + "expire": "3600",
        prefix + "short_term.expire": "60",
        prefix + "long_term.type": "dbm",
        prefix + "long_term.key_length": "32",
        prefix + "long_term.url": "kept for the backend",
    }
    options = parse_cache_config_options(config)
    regions = options["cache_regions"]
    assert set(regions) == {"short_term", "long_term"}
    assert regions["short_term"] == {"type": "file", "data_dir": "/var/cache/app", "lock_dir": "/var/lock/app",
                                     "expire": 60, "enabled": True, "key_length": 250, "log_file": None}
    assert regions["long_term"]["type"] == "dbm"
    assert regions["long_term"]["expire"] == 3600
    assert regions["long_term"]["key_length"] == 32
    assert regions["long_term"]["url"] == "kept for the backend"
    assert "regions" not in options
    assert not any(key.startswith(("short_term.", "long_term.")) for key in options)


def test_region_inherits_a_disabled_cache():
    options = parse_cache_config_options({"cache.enabled": "off", "cache.regions": "r"})
    assert options["cache_regions"]["r"]["enabled"] is False


def test_regions_given_as_a_list():
    options = parse_cache_config_options({"cache.regions": ["a", "b"], "cache.b.enabled": "no"})
    assert options["cache_regions"]["a"]["enabled"] is True
    assert options["cache_regions"]["b"]["enabled"] is False


def test_empty_regions_make_an_empty_region_table():
    assert parse_cache_config_options({"cache.regions": ""})["cache_regions"] == {}
    assert parse_cache_config_options({"cache.regions": " , "})["cache_regions"] == {}
    assert parse_cache_config_options({})["cache_regions"] == {}


def test_regions_inherit_every_top_level_option():
    options = parse_cache_config_options({
        "cache.type": "redis", "cache.url": "redis://127.0.0.1:6379/0", "cache.prefix": "app:",
        "cache.sa.pool_size": "5", "cache.regions": "short, long", "cache.short.expire": "60",
        "cache.long.url": "redis://127.0.0.1:6380/0", "cache.long.prefix": "long:",
    })
    short, long = options["cache_regions"]["short"], options["cache_regions"]["long"]
    assert short["type"] == long["type"] == "redis"
    assert short["url"] == "redis://127.0.0.1:6379/0" and long["url"] == "redis://127.0.0.1:6380/0"
    assert short["prefix"] == "app:" and long["prefix"] == "long:"
    assert short["sa.pool_size"] == long["sa.pool_size"] == "5"  # dotted backend options are not region keys
    assert short["expire"] == 60 and long["expire"] is None
    assert options["url"] == "redis://127.0.0.1:6379/0" and "short.expire" not in options


def test_parsed_regions_are_recorded_for_the_decorators():
    from beaker_core import cache as cache_module
    saved = dict(cache_module.cache_regions)
    try:
        parse_cache_config_options({"cache.regions": "parsed_only", "cache.parsed_only.expire": "5"})
        assert cache_module.cache_regions["parsed_only"]["expire"] == 5
    finally:
        cache_module.cache_regions.clear()
        cache_module.cache_regions.update(saved)


@pytest.mark.parametrize("config,named", [
    ({"cache.expire": "soon"}, "cache.expire"),
    ({"cache.enabled": "perhaps"}, "cache.enabled"),
    ({"cache.key_length": "8"}, "cache.key_length"),
    ({"cache.lock_timeout": "-1"}, "cache.lock_timeout"),
    ({"cache.type": 5}, "cache.type"),
    ({"cache.regions": 5}, "cache.regions"),
    ({"beaker.cache.fail_open": "2"}, "cache.fail_open"),
    ({"cache.regions": "short_term", "cache.short_term.expire": "-3"}, "cache.short_term.expire"),
    ({"cache.regions": "short_term", "cache.short_term.key_length": "x"}, "cache.short_term.key_length"),
    ({"cache.regions": "r", "cache.r.enabled": "maybe"}, "cache.r.enabled"),
])
def test_wrong_values_name_their_key(config, named):
    with pytest.raises(ConfigurationError, match=named.replace(".", r"\.")):
        parse_cache_config_options(config)


@pytest.mark.parametrize("config", [None, "cache.type=memory", [("cache.type", "memory")]])
def test_configuration_must_be_a_mapping(config):
    with pytest.raises(ConfigurationError, match="mapping"):
        parse_cache_config_options(config)


def test_non_string_keys_are_ignored():
    assert parse_cache_config_options({1: "x", ("cache.type",): "y"})["type"] == "memory"


def test_sha1_and_func_namespace():
    assert sha1("abc") == sha1(b"abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"

    class Holder:
        def method(self):
            pass

    # Beaker's rule: a function by its module and name, a bound method by its class
    assert func_namespace(Holder.method) == f"{__name__}|method"
    assert func_namespace(Holder().method) == f"{__name__}.Holder"
