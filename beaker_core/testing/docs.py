"""The configuration blocks of the documentation, for tests that run them as written.

:func:`fenced_blocks` reads the fenced code blocks of a Markdown file (```` ```ini ```` ones, say), with the line
each starts on; :func:`read_ini` reads such a block as an INI file; :func:`check_cache_config` and
:func:`check_session_counts` run a configuration through the caching API and the session middleware and check that
it really caches and really keeps a session. A test takes the blocks from the documentation file itself, so the
documented configuration, not a copy of it, is what runs.

The checks raise ``AssertionError`` with a message saying what failed (this module is not rewritten by pytest).
"""
from __future__ import annotations

import configparser
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..cache import Cache, CacheManager, spec_of
from ..util import parse_cache_config_options
from .sessions import WSGIClient

__all__ = ["FencedBlock", "fenced_blocks", "read_ini", "check_cache_config", "check_session_counts", "counter_app"]

_OPENING = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class FencedBlock:
    """One fenced code block: the file, the line of its opening fence (from 1), its language and its text."""

    path: Path
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        """``README.md:41``: where the block is, as a test id."""
        return f"{self.path.name}:{self.line}"


def fenced_blocks(path: str | Path, language: str | None = None) -> list[FencedBlock]:
    """The fenced code blocks of the Markdown file ``path``, in order; only those of ``language`` when given (the
    first word of the info string, ```` ```ini ````). An indented fence (a block inside a list item) loses that
    indentation from its lines; a block left open runs to the end of the file, as CommonMark reads it."""
    path = Path(path)
    blocks: list[FencedBlock] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _OPENING.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        block_language = (opening["info"].split() or [""])[0]
        start = index
        body: list[str] = []
        while index < len(lines):
            line = lines[index]
            index += 1
            closing = line.strip()
            if len(closing) >= len(fence) and set(closing) == {fence[0]}:
                break
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
        if language is None or block_language == language:
            blocks.append(FencedBlock(path, start, block_language, "\n".join(body) + "\n"))
    return blocks


def read_ini(text: str, defaults: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """The sections of an INI text as ``{section: {key: value}}``, keys and values as written (keys keep their
    case). Lines before the first section header, or a text without headers, form the section ``""``.

    Without ``defaults`` no value is interpolated. With them (PasteDeploy's ``{"here": directory}``), ``%(name)s``
    is interpolated as PasteDeploy does, and the defaults are left out of the sections, as PasteDeploy leaves
    them out of an application's local configuration.
    """
    parser = configparser.ConfigParser(defaults=defaults,
                                       interpolation=configparser.BasicInterpolation() if defaults else None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    headless = "\0"  # the name of the section before any header: no INI file can name a section so
    parser.read_string(f"[{headless}]\n{text}")
    sections: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        options = {key: parser.get(section, key) for key in parser.options(section)
                   if defaults is None or key not in defaults}
        if section == headless and not options:
            continue
        sections["" if section == headless else section] = options
    return sections


_NAMESPACE = "beaker_core.testing.docs"


def check_cache_config(config: Mapping[str, Any]) -> list[Cache]:
    """Run a ``cache.*`` configuration as an application would: ``CacheManager(**parse_cache_config_options(config))``,
    then, for each region it names, a function decorated with ``@cache.region(region)``, or without regions
    ``cache.get_cache(...)``. Each is called twice with the same (new) argument: the value is created once and the
    second call returns it. A second ``CacheManager`` built from the same configuration, as another process would
    build it, then finds the value without creating it. Returns the caches used, one per region (or the one), for
    checks of where the values went.
    """
    manager = CacheManager(**parse_cache_config_options(config))
    caches: list[Cache] = []
    for region in list(manager.regions) or [None]:
        token = uuid.uuid4().hex  # one per region: the functions of all regions share a namespace, hence their keys
        where = f"region {region!r}" if region else "cache.get_cache"
        created: list[str] = []
        lookup = _cached_function(manager, region, created)
        first, second = lookup(token), lookup(token)
        _expect(created == [token], f"{where}: the value was created {len(created)} times in two calls")
        _expect(first == second, f"{where}: the second call returned {second!r}, not the cached {first!r}")
        created_again: list[str] = []
        other_manager = CacheManager(**parse_cache_config_options(config))
        found = _cached_function(other_manager, region, created_again)(token)
        _expect(created_again == [] and found == first,
                f"{where}: a second CacheManager from the same configuration did not find the value "
                f"(it got {found!r}, created {len(created_again)} times)")
        caches.append(manager.get_cache_region(spec_of(lookup).namespace, region) if region
                      else manager.get_cache(_NAMESPACE))
    return caches


def _cached_function(manager: CacheManager, region: str | None, created: list[str]) -> Callable[[str], str]:
    """A function whose values ``manager`` caches (in ``region``, or in ``get_cache``), and that records in
    ``created`` each argument it computes a value for. Every such function has the same cache namespace."""
    def create(argument: str) -> str:
        created.append(argument)
        return f"{region}:{argument}:{uuid.uuid4().hex}"

    if region is None:
        cache = manager.get_cache(_NAMESPACE)
        return lambda argument: cache.get(argument, createfunc=lambda: create(argument))

    @manager.region(region)
    def documented_lookup(argument: str) -> str:
        return create(argument)
    return documented_lookup


def counter_app(environ: dict, start_response: Callable) -> list[bytes]:
    """Beaker's quickstart: a counter in ``environ['beaker.session']``, answered as text."""
    session = environ["beaker.session"]
    session["counter"] = session.get("counter", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["counter"]).encode()]


def check_session_counts(wrap: Callable[[Callable], Callable]) -> WSGIClient:
    """Wrap :func:`counter_app` with ``wrap`` (``lambda app: SessionMiddleware(app, config)``) and drive it with a
    client that keeps its cookies: two requests count 1 and 2. A second application wrapped the same way (another
    process would build one) continues the same session to 3. Returns the client, holding the session cookie."""
    client = WSGIClient(wrap(counter_app))
    counts = [_count(client) for _ in range(2)]
    _expect(counts == [1, 2], f"two requests with the cookie counted {counts}, not [1, 2]")
    _expect(bool(client.cookies), "no session cookie was set")
    other = WSGIClient(wrap(counter_app))
    other.cookies = dict(client.cookies)
    third = _count(other)
    _expect(third == 3, f"a second middleware from the same configuration counted {third}, not 3")
    return client


def _count(client: WSGIClient) -> int:
    status, _, body = client.request("/")
    _expect(status.startswith("200"), f"the request answered {status}: {body[:200]!r}")
    return int(body)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
