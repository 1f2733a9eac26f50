"""The ``beaker-core`` console script, run for real in a subprocess, as an operator runs it."""
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

from beaker_core.registry import DISABLE_ENV, Registry

SCRIPT = Path(sysconfig.get_path("scripts")) / "beaker-core"
# plugins that may be installed in a development environment, kept out so that "not installed" is really so
NETWORK_DISTRIBUTIONS = "beaker-core-redis,beaker-core-memcached,beaker-core-mongo,beaker-core-sqla,beaker-core-s3"


def run(*args, env_extra=None, pythonpath=None, module=False, cwd=None):
    if not module and not SCRIPT.exists():
        pytest.fail(f"the console script {SCRIPT} is not installed: pip install -e . (or scripts/dev-setup)")
    env = dict(os.environ)
    env.pop(DISABLE_ENV, None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(env_extra or {})
    command = [sys.executable, "-m", "beaker_core", *args] if module else [str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def without_network_plugins(*args, **kwargs):
    return run(*args, env_extra={DISABLE_ENV: NETWORK_DISTRIBUTIONS}, **kwargs)


def make_distribution(root: Path, name: str, version: str, entry_points: dict, modules: dict) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep_name} = {target}\n" for ep_name, target in entry_points.items())
    (info / "entry_points.txt").write_text("[beaker_core]\n" + lines)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


FAKE_STORE = """
from beaker_core import hookimpl

@hookimpl
def beaker_register_backends(register):
    from beaker_core.backends.memory import MemoryBackend
    register("fakestore", MemoryBackend, aliases=("fake-alias",))
"""


def assert_clean_error(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# -- beaker-core backends ------------------------------------------------------------------------------------------

def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("beaker-core ")


def test_backends_lists_the_builtins_with_their_distribution():
    result = run("backends")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["KIND", "NAME", "ALIASES", "DISTRIBUTION", "VERSION"]
    listed = {(row[0], row[1]) for row in rows[1:] if row}
    for kind, name in [("backend", "memory"), ("backend", "file"), ("backend", "dbm"), ("serializer", "json"),
                       ("serializer", "pickle"), ("lock", "thread"), ("lock", "file"), ("lock", "null")]:
        assert (kind, name) in listed, result.stdout
    memory_row = next(row for row in rows if row[:2] == ["backend", "memory"])
    assert memory_row[2:4] == ["-", "beaker-core"]
    assert "beaker-core" not in result.stdout.partition("Plugins that failed to load:")[2]


def test_backends_shows_an_installed_plugin_and_a_broken_one(tmp_path):
    make_distribution(tmp_path, "beaker-fakestore", "3.1", {"fakestore": "cli_fake_store"},
                      {"cli_fake_store": FAKE_STORE})
    make_distribution(tmp_path, "beaker-brokenstore", "0.2", {"brokenstore": "cli_broken_store"},
                      {"cli_broken_store": "raise ImportError('the brokenstore client is not installed')\n"})
    result = run("backends", pythonpath=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("backend") and "fakestore" in line)
    assert row == ["backend", "fakestore", "fake-alias", "beaker-fakestore", "3.1"]
    failures = result.stdout.split("Plugins that failed to load:", 1)[1]
    assert "beaker-brokenstore 0.2 (plugin 'brokenstore'): ImportError: the brokenstore client is not installed" \
        in failures


def test_backends_json(tmp_path):
    make_distribution(tmp_path, "beaker-fakestore", "3.1", {"fakestore": "cli_fake_store"},
                      {"cli_fake_store": FAKE_STORE})
    make_distribution(tmp_path, "beaker-brokenstore", "0.2", {"brokenstore": "cli_broken_store"},
                      {"cli_broken_store": "import no_such_client_library\n"})
    result = run("backends", "--json", pythonpath=tmp_path)
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout)
    assert set(inventory) == {"backends", "serializers", "locks", "failures", "conflicts"}
    fake = next(entry for entry in inventory["backends"] if entry["name"] == "fakestore")
    assert fake == {"name": "fakestore", "aliases": ["fake-alias"], "distribution": "beaker-fakestore",
                    "version": "3.1", "plugin": "fakestore",
                    "factory": "beaker_core.backends.memory.MemoryBackend"}
    broken = next(entry for entry in inventory["failures"] if entry["plugin"] == "brokenstore")
    assert broken["distribution"] == "beaker-brokenstore" and broken["version"] == "0.2"
    assert "no_such_client_library" in broken["error"] and broken["names"] == ["brokenstore"]
    assert {entry["name"] for entry in inventory["serializers"]} >= {"json", "pickle"}


def test_backends_shows_beakers_aliases_of_a_network_backend(tmp_path):
    make_distribution(tmp_path, "beaker-fakeredis", "1.0", {"redis": "cli_fake_redis"}, {"cli_fake_redis": """
        from beaker_core import hookimpl

        @hookimpl
        def beaker_register_backends(register):
            from beaker_core.backends.memory import MemoryBackend
            register("redis", MemoryBackend)
        """})
    result = run("backends", "--json", pythonpath=tmp_path, env_extra={DISABLE_ENV: "beaker-core-redis"})
    entry = next(entry for entry in json.loads(result.stdout)["backends"] if entry["name"] == "redis")
    assert entry["aliases"] == ["ext:redis"] and entry["distribution"] == "beaker-fakeredis"


def test_backends_reports_names_claimed_twice(tmp_path):
    for index in (1, 2):
        make_distribution(tmp_path, f"beaker-twin{index}", "1.0", {f"twin{index}": f"cli_twin{index}"},
                          {f"cli_twin{index}": FAKE_STORE.replace("fakestore", "twin")})
    result = run("backends", pythonpath=tmp_path)
    assert result.returncode == 0, result.stderr
    conflicts = result.stdout.split("Names claimed by two plugins:", 1)[1]
    assert "beaker-twin1" in conflicts and "beaker-twin2" in conflicts


def test_disabled_plugins_are_not_listed(tmp_path):
    make_distribution(tmp_path, "beaker-fakestore", "3.1", {"fakestore": "cli_fake_store"},
                      {"cli_fake_store": FAKE_STORE})
    result = run("backends", pythonpath=tmp_path, env_extra={DISABLE_ENV: "beaker-fakestore"})
    assert result.returncode == 0
    assert "fakestore" not in result.stdout


def test_python_dash_m_runs_the_same_command():
    result = run("backends", "--json", module=True)
    assert result.returncode == 0, result.stderr
    assert "memory" in {entry["name"] for entry in json.loads(result.stdout)["backends"]}


# -- beaker-core check ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["redis", "ext:redis"])
def test_check_an_uninstalled_backend_prints_the_install_hint(name):
    result = without_network_plugins("check", f"session.type={name}")
    assert_clean_error(result, f"no backend named {name!r} is installed", "pip install beaker-core-redis")
    installed = result.stderr.split("installed backends: ", 1)[1].split(")", 1)[0].split(", ")
    assert {"dbm", "file", "memory"} <= set(installed) and "redis" not in installed


def test_check_resolves_session_cache_and_regions(tmp_path):
    result = without_network_plugins(
        "check", "session.type=file", f"session.data_dir={tmp_path}/sessions", "cache.type=memory",
        "cache.regions=short_term, long_term", "cache.long_term.type=dbm", f"cache.long_term.data_dir={tmp_path}",
        "cache.lock_type=thread")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("session.type = file  ->  backend 'file'") and "beaker-core" in line
               for line in lines), lines
    assert any(line.startswith("cache.type = memory  ->  backend 'memory'") for line in lines), lines
    assert any(line.startswith("cache.short_term.type = memory") for line in lines), lines
    assert any(line.startswith("cache.long_term.type = dbm  ->  backend 'dbm'") for line in lines), lines
    assert any(line.startswith("cache.lock_type = thread  ->  lock 'thread'") for line in lines), lines


def test_check_reports_defaults_and_beakers_prefix(tmp_path):
    result = run("check", f"beaker.session.data_dir={tmp_path}", "beaker.cache.expire=60")
    assert result.returncode == 0, result.stderr
    assert "session.type = file (default)  ->  backend 'file'" in result.stdout
    assert "cache.type = memory (default)  ->  backend 'memory'" in result.stdout


def test_check_cookie_sessions_need_no_backend():
    result = run("check", "session.type=cookie", "session.secret=a-long-enough-secret-value")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("session.type = cookie  ->  ")


def test_check_fails_on_a_weak_key_with_the_startup_warning():
    result = run("check", "session.type=cookie", "session.validate_key=hoobermas")
    assert_clean_error(result, "session.validate_key is a weak key: it is 9 characters long",
                       "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    assert "hoobermas" not in result.stderr


def test_check_shows_what_startup_would_warn_about(tmp_path):
    result = run("check", "session.type=cookie", "session.secret=a-long-enough-secret-value",
                 f"session.data_dir={tmp_path}/sessions")
    assert result.returncode == 0, result.stderr
    assert "beaker-core: warning: session: session.data_dir is ignored: cookie sessions" in result.stderr
    assert not (tmp_path / "sessions").exists()


def test_check_an_uninstalled_region_backend_fails_and_names_the_region():
    result = without_network_plugins("check", "cache.regions=fast", "cache.fast.type=ext:memcached")
    assert_clean_error(result, "cache.fast.type:", "pip install beaker-core-memcached")


def test_check_unknown_lock_and_serializer():
    result = run("check", "session.type=memory", "session.lock_type=zookeeper", "session.data_serializer=msgpack")
    assert_clean_error(result, "no lock named 'zookeeper'", "installed locks:", "no serializer named 'msgpack'")


def test_check_wrong_value_names_the_option():
    result = run("check", "cache.expire=soon")
    assert_clean_error(result, "cache.expire must be a number, not 'soon'")


@pytest.mark.parametrize("args,fragment", [
    ((), "nothing to check"),
    (("sesion.type=file",), "options given: sesion.type"),
    (("session.type",), "expected KEY=VALUE"),
    (("=file",), "expected KEY=VALUE"),
    (("--section", "app:main", "session.type=file"), "--section needs --config"),
])
def test_check_usage_mistakes_are_explained(args, fragment):
    assert_clean_error(run("check", *args), fragment)


def test_check_json():
    result = without_network_plugins("check", "session.type=memory", "cache.type=redis", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    session, cache = report["results"]
    assert session["option"] == "session.type" and session["distribution"] == "beaker-core"
    assert cache["option"] == "cache.type" and "pip install beaker-core-redis" in cache["error"]


INI = """
[DEFAULT]
debug = false

[app:main]
use = egg:myapp
beaker.session.type = file
beaker.session.data_dir = %(here)s/sessions
beaker.cache.data_dir = %(here)s/cache
beaker.cache.regions = Short
beaker.cache.Short.type = dbm

[app:other]
session.type = ext:mongodb
"""


def test_check_reads_an_ini_file(tmp_path):
    config = tmp_path / "app.ini"
    config.write_text(INI)
    result = run("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "session.type = file  ->  backend 'file'" in result.stdout
    assert "cache.Short.type = dbm" in result.stdout  # region names keep their case

    other = without_network_plugins("check", "--config", str(config), "--section", "app:other")
    assert_clean_error(other, "'ext:mongodb'", "beaker-core-mongo (planned, not written yet)")
    overridden = run("check", "--config", str(config), "--section", "app:other", "session.type=memory")
    assert overridden.returncode == 0, overridden.stderr


def test_check_ini_mistakes(tmp_path):
    assert_clean_error(run("check", "--config", str(tmp_path / "missing.ini")), "cannot read", "missing.ini")
    config = tmp_path / "app.ini"
    config.write_text(INI)
    assert_clean_error(run("check", "--config", str(config), "--section", "app:nope"),
                       "has no section [app:nope]", "app:main, app:other")
    several = tmp_path / "several.ini"
    several.write_text("[one]\nsession.type = file\n[two]\nsession.type = dbm\n")
    assert_clean_error(run("check", "--config", str(several)), "several sections (one, two)", "--section")
    broken = tmp_path / "broken.ini"
    broken.write_text("session.type = file\n")
    assert_clean_error(run("check", "--config", str(broken)), "not a valid INI file")
    empty = tmp_path / "empty.ini"
    empty.write_text("; only a comment\n")
    assert_clean_error(run("check", "--config", str(empty)), "has no [section]")
    bad_interpolation = tmp_path / "interp.ini"
    bad_interpolation.write_text("[app:main]\nsession.type = %(nothing)s\n")
    assert_clean_error(run("check", "--config", str(bad_interpolation)), "nothing")


# -- beaker-core cleanup -------------------------------------------------------------------------------------------

def test_cleanup_removes_expired_file_entries(tmp_path):
    data_dir = tmp_path / "cache"
    store = Registry(load_entrypoints=False).backend_class("file")(data_dir=str(data_dir))
    store.set("expired-1", b"1", ttl=0.05)
    store.set("expired-2", b"2", ttl=0.05)
    store.set("live", b"3", ttl=3600)
    time.sleep(0.2)
    result = run("cleanup", "--type", "file", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("removed 2 expired entries from ")
    assert store.get("live") == b"3"
    assert store.get("expired-1") is None
    again = run("cleanup", "--type", "file", "--data-dir", str(data_dir))
    assert again.stdout.startswith("removed 0 expired entries")


def test_cleanup_mistakes_are_explained(tmp_path):
    assert_clean_error(run("cleanup", "--type", "memory"), "inside each application process")
    assert_clean_error(without_network_plugins("cleanup", "--type", "redis", "--url", "redis://127.0.0.1"),
                       "pip install beaker-core-redis")
    assert_clean_error(run("cleanup", "--type", "file", "--data-dir", str(tmp_path), "-o", "colour=blue"),
                       "colour")
    assert_clean_error(run("cleanup", "--type", "file", "-o", "novalue"), "expected KEY=VALUE")
    assert_clean_error(run("cleanup", "--type", "file"), "data_dir")
    missing = tmp_path / "mistyped"
    assert_clean_error(run("cleanup", "--type", "file", "--data-dir", str(missing)), "no such directory")
    assert not missing.exists()


def test_a_closed_pipe_is_not_a_traceback():
    # the reader is gone before the command writes, as with `beaker-core backends | head -1` on a long listing
    process = subprocess.Popen([str(SCRIPT), "backends", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


# -- usage errors --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(), ("frobnicate",), ("cleanup",), ("backends", "--colour")])
def test_usage_errors_exit_2_with_usage(args):
    result = run(*args)
    assert result.returncode == 2
    assert "usage: beaker-core" in result.stderr
    assert "Traceback" not in result.stderr
