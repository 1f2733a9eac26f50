"""Weak session keys start, as in Beaker, with one SecurityWarning per process; strict_keys makes them errors."""
import logging
import secrets
import warnings

import pytest

from beaker_core.cookies import SignedCookie
from beaker_core.crypto import STRICT_KEYS_ENV, forget_reported_weak_keys, key_weakness, secret_list
from beaker_core.exceptions import ConfigurationError, SecurityWarning
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.session import CookieSession, Session
from beaker_core.session import SessionManager
from beaker_core.testing.sessions import WSGIClient, session_app

HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test sees the warnings of a process that has reported nothing yet."""
    monkeypatch.delenv(STRICT_KEYS_ENV, raising=False)
    forget_reported_weak_keys()
    yield
    forget_reported_weak_keys()


def security_warnings(caught):
    return [str(warning.message) for warning in caught if issubclass(warning.category, SecurityWarning)]


def build(**options):
    return SessionManager(options, registry=Registry(load_entrypoints=False))


@pytest.mark.parametrize("key, reason", [
    ("blah", "it is 4 characters long, and a key needs at least 16"),
    ("hoobermas", "it is 9 characters long"),
    (b"short", "it is 5 characters long"),
    (" " * 16, "only 1 distinct character,"),
    ("aaaabbbbccccdddd", "only 4 distinct characters"),
    ("abcdefabcdefabcdef", "one shorter string repeated"),
    ("0123456789abcdef" * 2, "one shorter string repeated"),
])
def test_weak_keys_and_why(key, reason):
    assert reason in key_weakness(key)


@pytest.mark.parametrize("key", [
    secrets.token_urlsafe(32), "correct horse, battery staple", "a-long-enough-secret-value", "abcde" * 3 + "f",
    secrets.token_bytes(32),
], ids=["random_text", "passphrase", "long_phrase", "mixed_repeats", "random_bytes"])  # ids the same in every run
def test_strong_keys(key):
    assert key_weakness(key) is None


def test_short_key_starts_with_one_warning_however_many_sessions_are_built():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(50):
            SessionMiddleware(session_app, {"session.secret": "blah"}, registry=Registry(load_entrypoints=False))
            Session({}, type="memory", secret="blah")
        for _ in range(200):
            CookieSession({}, validate_key="hoobermas")
    messages = security_warnings(caught)
    assert len(messages) == 2, messages
    assert messages[0] == ("session.secret is a weak key: it is 4 characters long, and a key needs at least 16; "
                           f"generate a strong one with: {HINT}")
    assert messages[1].startswith("session.validate_key is a weak key: it is 9 characters long")


def test_the_warning_points_at_the_application_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SessionMiddleware(session_app, {"session.secret": "blah"}, registry=Registry(load_entrypoints=False))
    assert [warning.filename for warning in caught] == [__file__]


def test_the_message_never_holds_the_key():
    key = "zq!x#zq!x#"
    with pytest.warns(SecurityWarning) as caught:
        build(secret=key)
    assert key not in str(caught[0].message) and "session.secret" in str(caught[0].message)


def test_each_key_of_a_rotation_list_is_checked():
    with pytest.warns(SecurityWarning, match=r"session.secret \(key 2 of 2\) is a weak key: .* only 2 distinct"):
        config = build(secret=["a-long-enough-secret-value", "abababababababababab"])
    assert len(config.signer._keys) == 2


def test_low_variety_keys_warn_for_each_option():
    for option in ("secret", "encrypt_key", "validate_key"):
        with pytest.warns(SecurityWarning, match=rf"session.{option} is a weak key: .*only 1 distinct character"):
            build(type="cookie", **{option: " " * 16})


def test_one_log_record_per_problem(caplog):
    with caplog.at_level(logging.WARNING, logger="beaker_core.crypto"), warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        for _ in range(20):
            build(secret="blah", encrypt_key="hoobermas")
    records = [record.getMessage() for record in caplog.records if record.name == "beaker_core.crypto"]
    assert len(records) == 2
    assert records[0].startswith("session.secret is a weak key") and HINT in records[0]
    assert records[1].startswith("session.encrypt_key is a weak key")


@pytest.mark.parametrize("switch", [{"session.strict_keys": "true"}, {"session.strict_keys": True}, "environment"])
def test_strict_keys_turns_the_warning_into_an_error_with_the_same_message(switch, monkeypatch):
    with pytest.warns(SecurityWarning) as caught:
        build(secret="blah")
    warned = str(caught[0].message)
    config = {"session.secret": "blah"}
    if switch == "environment":
        monkeypatch.setenv(STRICT_KEYS_ENV, "1")
    else:
        config.update(switch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning on the way
        with pytest.raises(ConfigurationError) as raised:
            SessionMiddleware(session_app, config, registry=Registry(load_entrypoints=False))
    assert str(raised.value) == warned


def test_strict_keys_accepts_strong_keys(monkeypatch):
    monkeypatch.setenv(STRICT_KEYS_ENV, "yes")
    assert build(secret=secrets.token_urlsafe(32), strict_keys="true").signer is not None


def test_a_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv(STRICT_KEYS_ENV, "perhaps")
    with pytest.raises(ConfigurationError, match=STRICT_KEYS_ENV):
        build()


def test_warnings_as_errors_refuse_every_time():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)
        for _ in range(3):  # not only the first build: a refused key has not been reported
            with pytest.raises(SecurityWarning, match="session.secret is a weak key"):
                build(secret="blah")


def test_empty_keys_and_a_cookie_session_without_a_key_still_refuse_to_start():
    for value in ("", [], ["", ""], "\n\n"):
        with pytest.raises(ConfigurationError, match="session.secret is set but empty"):
            build(secret=value)
    with pytest.raises(ConfigurationError, match="cookie sessions need session.secret"):
        build(type="cookie")
    with pytest.raises(ConfigurationError, match="is set but empty"):
        secret_list("secret", "", strict=False)


def test_short_secret_signs_server_side_sessions_end_to_end():
    with pytest.warns(SecurityWarning):
        app = SessionMiddleware(session_app, {"session.secret": "blah"}, registry=Registry(load_entrypoints=False))
    client = WSGIClient(app)
    assert [client.json("/incr") for _ in range(3)] == [1, 2, 3]
    assert "." in client.cookies["beaker.session.id"]  # id.signature


def test_signed_cookie_with_a_short_secret():
    with pytest.warns(SecurityWarning, match="secret is a weak key"):
        cookie = SignedCookie("blah")
    cookie["name"] = "value"
    assert SignedCookie("blah", cookie.output(header="").strip())["name"].value == "value"
