"""Beaker's public surface as code written for Beaker uses it: install_as_beaker(), the module-level names, and the
session and cache behaviours Beaker's own tests rely on."""
from __future__ import annotations

import datetime
import subprocess
import sys
import textwrap
import types
import warnings
from http.cookies import SimpleCookie

import pytest

import beaker_core
from beaker_core import cache as cache_module
from beaker_core.backends.memory import MemoryBackend
from beaker_core.cache import Cache, CacheManager, cache_region, clsmap, region_invalidate
from beaker_core.exceptions import BeakerError, ConfigurationError
from beaker_core.middleware import SessionMiddleware
from beaker_core.session import CookieSession, Session, SessionObject
from beaker_core.util import parse_cache_config_options

SECRET = "a-long-enough-secret-for-tests-0123456789"


@pytest.fixture
def beaker_alias():
    """install_as_beaker() for one test, with sys.modules and sys.meta_path as they were afterwards."""
    saved = {name: module for name, module in sys.modules.items() if name == "beaker" or name.startswith("beaker.")}
    beaker_core.install_as_beaker()
    yield
    beaker_core.uninstall_as_beaker()
    for name in [name for name in sys.modules if name == "beaker" or name.startswith("beaker.")]:
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.fixture
def regions():
    saved = dict(cache_module.cache_regions)
    yield cache_module.cache_regions
    cache_module.cache_regions.clear()
    cache_module.cache_regions.update(saved)


# -- install_as_beaker ---------------------------------------------------------------------------------------------

def test_beaker_imports_give_the_beaker_core_modules(beaker_alias):
    import beaker
    import beaker.cache
    import beaker.middleware
    import beaker.session
    from beaker.cache import cache_region as aliased_cache_region
    from beaker.exceptions import BeakerException
    from beaker.util import parse_cache_config_options as aliased_parse

    assert beaker is beaker_core
    assert beaker.session is sys.modules["beaker_core.session"]
    assert beaker.middleware.SessionMiddleware is SessionMiddleware
    assert aliased_cache_region is cache_region
    assert aliased_parse is parse_cache_config_options
    assert BeakerException is BeakerError
    # the modules keep their own names and specs: pickling, reloading and tracebacks still name beaker_core
    assert beaker.cache.__name__ == "beaker_core.cache"
    assert beaker.cache.__spec__.name == "beaker_core.cache"


def test_beakers_helper_modules_are_there(beaker_alias):
    from beaker._compat import b64decode, bytes_, u_
    from beaker.container import MemoryNamespaceManager
    from beaker.crypto import get_crypto_module

    assert u_("x") == "x" and bytes_("x") == b"x" and b64decode("eA==") == b"x"
    assert MemoryNamespaceManager is MemoryBackend
    assert get_crypto_module("default").has_aes
    with pytest.raises(BeakerError, match="pycrypto"):
        get_crypto_module("pycrypto")


def test_a_beaker_module_without_counterpart_says_so(beaker_alias):
    with pytest.raises(ModuleNotFoundError, match=r"No module named .beaker\.ext.*backends are plugins"):
        import beaker.ext.redisnm  # noqa: F401


def test_install_is_idempotent_and_uninstall_restores(beaker_alias):
    beaker_core.install_as_beaker()
    assert sum(finder is sys.meta_path[0] for finder in sys.meta_path) == 1
    beaker_core.uninstall_as_beaker()
    assert "beaker" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        import beaker  # noqa: F401  (no Beaker is installed in the test environment)


def test_modules_of_a_real_beaker_imported_earlier_are_replaced_with_a_warning():
    saved = sys.modules.get("beaker")
    sys.modules["beaker"] = types.ModuleType("beaker")
    try:
        with pytest.warns(RuntimeWarning, match="already been imported from Beaker"):
            beaker_core.install_as_beaker()
        import beaker
        assert beaker is beaker_core
    finally:
        beaker_core.uninstall_as_beaker()
        sys.modules.pop("beaker", None)
        if saved is not None:
            sys.modules["beaker"] = saved


def test_an_unmodified_beaker_application_runs(tmp_path):
    """A script written for Beaker, run in a fresh interpreter after install_as_beaker()."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(f"""
        import beaker_core
        beaker_core.install_as_beaker()

        from beaker.cache import CacheManager, cache_region
        from beaker.middleware import SessionMiddleware
        from beaker.util import parse_cache_config_options

        calls = []

        @cache_region("short_term", "lookup")
        def lookup(word):
            calls.append(word)
            return word.upper()

        CacheManager(**parse_cache_config_options({{
            "cache.type": "file", "cache.data_dir": {str(tmp_path / "cache")!r},
            "cache.regions": "short_term", "cache.short_term.expire": "60"}}))
        assert lookup("a") == lookup("a") == "A" and calls == ["a"]

        def app(environ, start_response):
            session = environ["beaker.session"]
            session["n"] = session.get("n", 0) + 1
            session.save()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(session["n"]).encode()]

        wrapped = SessionMiddleware(app, {{"session.type": "file", "session.data_dir": {str(tmp_path / "s")!r}}})
        cookie = None
        for expected in (b"1", b"2", b"3"):
            headers = []
            environ = {{"REQUEST_METHOD": "GET", "PATH_INFO": "/"}}
            if cookie:
                environ["HTTP_COOKIE"] = cookie
            body = b"".join(wrapped(environ, lambda status, h, exc=None: headers.extend(h)))
            assert body == expected, body
            cookie = next((v.split(";")[0] for k, v in headers if k == "Set-Cookie"), cookie)
        print("ok")
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- the cache module's Beaker names -------------------------------------------------------------------------------

def test_clsmap_resolves_installed_backends_read_only():
    assert clsmap["memory"] is MemoryBackend
    assert "memory" in clsmap and "file" in list(clsmap)
    with pytest.raises(KeyError):
        clsmap["no-such-backend"]
    with pytest.raises(TypeError):
        clsmap["memory"] = object  # type: ignore[index]


def test_invalidate_with_fewer_arguments_than_the_function_takes(regions):
    manager = CacheManager(type="memory")
    calls = []

    @manager.cache("lookup")
    def lookup(word, limit):
        calls.append(word)
        return word

    lookup("a", 1)
    manager.invalidate(lookup)          # Beaker accepts this: it names no cached call, and removes nothing
    manager.invalidate(lookup, "lookup")
    lookup("a", 1)
    assert calls == ["a"]
    manager.invalidate(lookup, "lookup", "a", 1)
    lookup("a", 1)
    assert calls == ["a", "a"]


def test_invalidate_honours_a_key_length_given_to_it(regions, tmp_path):
    manager = CacheManager(type="memory")
    calls = []

    @manager.cache("loader")
    def load(name):
        calls.append(name)
        return name

    name = "Fred" * 250                  # a key longer than 250 characters is stored under its SHA-1
    load(name)
    manager.invalidate(load, "loader", name, key_length=8000)  # a key that is not hashed: not the stored one
    load(name)
    assert len(calls) == 1
    manager.invalidate(load, "loader", name)
    load(name)
    assert len(calls) == 2


def test_region_invalidate_of_a_method(regions):
    CacheManager(cache_regions={"short": {"type": "memory", "expire": 60}})
    calls = []

    class Repository:
        @cache_region("short", "find")
        def find(self, key):
            calls.append(key)
            return key

        def forget(self, key):
            region_invalidate(self.find, None, "find", key)

    Repository().find(1)
    Repository().find(1)
    Repository().forget(1)
    Repository().find(1)
    assert calls == [1, 1]


def test_a_per_call_type_reaches_that_cache_with_a_deprecation_warning(tmp_path):
    cache = Cache("legacy", type="memory")
    cache.set_value("x", "1")
    with pytest.warns(DeprecationWarning, match="type="):
        cache.set_value("x", "2", type="file", data_dir=str(tmp_path))
    assert cache.get_value("x") == "1"
    with pytest.warns(DeprecationWarning):
        assert cache.get_value("x", type="file", data_dir=str(tmp_path)) == "2"
    with pytest.warns(DeprecationWarning):
        cache.remove_value("x", type="file", data_dir=str(tmp_path))
    assert Cache("legacy", type="file", data_dir=str(tmp_path)).has_key("x") is False
    with pytest.raises(ConfigurationError, match="unsupported option"):
        cache.get_value("x", data_dir=str(tmp_path))  # backend options without a type: a mistake


def test_memory_namespace_manager_namespaces_clear_empties_memory_sessions():
    session = Session({}, type="memory")
    session["user"] = "ada"
    session.save()
    assert not Session({}, type="memory", id=session.id).is_new
    MemoryBackend.namespaces.clear()
    assert Session({}, type="memory", id=session.id).is_new


def test_beaker_util_helpers():
    from beaker_core.util import deserialize, serialize, skip_if
    assert deserialize(serialize({"a": (1, 2)}, "json"), "json") == {"a": (1, 2)}

    @skip_if(lambda: True, "never here")
    def skipped():
        raise AssertionError("ran")

    import unittest
    with pytest.raises(unittest.SkipTest, match="never here"):
        skipped()


# -- sessions ------------------------------------------------------------------------------------------------------

def test_session_cookie_is_a_simple_cookie():
    session = Session({}, type="memory", cookie_expires=False)
    jar = session.cookie
    assert isinstance(jar, SimpleCookie)
    morsel = jar["beaker.session.id"]
    assert morsel.value == session.id and morsel["path"] == "/" and morsel["httponly"]
    assert "expires=" in jar.output()
    assert "expires" not in Session({}, type="memory").cookie.output().lower()


def test_a_new_session_shows_its_cookie_before_sending_it():
    request: dict = {}
    session = Session(request, type="memory", secure=True)
    assert request["set_cookie"] is False
    assert request["cookie_out"].startswith(f"beaker.session.id={session.id};") and "Secure" in request["cookie_out"]
    assert "set_cookie" not in Session({}, type="memory", use_cookies=False).request


def test_domain_and_path_set_on_a_session_are_sent_and_remembered():
    request: dict = {}
    session = Session(request, type="memory")
    session["x"] = 1
    session.domain = "example.com"
    session.path = "/app"
    assert request["set_cookie"] is True
    assert "Domain=example.com" in request["cookie_out"] and "Path=/app" in request["cookie_out"]
    session.save()
    loaded = Session({"cookie": f"beaker.session.id={session.id}"}, type="memory")
    assert loaded.domain == "example.com" and loaded.path == "/app"
    assert loaded.cookie["beaker.session.id"]["domain"] == "example.com"
    loaded.regenerate_id()  # a cookie sent again later carries the session's own domain and path
    assert "Path=/app; Domain=example.com" in loaded.request["cookie_out"]
    with pytest.raises(ConfigurationError):
        session.domain = "bad;domain"


def test_delete_sends_an_expired_cookie_for_the_same_id_then_saves_under_a_new_one():
    session = Session({}, type="memory")
    session["x"] = 1
    session.save()
    old_id = session.id
    session.delete()
    assert session.id == old_id
    assert session.request["set_cookie"] is True
    assert f"beaker.session.id={old_id}; Max-Age=0; expires=" in session.request["cookie_out"]
    assert Session({}, type="memory", id=old_id).is_new
    session["y"] = 2
    session.save()
    assert session.id != old_id
    assert Session({}, type="memory", id=old_id).is_new
    assert Session({}, type="memory", id=session.id)["y"] == 2


def test_regenerate_id_shows_the_new_cookie_at_once():
    session = Session({}, type="memory")
    session["x"] = 1
    session.save()
    session.regenerate_id()
    assert f"beaker.session.id={session.id};" in session.request["cookie_out"]


@pytest.mark.parametrize("cookie", [{"beaker.session.id": "123"}, SimpleCookie("beaker.session.id=123")])
def test_a_request_cookie_given_as_a_mapping(cookie):
    assert Session({"cookie": cookie}, type="memory").is_new
    stored = Session({}, type="memory")
    stored["k"] = "v"
    stored.save()
    jar = SimpleCookie()
    jar["beaker.session.id"] = stored.id
    assert Session({"cookie": jar}, type="memory")["k"] == "v"
    assert Session({"cookie": {"beaker.session.id": stored.id}}, type="memory")["k"] == "v"


def test_cookie_session_loads_from_its_own_simple_cookie():
    options = {"type": "cookie", "secret": SECRET, "cookie_expires": datetime.timedelta(seconds=10)}
    session = CookieSession({}, **options)
    session["k"] = "v"
    session.save()
    assert "expires" in session.cookie.output()
    assert CookieSession({"cookie": session.cookie}, **options)["k"] == "v"


def test_beakers_metadata_keys_are_readable():
    session = Session({}, type="memory")
    assert "_accessed_time" in session and "_creation_time" in session and "_id" in session
    assert session["_creation_time"] == session.created == session["_accessed_time"]
    assert session["_id"] == session.id
    assert "_accessed_time" not in list(session) and session.get("missing") is None
    with pytest.raises(KeyError):
        session["missing"]
    assert "'_id': " in repr(session)


def test_auto_saves_a_session_the_request_used_even_when_empty():
    so = SessionObject({}, type="memory", auto=True)
    so["foo"] = "bar"
    so.revert()
    so.persist()
    assert not Session({}, type="memory", id=so.id).is_new
    plain = SessionObject({}, type="memory")
    plain.get("foo")
    plain.persist()
    assert Session({}, type="memory", id=plain.id).is_new


def test_save_accessed_only_writes_the_access_time(tmp_path):
    options = {"type": "file", "data_dir": str(tmp_path), "use_cookies": False}
    session = Session({}, **options)
    session.save()
    loaded = Session({}, id=session.id, **options)
    before = loaded.last_accessed
    loaded.save(accessed_only=True)
    assert Session({}, id=session.id, **options).last_accessed > before
    quiet = Session({}, id=session.id, save_accessed_time=False, **options)
    stamp = quiet.last_accessed
    quiet.save(accessed_only=True)
    assert Session({}, id=session.id, **options).last_accessed == stamp


@pytest.mark.parametrize(("given", "expected"), [
    ("300", datetime.timedelta(seconds=300)), (300, datetime.timedelta(seconds=300)),
    (True, True), ("True", True), ("t", True), ("1", True),
    (False, False), ("false", False), ("f", False), ("0", False),
    (datetime.timedelta(minutes=5), datetime.timedelta(minutes=5)),
])
def test_middleware_options_hold_the_coerced_cookie_expires(given, expected):
    middleware = SessionMiddleware(lambda environ, start_response: [], {"beaker.session.cookie_expires": given})
    assert middleware.options["cookie_expires"] == expected


def test_a_datetime_cookie_expires_is_kept_as_given():
    moment = datetime.datetime.now() + datetime.timedelta(days=1)
    middleware = SessionMiddleware(lambda environ, start_response: [], {"session.cookie_expires": moment})
    assert middleware.options["cookie_expires"] == moment


def test_beaker_warns_nothing_for_a_plain_configuration():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SessionMiddleware(lambda environ, start_response: [], {"session.type": "memory"})


def test_pyramid_beaker_runs_unmodified_on_beaker_core(tmp_path):
    """pyramid_beaker (installed without Beaker) through install_as_beaker(): counter, flash, CSRF, invalidate, and
    the cache regions it reads from the settings."""
    script = tmp_path / "pyramid_app.py"
    script.write_text(textwrap.dedent(f"""
        import beaker_core
        beaker_core.install_as_beaker()

        import webtest
        from pyramid.config import Configurator
        from pyramid.response import Response

        def counter(request):
            session = request.session
            session["n"] = session.get("n", 0) + 1
            if session["n"] == 2:
                session.flash("hello")
            return Response(f"n={{session['n']}} flash={{session.pop_flash()}} new={{session.new}} "
                            f"csrf={{len(session.get_csrf_token())}}")

        def logout(request):
            request.session.invalidate()
            return Response("bye")

        settings = {{"session.type": "file", "session.data_dir": {str(tmp_path / "sessions")!r},
                    "session.secret": {SECRET!r}, "session.cookie_on_exception": "true",
                    "cache.type": "memory", "cache.regions": "short", "cache.short.expire": "60"}}
        with Configurator(settings=settings) as config:
            config.include("pyramid_beaker")
            config.add_route("counter", "/")
            config.add_view(counter, route_name="counter")
            config.add_route("logout", "/logout")
            config.add_view(logout, route_name="logout")
            app = webtest.TestApp(config.make_wsgi_app())

        for _ in range(3):
            print(app.get("/").text)
        print(app.get("/logout").text)
        print(app.get("/").text)

        import sys
        from beaker.cache import cache_regions
        assert cache_regions["short"]["expire"] == 60
        assert not any(name == "beaker" or name.startswith("beaker.") for name, module in sys.modules.items()
                       if module is not None and not module.__name__.startswith("beaker_core"))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "n=1 flash=[] new=True csrf=40",
        "n=2 flash=['hello'] new=False csrf=40",
        "n=3 flash=[] new=False csrf=40",
        "bye",
        "n=1 flash=[] new=True csrf=40",
    ]


def test_beaker_util_coerce_session_params():
    from beaker_core.util import coerce_session_params
    options = coerce_session_params({"secure": "true", "timeout": "300", "cookie_expires": "60",
                                     "cookie_on_exception": "false", "type": "file"})
    assert options == {"secure": True, "timeout": 300, "cookie_expires": datetime.timedelta(seconds=60),
                       "cookie_on_exception": False, "type": "file"}
    with pytest.raises(ConfigurationError, match="session.timeout"):
        coerce_session_params({"timeout": "soon"})


def test_every_keyword_beaker_takes_with_beakers_defaults(tmp_path):
    """The keyword arguments of Beaker 1.14's Session, CookieSession and SessionMiddleware, at their defaults."""
    session = Session({}, id=None, invalidate_corrupt=False, use_cookies=True, type=None, data_dir=None,
                      key="beaker.session.id", timeout=None, save_accessed_time=True, cookie_expires=True,
                      cookie_domain=None, cookie_path="/", data_serializer="pickle", secret=None, secure=False,
                      namespace_class=None, httponly=False, encrypt_key=None, validate_key=None,
                      encrypt_nonce_bits=128, crypto_type="default", samesite="Lax")
    session["k"] = "v"
    session.save()
    cookie_session = CookieSession({}, key="beaker.session.id", timeout=None, save_accessed_time=True,
                                   cookie_expires=True, cookie_domain=None, cookie_path="/", encrypt_key=None,
                                   validate_key=SECRET, secure=False, httponly=False, data_serializer="json",
                                   encrypt_nonce_bits=128, invalidate_corrupt=False, crypto_type="default",
                                   samesite="Lax")
    cookie_session["k"] = "v"
    cookie_session.save()
    assert cookie_session.request["set_cookie"]
    SessionMiddleware(lambda environ, start_response: [], None, "beaker.session", type="file",
                      data_dir=str(tmp_path), cookie_expires="300", log_file=None)
    with pytest.raises(ConfigurationError, match="namespace_class"):
        Session({}, namespace_class=object)
