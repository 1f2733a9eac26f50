"""The ```ini configurations of README.md and docs/*.md, taken from the files and run as written on the built-in
backends (memory, file, dbm, cookie).

Only directories change: a ``data_dir`` or ``lock_dir`` becomes a directory under the test's ``tmp_path``. A block
in PasteDeploy's form (``[filter:...]`` sections and a ``[pipeline:main]``) is read as PasteDeploy reads a file
in ``tmp_path``: ``%(here)s`` is ``tmp_path``, a filter's ``use = egg:<distribution>#<name>`` is that
distribution's ``paste.filter_factory`` entry point, and the pipeline's application is a session counter. Secrets
are used as written; a weak one may give a ``SecurityWarning``, which is allowed (and only that warning). A block
with ``cache.*`` keys must cache, one with ``session.*`` keys must keep a session, and what they store must be in
their directories. A block that uses another backend is listed in ``NOT_RUN`` with the reason.
"""
import functools
import importlib.metadata
import warnings
from pathlib import Path

import pytest

from beaker_core.exceptions import SecurityWarning
from beaker_core.middleware import SessionMiddleware
from beaker_core.testing.docs import check_cache_config, check_session_counts, fenced_blocks, read_ini

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [block for document in DOCUMENTS for block in fenced_blocks(document, "ini")]
BUILT_IN_TYPES = {"memory", "file", "dbm", "cookie"}
DIRECTORY_KEYS = ("data_dir", "lock_dir")

#: blocks that are not run here: a line of the block, and why (none today)
NOT_RUN: dict[str, str] = {}


def not_run_reason(block) -> str | None:
    return next((reason for line, reason in NOT_RUN.items() if line in block.text.splitlines()), None)


def options_of(sections: dict) -> dict:
    return {key: value for section in sections.values() for key, value in section.items()}


def uses_built_ins_only(block) -> bool:
    options = options_of(read_ini(block.text))
    return all(value.strip() in BUILT_IN_TYPES for key, value in options.items() if key.endswith(".type"))


def test_every_block_is_run_or_listed():
    assert any(block.path.name == "sessions.md" for block in BLOCKS), "docs/sessions.md has no ```ini block"
    for block in BLOCKS:
        assert uses_built_ins_only(block) or not_run_reason(block), (
            f"{block.name} uses a backend that is not built in: list it in NOT_RUN with the reason")
    for line in NOT_RUN:
        matches = [block.name for block in BLOCKS if line in block.text.splitlines()]
        assert len(matches) == 1, f"NOT_RUN names {line!r}, found in {matches or 'no block'}"


def in_tmp_path(options: dict, tmp_path: Path) -> dict:
    """``options`` with each data_dir / lock_dir outside ``tmp_path`` moved under it; every other value kept."""
    def directory(key: str, value: str) -> str:
        if not key.endswith(DIRECTORY_KEYS) or Path(value).is_relative_to(tmp_path):
            return value
        return str(tmp_path / key)
    return {key: directory(key, value) for key, value in options.items()}


def paste_pipeline(sections: dict, here: Path):
    """What PasteDeploy builds from ``[filter:*]`` sections and ``[pipeline:main]``: a function wrapping an
    application in the pipeline's filters, the first filter outermost."""
    others = [name for name in sections if name != "pipeline:main" and not name.startswith("filter:")]
    assert not others, f"sections {others}: only [filter:*] sections and [pipeline:main] are run here"
    *filter_names, _application = sections["pipeline:main"]["pipeline"].split()
    filters = []
    for name in filter_names:
        local_conf = dict(sections[f"filter:{name}"])
        scheme, _, reference = local_conf.pop("use").partition(":")
        distribution, _, entry_name = reference.partition("#")
        assert scheme == "egg", f"filter {name}: only use = egg:<distribution>#<name> is run here"
        (entry_point,) = [entry_point for entry_point in importlib.metadata.distribution(distribution).entry_points
                          if entry_point.group == "paste.filter_factory" and entry_point.name == entry_name]
        global_conf = {"here": str(here), "__file__": str(here / "app.ini")}
        filters.append(entry_point.load()(global_conf, **local_conf))
    return lambda app: functools.reduce(lambda wrapped, wrap: wrap(wrapped), reversed(filters), app)


def run_block(block, tmp_path: Path) -> None:
    sections = read_ini(block.text, defaults={"here": str(tmp_path)})
    sections = {name: in_tmp_path(options, tmp_path) for name, options in sections.items()}
    options = options_of(sections)
    if set(sections) == {""}:
        config = sections[""]
        if any(key.startswith(("cache.", "beaker.cache.")) for key in config):
            check_cache_config(config)
        if any(key.startswith(("session.", "beaker.session.")) for key in config):
            check_session_counts(lambda app: SessionMiddleware(app, config))
    else:
        assert any(key.startswith(("session.", "beaker.session.")) for key in options), (
            f"{block.name}: a PasteDeploy block without session.* keys")
        check_session_counts(paste_pipeline(sections, here=tmp_path))
    for key, value in options.items():
        if key.endswith(".data_dir"):
            stored = [path for path in Path(value).rglob("*") if path.is_file()]
            assert stored, f"{block.name}: nothing was stored in {key} ({value})"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_doc_block_runs_as_written(block, tmp_path):
    reason = not_run_reason(block)
    if reason:
        pytest.skip(f"listed in NOT_RUN: {reason}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_block(block, tmp_path)
    unexpected = [f"{warning.category.__name__}: {warning.message}" for warning in caught
                  if not issubclass(warning.category, SecurityWarning)]
    assert not unexpected, f"{block.name} gave warnings: {unexpected}"


def test_a_block_without_sections_runs_too(tmp_path):
    """The form the plugin READMEs use (keys without a section), run by the same code as the documents' blocks."""
    text = ("cache.type = file\ncache.data_dir = /var/cache/app\ncache.regions = short_term\n"
            "cache.short_term.expire = 60\n\nsession.type = file\nsession.data_dir = /var/lib/app/sessions\n")
    document = tmp_path / "example.md"
    document.write_text(f"# Example\n\n```sh\npip install .\n```\n\n```ini\n{text}```\n")
    (block,) = fenced_blocks(document, "ini")
    assert (block.name, block.text) == ("example.md:7", text)
    run_block(block, tmp_path / "run")
    assert {path.name for path in (tmp_path / "run").iterdir()} == {"cache.data_dir", "session.data_dir"}
