"""The layout of the suite: test modules import shared code from tests/support, never from each other, and each
fixture is defined once.

A test module (or a conftest.py) that imports another test module runs that module's tests' fixtures and
helpers from two places, and makes the suite's parts depend on each other in ways no one sees; shared code
lives in tests/support, whose modules never import a test module either.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _is_test_module(dotted: str) -> bool:
    """`tests.hub.test_hub`, `tests.conftest`: a module pytest collects or plugs, not a support module."""
    leaf = dotted.rsplit(".", 1)[-1]
    return leaf.startswith("test_") or leaf == "conftest"


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) for every module an import statement names, `from a import b` as `a` and `a.b`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_no_test_module_imports_another_test_module() -> None:
    offences = []
    for path in sorted(TESTS.rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        for line, module in _imported(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(TESTS.parent)}:{line}"
            if module.startswith("."):
                offences.append(f"{where}: relative import {module} (import tests.support.* by name)")
            elif module.split(".")[0] == "tests" and _is_test_module(module):
                offences.append(f"{where}: imports {module}; move what it shares to tests/support")
    assert not offences, "\n".join(offences)


def _fixtures(tree: ast.AST) -> list[str]:
    """Names of the functions decorated `@pytest.fixture` (with or without arguments)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            decorators = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
            if any(ast.unparse(d) == "pytest.fixture" for d in decorators):
                names.append(node.name)
    return names


def test_every_fixture_is_defined_once() -> None:
    """Two fixtures of one name are either a copy or a meaning that depends on the folder: both confuse."""
    where: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        if "node_modules" not in path.parts:
            for name in _fixtures(ast.parse(path.read_text(), filename=str(path))):
                where.setdefault(name, []).append(str(path.relative_to(TESTS.parent)))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not twice, f"fixtures defined more than once: {twice}"
    assert {"redis", "redis_url", "engine", "client", "pair", "launcher"} <= where.keys()


def test_the_check_sees_an_import_of_a_test_module() -> None:
    """The check above can fail: each form of importing a test module is caught, support imports are not."""
    caught = [
        "from tests.hub.test_hub import Viewer",
        "from tests.hub import test_hub",
        "import tests.test_process",
        "from tests.conftest import reset",
        "from tests.web.conftest import Site",
    ]
    for source in caught:
        modules = [module for _, module in _imported(ast.parse(source))]
        assert any(_is_test_module(m) for m in modules if m.startswith("tests")), source
    modules = [module for _, module in _imported(ast.parse("from tests.support.sockets import Viewer"))]
    assert not any(_is_test_module(m) for m in modules)
