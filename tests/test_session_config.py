"""Session configuration: prefixes, defaults, and a clear error for every bad value."""
import datetime
import re
import warnings

import pytest

from beaker_core.exceptions import ConfigurationError, PluginNotFound
from beaker_core.middleware import SessionMiddleware, session_filter_app_factory, session_filter_factory
from beaker_core.registry import Registry
from beaker_core.session import SessionManager, session_options
from beaker_core.testing.sessions import WSGIClient, session_app, set_cookies

SECRET = "a-long-enough-secret-value"


def build(**options):
    return SessionManager(options, registry=Registry(load_entrypoints=False))


BAD_VALUES = [
    ("type", 123, "session.type"),
    ("key", "bad key", "session.key"),
    ("key", "a;b", "session.key"),
    ("key", "", "session.key"),
    ("key", 5, "session.key"),
    ("timeout", "abc", "session.timeout"),
    ("timeout", -1, "session.timeout"),
    ("timeout", 0, "session.timeout"),
    ("absolute_timeout", "x", "session.absolute_timeout"),
    ("absolute_timeout", -5, "session.absolute_timeout"),
    ("save_accessed_time", "maybe", "session.save_accessed_time"),
    ("auto", "perhaps", "session.auto"),
    ("cookie_expires", "soon", "session.cookie_expires"),
    ("cookie_expires", -1, "session.cookie_expires"),
    ("cookie_expires", 0, "session.cookie_expires"),
    ("cookie_expires", [1], "session.cookie_expires"),
    ("cookie_expires", datetime.timedelta(seconds=-3), "session.cookie_expires"),
    ("cookie_domain", "a b", "session.cookie_domain"),
    ("cookie_domain", "x;y", "session.cookie_domain"),
    ("cookie_domain", 5, "session.cookie_domain"),
    ("cookie_path", "noslash", "session.cookie_path"),
    ("cookie_path", "/a;b", "session.cookie_path"),
    ("secure", "kinda", "session.secure"),
    ("httponly", "kinda", "session.httponly"),
    ("invalidate_corrupt", "kinda", "session.invalidate_corrupt"),
    ("samesite", "sometimes", "session.samesite"),
    ("samesite", 1, "session.samesite"),
    ("data_serializer", object(), "session.data_serializer"),
    ("lock_timeout", "-1", "session.lock_timeout"),
    ("lock_timeout", "x", "session.lock_timeout"),
    ("secret", 5, "session.secret"),
    ("secret", [SECRET, 3], "session.secret"),
    ("secret", "", "session.secret"),
    ("secret", [], "session.secret"),
    ("encrypt_key", "", "session.encrypt_key"),
    ("validate_key", ["", ""], "session.validate_key"),
    ("strict_keys", "maybe", "session.strict_keys"),
    ("cookie_on_exception", "maybe", "session.cookie_on_exception"),
    ("constant_csrf_token", 5, "session.constant_csrf_token"),
    ("encrypt_nonce_bits", "x", "session.encrypt_nonce_bits"),
    ("encrypt_nonce_bits", 8, "session.encrypt_nonce_bits"),
    ("crypto_type", "rot13", "session.crypto_type"),
    ("webtest_varname", 5, "session.webtest_varname"),
]


@pytest.mark.parametrize("option, value, named", BAD_VALUES)
def test_bad_option_value_is_a_configuration_error_naming_it(option, value, named):
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        build(**{"type": "memory", option: value})


@pytest.mark.parametrize("option, value, named", BAD_VALUES)
def test_bad_option_value_fails_when_the_middleware_is_built(option, value, named):
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        SessionMiddleware(session_app, {"session.type": "memory", f"session.{option}": value},
                          registry=Registry(load_entrypoints=False))


def test_samesite_none_requires_secure():
    with pytest.raises(ConfigurationError, match="requires session.secure"):
        build(samesite="None")
    assert build(samesite="none", secure="true").samesite == "None"


def test_unknown_type_names_what_is_installed():
    with pytest.raises(PluginNotFound, match="nosuch.*installed backends: .*memory"):
        build(type="nosuch")


def test_missing_distribution_is_named():
    with pytest.raises(PluginNotFound, match="pip install beaker-core-redis"):
        build(type="ext:redis")


def test_unknown_serializer_and_lock_type_are_errors():
    with pytest.raises(PluginNotFound, match="yaml"):
        build(data_serializer="yaml")
    with pytest.raises(PluginNotFound, match="nosuchlock"):
        build(lock_type="nosuchlock")


def test_option_the_backend_does_not_take_is_an_error_from_the_backend():
    with pytest.raises(ConfigurationError, match="bogus.*max_entries"):
        build(type="memory", bogus="1")
    with pytest.raises(ConfigurationError, match="table_name"):
        build(type="file", data_dir="/tmp/x", table_name="t")


def test_file_backend_without_data_dir_is_an_error():
    with pytest.raises(ConfigurationError, match="data_dir"):
        build(type="file")


def test_data_dir_alone_means_file(tmp_path):
    config = build(data_dir=str(tmp_path))
    assert config.type == "file" and config.backend.name == "file"
    assert build().type == "memory"


def test_cookie_sessions_need_a_secret_and_take_no_backend_options(tmp_path):
    with pytest.raises(ConfigurationError, match="need session.secret"):
        build(type="cookie")
    with pytest.raises(ConfigurationError, match="url"):
        build(type="cookie", secret=SECRET, url="redis://127.0.0.1")
    with pytest.raises(ConfigurationError, match="table_name"), pytest.warns(UserWarning, match="data_dir"):
        build(type="cookie", secret=SECRET, data_dir=str(tmp_path), table_name="t")
    with pytest.raises(ConfigurationError, match="lock_type"):
        build(type="cookie", secret=SECRET, lock_type="thread")
    for name in ("secret", "encrypt_key", "validate_key"):
        assert build(type="cookie", **{name: SECRET}).cipher is not None


def test_configuration_must_be_a_mapping():
    with pytest.raises(ConfigurationError, match="mapping"):
        SessionMiddleware(session_app, ["session.type", "memory"])


def test_namespace_class_is_refused():
    from beaker_core.session import Session
    with pytest.raises(ConfigurationError, match="namespace_class"):
        Session({}, type="memory", namespace_class=object)


def test_prefixes_and_unprefixed_keywords():
    options = session_options({"beaker.session.key": "a", "session.timeout": "60", "cache.type": "file",
                               "app.setting": 1}, secure=True, **{"session.httponly": False})
    assert options == {"key": "a", "timeout": "60", "secure": True, "httponly": False}


def test_session_underscore_prefix_is_deprecated_but_works():
    with pytest.warns(DeprecationWarning, match="session_key"):
        options = session_options({"session_key": "sid"})
    assert options == {"key": "sid"}


def test_defaults_are_safe():
    config = build()
    assert config.key == "beaker.session.id"
    assert config.httponly is True and config.samesite == "Lax" and config.secure is False
    assert config.cookie_expires is True and config.invalidate_corrupt is True
    assert config.serializer.name == "json"
    assert config.attributes == "; Path=/; HttpOnly; SameSite=Lax"


def test_string_values_from_an_ini_file_are_coerced():
    config = build(timeout="1800", absolute_timeout="86400", secure="true", httponly="false", samesite="strict",
                   auto="yes", save_accessed_time="off", cookie_domain=".example.org", cookie_path="/app",
                   lock_timeout="2.5", invalidate_corrupt="no")
    assert (config.timeout, config.absolute_timeout, config.secure, config.httponly) == (1800, 86400, True, False)
    assert (config.samesite, config.auto, config.save_accessed_time) == ("Strict", True, False)
    assert config.attributes == "; Path=/app; Domain=.example.org; Secure; SameSite=Strict"
    assert config.lock_timeout == 2.5 and config.invalidate_corrupt is False
    assert build(samesite="").attributes == "; Path=/; HttpOnly"


def test_secret_list_and_one_secret_per_line_rotate():
    first, second = "first-secret-0123456789", "second-secret-0123456789"
    assert len(build(secret=[first, second]).signer._keys) == 2
    assert len(build(secret=f"\n  {first}\n  {second}\n").signer._keys) == 2
    # a passphrase with spaces and commas is one secret
    assert len(build(secret="correct horse, battery staple").signer._keys) == 1


def test_beaker_only_options_are_accepted():
    build(encrypt_nonce_bits="128", crypto_type="cryptography", log_file=None, webtest_varname="session")


# every key of Beaker 1.14's coerce_session_params, as an INI file writes them
BEAKER_SESSION_KEYS = {
    "type": "memory", "cookie_expires": "3600", "cookie_domain": ".example.org", "cookie_path": "/app",
    "id": "ignored-session-id", "key": "sid", "secret": SECRET, "validate_key": SECRET, "encrypt_key": SECRET,
    "encrypt_nonce_bits": "128", "secure": "true", "httponly": "true", "timeout": "600",
    "save_accessed_time": "true", "auto": "false", "webtest_varname": "session", "data_serializer": "json",
    "samesite": "Lax", "crypto_type": "cryptography", "invalidate_corrupt": "true",
}


@pytest.mark.parametrize("session_type", ["memory", "file", "cookie"])
def test_every_key_of_beakers_session_configuration_is_accepted(tmp_path, session_type):
    options = {**BEAKER_SESSION_KEYS, "type": session_type, "data_dir": str(tmp_path / "data"),
               "lock_dir": str(tmp_path / "locks")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # data_dir and lock_dir mean nothing to memory and cookie
        config = SessionMiddleware(session_app, {f"session.{key}": value for key, value in options.items()},
                                   registry=Registry(load_entrypoints=False)).session_manager
    assert (config.type, config.key, config.timeout, config.secure) == (session_type, "sid", 600, True)
    assert config.webtest_varname == "session"


def test_pyramid_beaker_keys_are_kept_and_never_reach_the_backend():
    config = build(type="memory", cookie_on_exception="false", constant_csrf_token="true")
    assert config.cookie_on_exception is False and config.constant_csrf_token == "true"
    defaults = build(type="memory")
    assert defaults.cookie_on_exception is True and defaults.constant_csrf_token is False
    # the memory backend takes only max_entries: had they been handed over, it would have refused them
    assert build(type="cookie", secret=SECRET, cookie_on_exception=True, constant_csrf_token="a-token").cipher


def test_cookie_sessions_ignore_data_dir_and_lock_dir_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"session.data_dir and session.lock_dir are ignored: cookie sessions"):
        config = build(type="cookie", secret=SECRET, data_dir=str(tmp_path / "d"), lock_dir=str(tmp_path / "l"))
    assert config.is_cookie and not (tmp_path / "d").exists() and not (tmp_path / "l").exists()
    with pytest.warns(UserWarning, match=r"session.data_dir is ignored: cookie sessions"):
        build(type="cookie", secret=SECRET, data_dir=str(tmp_path))


def test_memory_sessions_ignore_a_data_dir_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"session.data_dir is ignored: the memory backend keeps sessions"):
        build(type="memory", data_dir=str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # a lock_dir the file lock uses is not ignored
        config = build(type="memory", lock_dir=str(tmp_path / "locks"), lock_type="file")
    assert config.lock_options == {"lock_dir": str(tmp_path / "locks")}


def test_the_file_lock_of_sessions_is_handed_the_configured_directories(tmp_path):
    # the lock decides its directory: lock_dir, else the backend's lock_dir, else <data_dir>/locks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory = build(type="memory", data_dir=str(tmp_path / "d"), lock_type="file")
    assert memory.lock_options == {"data_dir": str(tmp_path / "d")}
    assert memory.lock("a" * 32).lock_dir == str(tmp_path / "d" / "locks")
    on_file = build(type="file", data_dir=str(tmp_path / "f"), lock_type="file")
    assert on_file.lock("a" * 32).lock_dir == str(tmp_path / "f" / "locks")
    with_lock_dir = build(type="file", data_dir=str(tmp_path / "f"), lock_dir=str(tmp_path / "l"), lock_type="file")
    assert with_lock_dir.lock_options == {"data_dir": str(tmp_path / "f"), "lock_dir": str(tmp_path / "l")}
    assert with_lock_dir.lock("a" * 32).lock_dir == str(tmp_path / "l")
    # a lock that takes no directory is not given one
    assert build(type="file", data_dir=str(tmp_path / "f"), lock_type="thread").lock_options == {}


def _cookie(app, path="/incr"):
    _, headers, _ = WSGIClient(app).request(path)
    return set_cookies(headers)[0]


@pytest.mark.parametrize("value, expected", [
    (True, None), ("true", None), (False, 400 * 24 * 3600), ("false", 400 * 24 * 3600), (3600, 3600),
    ("3600", 3600), (datetime.timedelta(hours=2), 7200),
])
def test_cookie_expires_values(value, expected):
    app = SessionMiddleware(session_app, {"session.cookie_expires": value}, registry=Registry())
    cookie = _cookie(app)
    if expected is None:
        assert "Max-Age" not in cookie and "Expires" not in cookie
    else:
        assert f"Max-Age={expected};" in cookie and "expires=" in cookie


def test_cookie_expires_datetime_naive_is_utc():
    when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(days=1)
    cookie = _cookie(SessionMiddleware(session_app, {"session.cookie_expires": when}, registry=Registry()))
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))
    assert 86300 <= max_age <= 86400


def test_sliding_cookie_is_sent_again_on_each_use():
    client = WSGIClient(SessionMiddleware(session_app, {"session.cookie_expires": "600"}, registry=Registry()))
    client.request("/incr")
    _, headers, _ = client.request("/get")
    assert len(set_cookies(headers)) == 1 and "Max-Age=600" in set_cookies(headers)[0]


def test_paste_deploy_factories():
    global_conf = {"here": "/srv", "session.type": "memory", "session.key": "from_global"}
    filter_app = session_filter_factory(global_conf, **{"session.key": "sid"})(session_app)
    assert isinstance(filter_app, SessionMiddleware) and filter_app.session_manager.key == "sid"
    app = session_filter_app_factory(session_app, global_conf)
    assert app.session_manager.key == "from_global"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _cookie(app)


def test_paste_entry_points_are_declared():
    import importlib.metadata
    names = {(group, ep.value) for group in ("paste.filter_factory", "paste.filter_app_factory")
             for ep in importlib.metadata.entry_points(group=group) if ep.name == "beaker_session"}
    assert ("paste.filter_factory", "beaker_core.middleware:session_filter_factory") in names
    assert ("paste.filter_app_factory", "beaker_core.middleware:session_filter_app_factory") in names
