"""Dependencies point one way: composition → transports → domain → live rooms → base, and no cycles.

Reads every module's imports (including those only for type checking: a type is a dependency too) with `ast`,
so it needs no import side effects and names the offending line. A new module must be placed in `LAYERS`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "livecommerce"

# Highest first. A module may import its own layer and any layer below it, never one above.
LAYERS: dict[str, tuple[str, ...]] = {
    "composition": ("app", "server", "cli", "worker", "admin", "demo", "webapp", "health", "logs"),
    "transport": ("api", "hub", "media", "ratelimit"),
    "domain": ("rooms", "catalog", "users", "accounts", "access", "services", "shows", "commerce"),
    "live": ("live",),
    "base": (
        "errors", "settings", "state", "models", "database", "migrations", "auth", "clock", "scripts", "wire",
        "outage", "recent", "aio", "paging", "limits", "transaction", "embedded_redis", "lua",
    ),
}  # fmt: skip
RANK = {top: rank for rank, (_, tops) in enumerate(reversed(LAYERS.items())) for top in tops}
LAYER_OF = {top: layer for layer, tops in LAYERS.items() for top in tops}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "versions" in parts:  # Alembic revisions import nothing of ours that matters here
            continue
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every `livecommerce.*` module this one imports, with the line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("livecommerce."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base == "livecommerce" or base.startswith("livecommerce."):
                # `from livecommerce.live import events`: the name is a module, the edge goes to it
                submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULE_NAMES]
                if base != "livecommerce" and len(submodules) < len(node.names):
                    yield base, node.lineno  # names defined in the package or module itself
                for submodule in submodules:
                    yield submodule, node.lineno


MODULE_NAMES = frozenset(module for module, _ in _modules())


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


MODULES = dict(_modules())


def test_every_module_has_a_layer() -> None:
    unplaced = sorted({_top(m) for m in MODULES if _top(m) and _top(m) not in LAYER_OF})
    assert not unplaced, f"place these in LAYERS (tests/test_layers.py): {unplaced}"


def test_dependencies_point_down() -> None:
    violations = []
    for module, path in MODULES.items():
        top = _top(module)
        if top not in RANK:
            continue
        for target, line in _imports(module, path):
            other = _top(target)
            if other in RANK and RANK[other] > RANK[top]:
                violations.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} {LAYER_OF[top]} `{module}` imports "
                    f"{LAYER_OF[other]} `{target}`"
                )
    assert not violations, "\n".join(violations)


# The transports stand side by side: none reaches into another (shared wire helpers live in `wire.py`).
SIDE_BY_SIDE = frozenset({"api", "hub", "media"})


def test_transports_do_not_import_each_other() -> None:
    crossings = [
        f"{path.relative_to(PACKAGE.parent)}:{line} `{module}` imports `{target}`"
        for module, path in MODULES.items()
        if _top(module) in SIDE_BY_SIDE
        for target, line in _imports(module, path)
        if _top(target) in SIDE_BY_SIDE and _top(target) != _top(module)
    ]
    assert not crossings, "\n".join(crossings)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in the graph if it has any (iterative depth-first search)."""
    state: dict[str, int] = {}
    for start in graph:
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_no_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _ in _imports(module, path):
            # `from livecommerce.x import name` may name a function, not a module: keep the longest module.
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    cycle = _cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("hub.service", "commerce.buying", True),
        ("commerce.buying", "api.routing", False),
        ("live.store", "hub.x", False),
    ],
)
def test_the_rule_itself(importer: str, imported: str, allowed: bool) -> None:
    """The direction check says no to an upward import (so the test above can fail)."""
    assert (RANK[importer.split(".")[0]] >= RANK[imported.split(".")[0]]) is allowed
