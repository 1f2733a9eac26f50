"""The ``beaker-core`` command: what is installed, whether a configuration resolves, and cleanup of expired data.

::

    beaker-core backends [--json]
        Every backend, serializer and lock type with its aliases and the distribution (and version) that provides
        it; then the installed plugins that failed to load, with their error, and names two plugins both claim.

    beaker-core check [KEY=VALUE ...] [--config FILE [--section NAME]] [--json]
        Resolves ``session.type`` and ``cache.type`` (and each cache region's type, the lock types and serializers)
        through the registry, and says what each resolves to. Then it builds what the application builds at
        startup: the session configuration ``SessionMiddleware`` builds, and
        ``CacheManager(**parse_cache_config_options(config))`` with its default cache and each region's cache, so a
        setting that would stop the application fails here, with the same message. A weak session key, a
        ``SecurityWarning`` at startup, is an error here. Keys may carry Beaker's ``beaker.`` prefix. Options given
        on the command line override those read from the file.

        Building opens the backends as startup does: the file and dbm backends create their ``data_dir``; the
        redis and memcached backends connect on first use only, so their servers need not be running; a Redis
        Cluster client reads the cluster's slot map when it is built, so checking a cluster connects to it (and
        fails, as startup would, when no node answers).

    beaker-core cleanup --type TYPE [--data-dir DIR] [--url URL] [--option KEY=VALUE ...]
        Opens one backend and calls its ``cleanup()``, which removes the expired entries the store does not expire
        by itself (the file and dbm backends, for example). Suitable for a cron job.

Exit status: 0 on success, 1 when a name does not resolve or an option is wrong (the message says why), 2 for a
command line that cannot be parsed.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import sys
import warnings
from typing import Any, Callable, Sequence

from . import __version__
from .exceptions import BeakerError, ConfigurationError
from .registry import BEAKER_ALIASES, KINDS, Registration, Registry
from .session import SessionManager, session_options
from .util import parse_cache_config_options

PROG = "beaker-core"


class CommandError(Exception):
    """A problem with what the operator asked for; printed as one line, exit status 1."""


# -- beaker-core backends ------------------------------------------------------------------------------------------

def _aliases(registration: Registration) -> list[str]:
    aliases = set(registration.aliases)
    if registration.kind == "backend":
        # Beaker's ext:* names resolve through the registry's alias table, not the plugin's own list
        aliases.update(alias for alias, target in BEAKER_ALIASES.items() if target == registration.name)
    return sorted(aliases)


def _factory_path(factory: Any) -> str:
    # classes and functions are named as they are; an instance (a serializer object) by its class
    target = factory if isinstance(factory, type) or hasattr(factory, "__qualname__") else type(factory)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def _inventory(registry: Registry) -> dict[str, Any]:
    inventory: dict[str, Any] = {}
    for kind in KINDS:
        inventory[kind + "s"] = [
            {"name": reg.name, "aliases": _aliases(reg), "distribution": reg.distribution, "version": reg.version,
             "plugin": reg.plugin, "factory": _factory_path(reg.factory)}
            for reg in registry.registrations(kind)]
    inventory["failures"] = [
        {"plugin": failure.plugin, "distribution": failure.distribution, "version": failure.version,
         "names": sorted(failure.names), "error": failure.describe()}
        for failure in registry.failures.values()]
    inventory["conflicts"] = sorted({str(conflict) for conflict in registry.conflicts()})
    return inventory


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def cmd_backends(args: argparse.Namespace, registry: Registry) -> int:
    inventory = _inventory(registry)
    if args.json:
        print(json.dumps(inventory, indent=2))
        return 0
    rows = [["KIND", "NAME", "ALIASES", "DISTRIBUTION", "VERSION"]]
    for kind in KINDS:
        for entry in inventory[kind + "s"]:
            rows.append([kind, entry["name"], ", ".join(entry["aliases"]) or "-", entry["distribution"],
                         entry["version"] or "-"])
    print(_table(rows))
    if inventory["failures"]:
        print("\nPlugins that failed to load:")
        for failure in inventory["failures"]:
            print(f"  {failure['distribution']} {failure['version']} (plugin {failure['plugin']!r}): "
                  f"{failure['error']}")
    if inventory["conflicts"]:
        print("\nNames claimed by two plugins:")
        for conflict in inventory["conflicts"]:
            print(f"  {conflict}")
    return 0


# -- beaker-core check ---------------------------------------------------------------------------------------------

def _parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"expected KEY=VALUE (for example session.type=file), not {pair!r}")
        options[key.strip()] = value.strip()
    return options


def _read_ini(path: str, section: str | None) -> dict[str, str]:
    """Options of one section of an INI (PasteDeploy) file; ``%(here)s`` is the file's directory, as in Paste."""
    here = os.path.dirname(os.path.abspath(path))
    parser = configparser.ConfigParser(defaults={"here": here, "__file__": os.path.abspath(path)})
    parser.optionxform = str  # region names keep their case
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise CommandError(f"{path} is not a valid INI file: {exc}") from None
    sections = parser.sections()
    if not sections:
        raise CommandError(f"{path} has no [section]: nothing to check")
    if section is None:
        if len(sections) == 1:
            section = sections[0]
        elif "app:main" in sections:
            section = "app:main"
        else:
            raise CommandError(f"{path} has several sections ({', '.join(sections) or 'none'}); "
                               f"choose one with --section")
    if not parser.has_section(section):
        raise CommandError(f"{path} has no section [{section}] (sections: {', '.join(sections) or 'none'})")
    try:
        return {key: value for key, value in parser.items(section) if key not in ("here", "__file__")}
    except configparser.Error as exc:
        raise CommandError(f"{path}, section [{section}]: {exc}") from None


def _scoped(config: dict[str, str], scope: str) -> dict[str, tuple[str, str]]:
    """``{option: (key as written, value)}`` for ``<scope>.*`` and ``beaker.<scope>.*`` keys."""
    found: dict[str, tuple[str, str]] = {}
    for prefix in (f"beaker.{scope}.", f"{scope}."):  # the short form wins when both are given
        for key, value in config.items():
            if key.startswith(prefix):
                found[key[len(prefix):]] = (key, value)
    return found


class _Report:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.results: list[dict[str, Any]] = []

    @property
    def ok(self) -> bool:
        return all("error" not in result for result in self.results)

    def resolve(self, option: str, kind: str, name: Any, *, default: bool = False,
                builtin: dict[str, str] | None = None) -> None:
        result: dict[str, Any] = {"option": option, "value": name, "kind": kind, "default": default}
        try:
            registration = self.registry.lookup(kind, name)
        except BeakerError as exc:
            if builtin and name in builtin:
                result["builtin"] = builtin[name]
            else:
                result["error"] = str(exc)
        else:
            result.update(name=registration.name, distribution=registration.distribution,
                          version=registration.version, factory=_factory_path(registration.factory))
        self.results.append(result)

    def fail(self, option: str, message: str) -> None:
        self.results.append({"option": option, "error": message})

    def build(self, option: str, build: Callable[[], Any]) -> None:
        """Run ``build`` as the application's startup would: its exception is an error, its warnings are shown."""
        errors = len(self.results)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                build()
            except BeakerError as exc:
                self.fail(option, str(exc))
            except Exception as exc:  # a backend constructor's own error stops startup just the same
                self.fail(option, f"{type(exc).__name__}: {exc}")
        shown = {str(warning.message) for warning in caught if not issubclass(warning.category, DeprecationWarning)}
        self.results[errors:errors] = [{"option": option, "warning": message} for message in sorted(shown)]

    def failed_since(self, count: int) -> bool:
        return any("error" in result for result in self.results[count:])


_SESSION_BUILTINS = {"cookie": "the whole session is kept in an encrypted cookie; no storage backend"}


def _check_session(config: dict[str, str], options: dict[str, tuple[str, str]], report: _Report) -> None:
    before = len(report.results)
    if "type" in options:
        key, session_type = options["type"]
        report.resolve(key, "backend", session_type, builtin=_SESSION_BUILTINS)
    else:  # Beaker's rule: file when a data_dir is given, memory otherwise
        report.resolve("session.type", "backend", "file" if "data_dir" in options else "memory", default=True)
    if "lock_type" in options:
        report.resolve(options["lock_type"][0], "lock", options["lock_type"][1])
    if "data_serializer" in options:
        report.resolve(options["data_serializer"][0], "serializer", options["data_serializer"][1])
    if not report.failed_since(before):
        # what SessionMiddleware builds, with weak keys refused instead of warned about
        report.build("session", lambda: SessionManager(session_options(config), registry=report.registry,
                                                      strict_keys=True))


def _check_cache(config: dict[str, str], report: _Report) -> None:
    before = len(report.results)
    try:
        options = parse_cache_config_options(config)
    except ConfigurationError as exc:
        report.fail("cache", str(exc))
        return
    explicit = any(key in config for key in ("cache.type", "beaker.cache.type"))
    scopes = [("cache.", options, not explicit)]
    for region, region_options in options.get("cache_regions", {}).items():
        scopes.append((f"cache.{region}.", region_options, False))
    for prefix, scope, default in scopes:
        report.resolve(prefix + "type", "backend", scope.get("type"), default=default)
        if scope.get("lock_type"):
            report.resolve(prefix + "lock_type", "lock", scope["lock_type"])
        if scope.get("serializer"):
            report.resolve(prefix + "serializer", "serializer", scope["serializer"])
    if not report.failed_since(before):
        report.build("cache", lambda: _build_caches(options, report.registry))


def _build_caches(options: dict[str, Any], registry: Registry) -> None:
    """The CacheManager an application builds from these options, and the caches it would open: the default one
    (``@cache.cache``) and one per region (``@cache_region``)."""
    from .cache import CacheManager
    manager = CacheManager(**options, registry=registry)
    manager.get_cache("beaker-core check")
    for region in options.get("cache_regions", {}):
        manager.get_cache_region("beaker-core check", region)


def _describe(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{result['option']}: {result['error']}"
    if "warning" in result:
        return f"{result['option']}: {result['warning']}"
    value = f"{result['option']} = {result['value']}" + (" (default)" if result.get("default") else "")
    if "builtin" in result:
        return f"{value}  ->  {result['builtin']}"
    return (f"{value}  ->  {result['kind']} {result['name']!r}: {result['factory']} "
            f"from {result['distribution']} {result['version']}".rstrip())


def cmd_check(args: argparse.Namespace, registry: Registry) -> int:
    config: dict[str, str] = {}
    if args.config:
        config.update(_read_ini(args.config, args.section))
    elif args.section:
        raise CommandError("--section needs --config")
    config.update(_parse_pairs(args.options))
    session_scope = _scoped(config, "session")
    has_cache = bool(_scoped(config, "cache"))
    if not session_scope and not has_cache:
        given = ", ".join(sorted(config)) or "none"
        raise CommandError(f"nothing to check: no session.* or cache.* option was given (options given: {given})")
    report = _Report(registry)
    try:
        if session_scope:
            _check_session(config, session_scope, report)
        if has_cache:
            _check_cache(config, report)
    finally:
        registry.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "results": report.results}, indent=2))
    else:
        for result in report.results:
            line = _describe(result)
            if "error" in result:
                print(f"{PROG}: error: {line}", file=sys.stderr)
            elif "warning" in result:
                print(f"{PROG}: warning: {line}", file=sys.stderr)
            else:
                print(line)
    return 0 if report.ok else 1


# -- beaker-core cleanup -------------------------------------------------------------------------------------------

def cmd_cleanup(args: argparse.Namespace, registry: Registry) -> int:
    options: dict[str, Any] = _parse_pairs(args.option or ())
    if args.data_dir is not None:
        if not os.path.isdir(args.data_dir):  # do not let the backend create a mistyped directory
            raise CommandError(f"--data-dir {args.data_dir}: no such directory")
        options["data_dir"] = args.data_dir
    if args.url is not None:
        options["url"] = args.url
    registration = registry.lookup("backend", args.type)
    if not getattr(registration.factory, "shared", True):
        raise CommandError(f"the {registration.name} backend keeps its data inside each application process; "
                           f"there is nothing to clean up from outside")
    backend = registry.open_backend(args.type, **options)  # unknown options: ConfigurationError naming them
    try:
        removed = backend.cleanup()
    finally:
        registry.close()
    print(f"removed {removed} expired entr{'y' if removed == 1 else 'ies'} from {backend.describe()}")
    return 0


# -- entry point ---------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Inspect beaker-core's plugins and configuration.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    backends = commands.add_parser("backends", help="list installed backends, serializers, locks and broken plugins",
                                   description="List installed backends, serializers and locks, and broken plugins.")
    backends.add_argument("--json", action="store_true", help="print JSON instead of a table")
    backends.set_defaults(handler=cmd_backends)

    check = commands.add_parser(
        "check", help="resolve session.type / cache.type and build the configuration as startup does",
        description="Resolve session.type, cache.type and friends through the registry, then build the session "
                    "and cache configuration as the application's startup does: a setting that would stop the "
                    "application fails here with the same message, and so does a weak session key. Building "
                    "does not reach redis or memcached servers (they are connected on first use); a Redis Cluster "
                    "client reads the cluster's slot map when it is built, so checking a cluster connects to it.")
    check.add_argument("options", nargs="*", metavar="KEY=VALUE", help="options such as session.type=file")
    check.add_argument("--config", metavar="FILE", help="an INI (PasteDeploy) file to read options from")
    check.add_argument("--section", metavar="NAME",
                       help="the INI section (default: the only section, else app:main)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=cmd_check)

    cleanup = commands.add_parser("cleanup", help="remove expired entries from a file, dbm or other store",
                                  description="Open one backend and remove its expired entries.")
    cleanup.add_argument("--type", required=True, help="backend name, such as file or dbm")
    cleanup.add_argument("--data-dir", help="the backend's data_dir option")
    cleanup.add_argument("--url", help="the backend's url option")
    cleanup.add_argument("--option", "-o", action="append", metavar="KEY=VALUE", help="any other backend option")
    cleanup.set_defaults(handler=cmd_cleanup)
    return parser


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> int:
    """Run the command line; return the exit status (``beaker-core`` and ``python -m beaker_core``)."""
    args = build_parser().parse_args(argv)
    registry = registry if registry is not None else Registry()
    try:
        return args.handler(args, registry)
    except (CommandError, BeakerError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `beaker-core backends | head`: the reader went away, which is not an error here
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
