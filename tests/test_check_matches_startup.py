"""``beaker-core check`` fails exactly where the application's startup fails, with the same message."""
import subprocess
import sys
import warnings

import pytest

from beaker_core.cache import CacheManager
from beaker_core.crypto import forget_reported_weak_keys
from beaker_core.exceptions import SecurityWarning
from beaker_core.middleware import SessionMiddleware
from beaker_core.testing.sessions import session_app
from beaker_core.util import parse_cache_config_options


def check(*pairs):
    command = [sys.executable, "-m", "beaker_core", "check", *pairs]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def start_application(config):
    """What an application does at startup with this configuration, a SecurityWarning being an error
    (``python -W error::beaker_core.exceptions.SecurityWarning``)."""
    forget_reported_weak_keys()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)
        if any(key.startswith("session.") for key in config):
            SessionMiddleware(session_app, config)
        if any(key.startswith("cache.") for key in config):
            options = parse_cache_config_options(config)
            manager = CacheManager(**options)
            manager.get_cache("startup")
            for region in options.get("cache_regions", {}):
                manager.get_cache_region("startup", region)


BAD_SETTINGS = [
    ["session.timeout=abc"],
    ["session.samesite=None"],
    ["session.type=redis"],
    ["session.secret=short"],
    ["session.secret=" + "ab" * 10],
    ["session.type=cookie"],
    ["session.type=cookie", "session.secret="],
    ["session.type=cookie", "session.secret=a-long-enough-secret-value", "session.url=redis://127.0.0.1"],
    ["session.type=memory", "session.colour=blue"],
    ["session.type=nosuch"],
    ["session.type=file"],
    ["session.cookie_path=noslash"],
    ["session.strict_keys=sometimes"],
    ["cache.expire=abc"],
    ["cache.regions=a", "cache.a.expire=-1"],
    ["cache.type=nosuch"],
    ["cache.regions=a", "cache.a.type=file"],
    ["cache.type=memory", "cache.colour=blue"],
]


@pytest.mark.parametrize("pairs", BAD_SETTINGS, ids=" ".join)
def test_a_setting_that_stops_startup_fails_check_with_the_same_message(pairs):
    config = dict(pair.split("=", 1) for pair in pairs)
    with pytest.raises(Exception) as raised:
        start_application(config)
    result = check(*pairs)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert str(raised.value) in result.stderr, (str(raised.value), result.stderr)


def test_a_weak_key_only_warns_at_startup_and_check_shows_that_warning():
    forget_reported_weak_keys()
    with pytest.warns(SecurityWarning) as caught:
        SessionMiddleware(session_app, {"session.secret": "blah"})
    result = check("session.secret=blah")
    assert result.returncode == 1
    assert str(caught[0].message) in result.stderr


def test_a_configuration_that_starts_passes_check(tmp_path):
    pairs = ["session.type=file", f"session.data_dir={tmp_path}/sessions", "session.timeout=600",
             "session.secret=a-long-enough-secret-value", "session.samesite=None", "session.secure=true",
             "cache.regions=short, long", f"cache.data_dir={tmp_path}/cache", "cache.type=file",
             "cache.short.type=memory", "cache.short.expire=60", "cache.long.type=dbm"]
    start_application(dict(pair.split("=", 1) for pair in pairs))
    result = check(*pairs)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
