"""The shape of the code, checked from its source: the import graph of beaker_core and of the plugins.

- no import cycle between beaker-core's modules, imports inside functions included;
- no private name (one leading underscore) imported from another module, or read as an attribute of an imported
  module;
- inside a package, modules import each other, never the package's face (an ``__init__`` that re-exports them);
  outside it, code imports the face, never the modules behind it;
- the cache and the session never import a concrete backend: what a fast path needs is a capability the backend
  declares;
- the public import paths of Beaker's API answer.
"""
from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = ROOT / "beaker_core"
PLUGINS = sorted(path for path in (ROOT / "plugins").glob("*/beaker_*") if (path / "__init__.py").exists())


def module_name(path: pathlib.Path, top: pathlib.Path) -> str:
    parts = list(path.relative_to(top.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, tuple[pathlib.Path, ast.Module]]:
    found = {}
    for top in [CORE, *PLUGINS]:
        for path in sorted(top.rglob("*.py")):
            found[module_name(path, top)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


SOURCES = sources()


def is_package(name: str) -> bool:
    return SOURCES[name][0].name == "__init__.py"


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module name a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = importer if is_package(importer) else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(name: str):
    """Every import of a project module by module ``name``: (line, imported module, imported name or None)."""
    for node in ast.walk(SOURCES[name][1]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in SOURCES:
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            source = resolve(name, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in SOURCES:
                    yield node.lineno, submodule, None
                elif source in SOURCES:
                    yield node.lineno, source, alias.name


def graph() -> dict[str, set[str]]:
    return {name: {target for _, target, _ in imports(name) if target != name} for name in SOURCES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def package_faces_allowed(importer: str, target: str) -> bool:
    """A package's own face may import its modules; the top-level ``beaker_core`` face (version, hookimpl) is
    everyone's."""
    return importer == target or "." not in target


def test_the_graph_sees_the_modules():
    assert "beaker_core.registry" in SOURCES and "beaker_core.cache" in SOURCES and "beaker_core.session" in SOURCES
    edges = graph()
    assert "beaker_core.registry" in edges["beaker_core.cli"]


def test_no_import_cycle():
    edges = graph()
    # a package's face imports its own modules; a module importing back its face is reported by its own test
    # below, so the edge module -> face is what could close a circle here and stays in the graph
    assert cycles(edges) == []


def test_no_private_name_crosses_a_module_boundary():
    crossing = []
    for name in SOURCES:
        modules = {}
        for line, target, imported in imports(name):
            if imported is not None and imported.startswith("_") and not imported.startswith("__"):
                crossing.append(f"{name}:{line} imports {imported} from {target}")
        for node in ast.walk(SOURCES[name][1]):
            if isinstance(node, ast.ImportFrom):
                source = resolve(name, node)
                for alias in node.names:
                    if f"{source}.{alias.name}" in SOURCES:
                        modules[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in SOURCES and alias.asname:
                        modules[alias.asname] = alias.name
        for node in ast.walk(SOURCES[name][1]):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossing.append(f"{name}:{node.lineno} reads {modules[node.value.id]}.{node.attr}")
    assert crossing == []


def is_face(package: str) -> bool:
    """Whether a package's ``__init__`` re-exports names of its own modules (``beaker_core.cache``), rather than
    defining a contract its modules build on (``beaker_core.backends``: the Backend base class)."""
    return any(target.startswith(package + ".") for _, target, _ in imports(package))


def test_modules_inside_a_package_never_import_its_face():
    wrong = []
    for name in SOURCES:
        if is_package(name):
            continue
        package = name.rpartition(".")[0]
        if "." not in package or not is_face(package):
            continue  # beaker_core itself, beaker_redis...: their face is the plugin's hook module
        for line, target, imported in imports(name):
            if target == package and imported is not None:
                wrong.append(f"{name}:{line} imports {imported} from its package's face {package}")
    assert wrong == []


#: the feature packages whose face is their whole public API (beaker_core.testing, by contrast, is a set of toolkits
#: imported module by module: beaker_core.testing.servers, .clock, .docs)
FEATURES = ["beaker_core.cache", "beaker_core.session"]


def test_other_modules_use_a_feature_through_its_face():
    wrong = []
    faces = FEATURES
    for name in SOURCES:
        for line, target, _ in imports(name):
            for face in faces:
                if target.startswith(face + ".") and not (name == face or name.startswith(face + ".")):
                    wrong.append(f"{name}:{line} imports {target}: import from {face}")
    assert wrong == []


CONCRETE_BACKENDS = {"beaker_core.backends.memory", "beaker_core.backends.file", "beaker_core.backends.dbm"}


@pytest.mark.parametrize("feature", FEATURES)
def test_features_never_import_a_concrete_backend(feature):
    users = [name for name in SOURCES if name == feature or name.startswith(feature + ".")]
    assert users
    found = [f"{name}:{line} imports {target}" for name in users for line, target, _ in imports(name)
             if target in CONCRETE_BACKENDS]
    assert found == []


PUBLIC = {
    "beaker_core.cache": ["Cache", "CacheManager", "cache_region", "region_invalidate", "cache_regions", "clsmap"],
    "beaker_core.session": ["Session", "CookieSession", "SessionObject", "SignedCookie"],
    "beaker_core.middleware": ["SessionMiddleware", "CacheMiddleware", "session_filter_factory",
                               "session_filter_app_factory"],
    "beaker_core.util": ["parse_cache_config_options", "coerce_session_params", "coerce_cache_params"],
    "beaker_core.asgi": ["SessionMiddleware"],
    "beaker_core": ["install_as_beaker", "uninstall_as_beaker", "hookimpl"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_import_paths(module):
    imported = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(imported, name)]
    assert missing == []
