"""The domain never reaches up to a transport: no module of it imports `api/`, `hub/` or `media/`, even
through another module (the transports are wired to the domain in `app.py`, through the domain's Protocols)."""

from __future__ import annotations

import ast
from pathlib import Path

import livecommerce

_ROOT = Path(livecommerce.__file__).parent
_TRANSPORTS = ("livecommerce.api", "livecommerce.hub", "livecommerce.media")
_DOMAIN = [
    "livecommerce.access",
    "livecommerce.accounts",
    "livecommerce.catalog",
    "livecommerce.rooms",
    "livecommerce.services",
    "livecommerce.state",
    "livecommerce.transaction",
    "livecommerce.users",
    *sorted(f"livecommerce.commerce.{path.stem}" for path in (_ROOT / "commerce").glob("*.py")),
]


def _module_path(name: str) -> Path:
    relative = Path(*name.split(".")[1:])
    package = _ROOT / relative / "__init__.py"
    return package if package.exists() else (_ROOT / relative).with_suffix(".py")


def _imports(name: str) -> set[str]:
    """The livecommerce modules `name` imports (at any level of the file, TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(_module_path(name).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module.startswith("livecommerce") and _module_path(module).exists()}


def _reach(start: str) -> dict[str, str]:
    """Every livecommerce module `start` imports, directly or not, each with the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for imported in _imports(current):
            if imported not in seen and imported != start:
                seen[imported] = current
                todo.append(imported)
    return seen


def test_the_domain_imports_no_transport() -> None:
    for module in _DOMAIN:
        reached = _reach(module)
        bad = sorted(m for m in reached if m.startswith(_TRANSPORTS))
        assert not bad, f"{module} reaches {bad[0]} (imported by {reached[bad[0]]})"


def test_the_check_sees_an_import_of_a_transport() -> None:
    assert "livecommerce.hub.runtime" in _reach("livecommerce.app")
    assert "livecommerce.rooms" in _reach("livecommerce.services")
