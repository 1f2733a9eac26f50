"""The ```python blocks of README.md, docs/*.md and examples/beaker_example_plugin/README.md, taken from the files
and run as written, each in a fresh ``python`` process whose working directory is the test's ``tmp_path``.

A block must exit 0 and write nothing to stderr (no warning, no traceback). A block that is a pytest module (it
defines a ``Test*`` class or a ``test_*`` function at its top level: a ``BackendConformance`` subclass, say) is
written to ``tmp_path/test_block.py`` and run with ``python -m pytest`` instead: it must pass, with at least one
test run. A pytest block that is, statement for statement, a test module of the repository (the example plugin's
conformance test, shown in two documents) is that module: the suite runs it where it lives, and this test checks
that the block still says exactly what the module does.

The text of a block changes in one place only, :func:`redirected`, for what would otherwise leave the test: a quoted
absolute path under ``/var/`` or ``/tmp/`` (``"/var/lib/myapp/sessions"``) becomes the same path under
``tmp_path``, and a redis URL on the default local address (``redis://127.0.0.1:6379``, ``redis://localhost:6379``)
points at a redis-server that this test starts with ``beaker_redis.testing``'s ``redis_server`` fixture (so such a
block is skipped with ``BEAKER_TEST_NO_REDIS=1``, and fails when redis cannot start). Nothing else is rewritten.

A block that cannot run is listed in ``NOT_RUN`` with the reason (none today): a block that uses a name it never
defines (a fragment) and is not listed fails ``test_every_block_is_run_or_listed`` before it is even run.
"""
import ast
import builtins
import re
import subprocess
import symtable
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from beaker_redis.testing import redis_server  # noqa: F401  (the fixture, for blocks naming a local redis)

from beaker_core.testing.docs import fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             ROOT / "examples" / "beaker_example_plugin" / "README.md"]
BLOCKS = [block for document in DOCUMENTS for block in fenced_blocks(document, "python")]
TIMEOUT = 120  # seconds for a script block
PYTEST_TIMEOUT = 600  # a conformance suite runs a few hundred tests

#: blocks that are not run here: a line of the block, and why (none today)
NOT_RUN: dict[str, str] = {}

DIRECTORY = re.compile(r"""(?P<quote>["'])(?P<path>/(?:var|tmp)/[^"'\n]*)(?P=quote)""")
LOCAL_REDIS = re.compile(r"redis://(?:127\.0\.0\.1|localhost):6379\b")


def block_id(block) -> str:
    return f"{block.path.relative_to(ROOT)}:{block.line}"


def not_run_reason(block) -> str | None:
    return next((reason for line, reason in NOT_RUN.items() if line in block.text.splitlines()), None)


def redirected(source: str, tmp_path: Path, redis_url: str | None = None) -> str:
    """``source`` with each quoted absolute path under /var/ or /tmp/ moved under ``tmp_path``, and, given
    ``redis_url``, the default local redis address replaced by that server's address; every other character kept."""
    source = DIRECTORY.sub(lambda match: match["quote"] + str(tmp_path / match["path"].lstrip("/")) + match["quote"],
                           source)
    if redis_url is not None:
        source = LOCAL_REDIS.sub(f"redis://{urlsplit(redis_url).netloc}", source)
    return source


def undefined_names(source: str) -> list[str]:
    """Names the block uses, at its top level or inside its functions and classes, that it never binds at its top
    level and that are not builtins: what a fragment expects from text around it."""
    top = symtable.symtable(source, "<block>", "exec")
    bound = {symbol.get_name() for symbol in top.get_symbols()
             if symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()}
    used: set[str] = set()

    def visit(table: symtable.SymbolTable) -> None:
        used.update(symbol.get_name() for symbol in table.get_symbols()
                    if symbol.is_referenced() and (table is top or symbol.is_global()))
        for child in table.get_children():
            visit(child)

    visit(top)
    return sorted(used - bound - set(dir(builtins)))


def is_pytest_module(source: str) -> bool:
    return any(isinstance(node, ast.ClassDef) and node.name.startswith("Test")
               or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
               for node in ast.parse(source).body)


#: the test modules the suite collects (pyproject's testpaths)
TEST_MODULES = sorted(path for folder in ("tests", "plugins", "examples") for path in (ROOT / folder).rglob("test_*.py"))


def statements(source: str) -> str:
    """The code of a module without its docstring, as a comparable text."""
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return ast.dump(ast.Module(body=body, type_ignores=[]))


def repository_test_module(source: str) -> Path | None:
    """The test module of the repository whose statements are those of ``source``, if there is one."""
    wanted = statements(source)
    return next((path for path in TEST_MODULES if statements(path.read_text(encoding="utf-8")) == wanted), None)


def test_every_block_is_run_or_listed():
    documents = {block.path.relative_to(ROOT).as_posix() for block in BLOCKS}
    assert {"README.md", "docs/sessions.md", "docs/caching.md"} <= documents, f"python blocks found in {documents}"
    for block in BLOCKS:
        if not_run_reason(block):
            continue
        compile(block.text, block_id(block), "exec")
        missing = undefined_names(block.text)
        assert not missing, (f"{block_id(block)} uses {missing} without defining them: define them in the block "
                             f"(keep it short), or list the block in NOT_RUN with the reason")
    for line in NOT_RUN:
        matches = [block_id(block) for block in BLOCKS if line in block.text.splitlines()]
        assert len(matches) == 1, f"NOT_RUN names {line!r}, found in {matches or 'no block'}"


def run(command: list[str], cwd: Path, timeout: int, name: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{name} did not finish in {timeout} s; output so far:\n{exc.stdout}\n{exc.stderr}")


@pytest.mark.parametrize("block", BLOCKS, ids=[block_id(block) for block in BLOCKS])
def test_doc_block_runs_as_written(block, tmp_path, request):
    reason = not_run_reason(block)
    if reason:
        pytest.skip(f"listed in NOT_RUN: {reason}")
    redis_url = request.getfixturevalue("redis_server").url if LOCAL_REDIS.search(block.text) else None
    source = redirected(block.text, tmp_path, redis_url)
    name = block_id(block)
    if is_pytest_module(source) and repository_test_module(source) is not None:
        pass  # the block is that module of the suite, statement for statement: the suite runs it where it lives
    elif is_pytest_module(source):
        (tmp_path / "test_block.py").write_text(source, encoding="utf-8")
        result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_block.py"],
                     tmp_path, PYTEST_TIMEOUT, name)
        output = f"{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, f"{name}: pytest failed:\n{output[-6000:]}"
        passed = re.search(r"(\d+) passed", result.stdout)
        assert passed and int(passed[1]) > 0, f"{name}: no test ran:\n{output[-3000:]}"
    else:
        (tmp_path / "block.py").write_text(source, encoding="utf-8")
        result = run([sys.executable, "block.py"], tmp_path, TIMEOUT, name)
        assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stderr[-6000:]}"
        assert not result.stderr, f"{name} wrote to stderr:\n{result.stderr[-6000:]}"


def test_redirected_changes_only_directories_and_the_local_redis_address(tmp_path):
    source = ('config = {"session.data_dir": "/var/lib/myapp/sessions", "cache.data_dir": \'/tmp/cache\',\n'
              '          "session.url": "redis://127.0.0.1:6379/0", "cache.url": "redis://localhost:6379",\n'
              '          "other.url": "redis://cache.example.com:6379/0", "path": "/", "log": "/srv/log"}\n')
    expected = (f'config = {{"session.data_dir": "{tmp_path}/var/lib/myapp/sessions", '
                f'"cache.data_dir": \'{tmp_path}/tmp/cache\',\n'
                '          "session.url": "redis://:pw@127.0.0.1:4242/0", "cache.url": "redis://:pw@127.0.0.1:4242",\n'
                '          "other.url": "redis://cache.example.com:6379/0", "path": "/", "log": "/srv/log"}\n')
    assert redirected(source, tmp_path, "redis://:pw@127.0.0.1:4242/0") == expected
    assert redirected(source, tmp_path).count("redis://127.0.0.1:6379/0") == 1


def test_a_block_that_is_a_test_module_of_the_repository_is_recognised():
    conformance = ROOT / "examples" / "beaker_example_plugin" / "tests" / "test_example_conformance.py"
    text = conformance.read_text(encoding="utf-8")
    body = text.split('"""', 2)[2].lstrip("\n")  # without its docstring
    assert repository_test_module(body) == conformance
    assert repository_test_module(body.replace("10_000", "10_001")) is None


def test_a_fragment_is_found_and_a_pytest_module_recognised():
    assert undefined_names("session['cart'].append(item)\nf = lambda: compute()\n") == ["compute", "item", "session"]
    assert undefined_names("import os\nclass C:\n    def m(self):\n        return os.sep, len(URL)\n") == ["URL"]
    assert undefined_names("async def page(r):\n    return r\nroutes = [page]\n") == []
    assert is_pytest_module("from x import Suite\nclass TestMine(Suite):\n    backend = 'mine'\n")
    assert not is_pytest_module("def helper():\n    pass\n")
