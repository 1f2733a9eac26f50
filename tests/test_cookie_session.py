"""Cookie sessions: AES-GCM, key rotation, tampering, expiry, size limit; and SignedCookie."""
import json
import os

import pytest

from beaker_core.cookies import InvalidSignature, SignedCookie, cookie_values
from beaker_core.crypto import b64decode, forget_reported_weak_keys
from beaker_core.exceptions import ConfigurationError, SecurityWarning, ValueTooLarge
from beaker_core.middleware import SessionMiddleware
from beaker_core.registry import Registry
from beaker_core.session import CookieSession
from beaker_core.testing.sessions import WSGIClient, session_app, set_cookies

OLD = "old-secret-0123456789abcdef"
NEW = "new-secret-0123456789abcdef"
KEY = "beaker.session.id"


def app_with(**options):
    config = {"session.type": "cookie", "session.secret": OLD}
    config.update({f"session.{name}": value for name, value in options.items()})
    return SessionMiddleware(session_app, config, registry=Registry(load_entrypoints=False))


def test_counter_and_data_live_in_the_cookie():
    client = WSGIClient(app_with())
    assert [client.json("/incr") for _ in range(3)] == [1, 2, 3]
    assert client.json("/set?name=ada") == {"counter": 3, "name": "ada"}


def test_cookie_is_encrypted_not_just_encoded():
    client = WSGIClient(app_with())
    client.json("/set?name=plaintext-marker")
    token = client.cookies[KEY]
    assert "plaintext-marker" not in token
    assert b"plaintext-marker" not in b64decode(token)


def test_payload_is_json_not_pickle():
    app = app_with()
    client = WSGIClient(app)
    client.json("/set?name=ada")
    config = app.session_manager
    plaintext = config.cipher.decrypt_text(client.cookies[KEY], KEY.encode())
    record = json.loads(plaintext)
    assert record["d"] == {"name": "ada"} and set(record) == {"i", "c", "a", "d"}


@pytest.mark.parametrize("position", [0, 1, 5, 20, -20, -2, -1])
def test_tampered_cookie_gives_a_fresh_session(position):
    app = app_with()
    client = WSGIClient(app)
    client.json("/set?user=ada")
    token = client.cookies[KEY]
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    tampered = "".join(chars)
    assert WSGIClient(app).json("/get", cookie=f"{KEY}={tampered}") == {}


@pytest.mark.parametrize("mangle", [
    lambda token: token[:-1], lambda token: token[:10], lambda token: "", lambda token: token + "AAAA",
    lambda token: "!!!" + token, lambda token: os.urandom(40).hex(),
    # characters of standard base64 where the URL-safe alphabet is expected (always a change: a token has neither)
    lambda token: token[:5] + "+" + token[6:], lambda token: token[:5] + "/" + token[6:],
])
def test_truncated_or_garbage_cookie_gives_a_fresh_session(mangle):
    app = app_with()
    client = WSGIClient(app)
    client.json("/set?user=ada")
    assert mangle(client.cookies[KEY]) != client.cookies[KEY]
    status, _, body = WSGIClient(app).request("/get", cookie=f"{KEY}={mangle(client.cookies[KEY])}")
    assert status.startswith("200") and json.loads(body) == {}


def test_foreign_key_or_cookie_name_is_refused():
    client = WSGIClient(app_with())
    client.json("/set?user=ada")
    token = client.cookies[KEY]
    foreign = WSGIClient(app_with(secret="someone-elses-secret-value"))
    assert foreign.json("/get", cookie=f"{KEY}={token}") == {}
    # the same key under another cookie name: the name is authenticated too
    other_name = WSGIClient(app_with(key="other"))
    assert other_name.json("/get", cookie=f"other={token}") == {}


def test_key_rotation_first_encrypts_every_one_decrypts():
    old_client = WSGIClient(app_with())
    old_client.json("/set?user=ada")
    old_token = old_client.cookies[KEY]
    rotated = app_with(secret=[NEW, OLD])
    client = WSGIClient(rotated)
    client.cookies[KEY] = old_token
    assert client.json("/get") == {"user": "ada"}
    client.json("/set?step=2")
    new_token = client.cookies[KEY]
    # the new cookie is encrypted with NEW only: an app that knows only OLD cannot read it
    assert WSGIClient(app_with()).json("/get", cookie=f"{KEY}={new_token}") == {}
    assert WSGIClient(app_with(secret=NEW)).json("/get", cookie=f"{KEY}={new_token}") == {"user": "ada",
                                                                                             "step": "2"}


def test_encrypt_key_takes_precedence_and_validate_key_is_accepted():
    beaker_style = app_with(secret=None, encrypt_key=NEW, validate_key=OLD)
    client = WSGIClient(beaker_style)
    client.json("/set?user=ada")
    assert WSGIClient(app_with(secret=NEW)).json("/get", cookie=f"{KEY}={client.cookies[KEY]}") == {"user": "ada"}
    assert WSGIClient(app_with(secret=None, validate_key=OLD)).json("/incr") == 1


def test_idle_timeout_expires_the_cookie_session(fake_clock):
    client = WSGIClient(app_with(timeout=1))
    assert client.json("/incr") == 1
    fake_clock.advance(1.1)
    assert client.json("/incr") == 1


def test_absolute_timeout_is_not_extended_by_activity(fake_clock):
    client = WSGIClient(app_with(absolute_timeout=1.2))
    assert client.json("/incr") == 1
    fake_clock.advance(0.7)
    assert client.json("/incr") == 2
    fake_clock.advance(0.7)
    assert client.json("/incr") == 1


def test_read_only_request_within_the_refresh_interval_sends_no_cookie():
    client = WSGIClient(app_with(timeout=300))
    client.json("/incr")
    _, headers, _ = client.request("/get")
    assert set_cookies(headers) == []


def test_read_only_request_after_the_refresh_interval_renews_the_cookie(fake_clock):
    client = WSGIClient(app_with(timeout=2))
    client.json("/incr")
    fake_clock.advance(0.3)  # refresh interval is a tenth of the timeout
    _, headers, _ = client.request("/get")
    assert len(set_cookies(headers)) == 1


def test_oversized_session_is_an_error_at_save_time_with_size_and_limit():
    session = CookieSession({}, secret=OLD)
    session["big"] = "x" * 5000
    with pytest.raises(ValueTooLarge, match=r"would be \d+ bytes, over the 4096-byte limit"):
        session.save()


def test_oversized_session_fails_the_request_instead_of_losing_data():
    def app(environ, start_response):
        environ["beaker.session"]["big"] = os.urandom(3000).hex()
        start_response("200 OK", [])
        return [b""]
    middleware = SessionMiddleware(app, {"session.type": "cookie", "session.secret": OLD})
    with pytest.raises(ValueTooLarge):
        WSGIClient(middleware).request("/")


def test_a_session_just_under_the_limit_fits():
    session = CookieSession({}, secret=OLD)
    session["data"] = "x" * 2500
    session.save()
    assert len(session.request["cookie_out"]) <= 4096


def test_types_round_trip_through_the_cookie():
    client = WSGIClient(app_with())
    client.json("/types")
    assert client.json("/check-types") == [True, True, True, True]


def test_explicit_pickle_serializer_is_honoured():
    client = WSGIClient(app_with(data_serializer="pickle"))
    client.json("/types")
    assert client.json("/check-types") == [True, True, True, True]


def test_second_cookie_of_the_same_name_is_tried():
    app = app_with()
    client = WSGIClient(app)
    client.json("/set?user=ada")
    token = client.cookies[KEY]
    assert WSGIClient(app).json("/get", cookie=f"{KEY}=garbage; {KEY}={token}") == {"user": "ada"}


def test_delete_expires_the_cookie():
    client = WSGIClient(app_with())
    client.json("/set?user=ada")
    _, headers, _ = client.request("/delete")
    assert any("Max-Age=0" in cookie for cookie in set_cookies(headers))
    assert client.json("/get") == {}


def test_invalidate_and_regenerate_change_the_id():
    client = WSGIClient(app_with())
    client.json("/set?user=ada")
    first = client.json("/id")
    second = client.json("/regenerate")
    assert second != first and client.json("/get") == {"user": "ada"} and client.json("/id") == second
    third = client.json("/invalidate")
    assert third != second and client.json("/get") == {}


@pytest.mark.parametrize("keys", [{"validate_key": "blah"}, {"validate_key": "hoobermas", "encrypt_key": "666a9"},
                                  {"secret": "blah"}])
def test_beaker_style_short_keys_work_end_to_end(keys):
    # Beaker's own tests build cookie sessions with keys like these: they start, with a SecurityWarning
    forget_reported_weak_keys()
    with pytest.warns(SecurityWarning):
        session = CookieSession({}, **keys)
    session["fun"] = "tasty"
    session.save()
    request = session.request
    assert request["set_cookie"] is True
    header = request["cookie_out"].split(";", 1)[0]
    again = CookieSession({"cookie": header}, **keys)
    assert again["fun"] == "tasty" and again.id == session.id and not again.is_new
    assert CookieSession({"cookie": header}, validate_key="another-key-entirely").is_new


def test_middleware_cookie_session_with_a_short_validate_key():
    forget_reported_weak_keys()
    with pytest.warns(SecurityWarning, match="session.validate_key is a weak key"):
        app = SessionMiddleware(session_app, {"session.type": "cookie", "session.validate_key": "blah"},
                                registry=Registry(load_entrypoints=False))
    client = WSGIClient(app)
    assert [client.json("/incr") for _ in range(3)] == [1, 2, 3]


def test_cookie_session_refuses_a_server_side_type():
    with pytest.raises(ConfigurationError, match="cookie"):
        CookieSession({}, type="memory", secret=OLD)


def test_cookie_values_parser_ignores_other_cookies_and_quotes():
    header = 'a=1; beaker.session.id="abc"; b=2;broken; beaker.session.id=def'
    assert cookie_values(header, KEY) == ["abc", "def"]
    assert cookie_values(None, KEY) == [] and cookie_values("x=1", KEY) == []


def test_signed_cookie_signs_verifies_and_rotates():
    jar = SignedCookie(OLD)
    jar["sid"] = "value-1"
    header = jar["sid"].OutputString()
    assert header.startswith("sid=value-1.")
    signed = header.split("=", 1)[1]
    assert SignedCookie([NEW, OLD], input=f"sid={signed}")["sid"].value == "value-1"
    assert SignedCookie(NEW, input=f"sid={signed}")["sid"].value is InvalidSignature
    assert not InvalidSignature
    assert SignedCookie(OLD, input="sid=value-1")["sid"].value is InvalidSignature


def test_only_the_canonical_base64_of_a_cookie_is_accepted():
    """The last character of unpadded base64 has bits decoding ignores: a cookie differing only there is refused."""
    from beaker_core.crypto import b64decode, b64encode
    for data in (b"\x00", b"ab", b"\xff\xfe\xfd\xfc\xfb"):
        text = b64encode(data)
        assert b64decode(text) == data
        for replacement in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            altered = text[:-1] + replacement
            if altered != text:
                assert b64decode(altered) != data, (text, altered)
