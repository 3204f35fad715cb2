"""Every file or module path the documentation names must exist: a renamed module leaves no stale row behind.

Scans docs/*.md, README.md and loadtests/README.md for
- repository paths anywhere in the text: `livecommerce/…`, `tests/…`, `loadtests/…`, `docs/…`, `web/…`, `tools/…`;
- paths and file names in inline code (`hub/store.py`, `lua/pools.lua`), resolved against the repository root,
  the package (livecommerce/) and the document's own folder; a bare file name (`users.py`) must be the name of
  one of our files somewhere; a path whose first folder is an installed third-party package
  (`aiohttp/web_ws.py`) is not ours, and URL paths (`/openapi.json`), hidden runtime folders (`.livecommerce/`)
  and what .gitignore names (`tests/web/artifacts/`) are not files of the repository: all skipped;
- dotted modules `livecommerce.x.y` (optionally followed by one attribute, `livecommerce.x.y.Name`).
Fenced code blocks (profiles, command lines) are checked for repository paths only.

    python tools/check_docs.py          # prints each missing path with file:line, exits 1 if any
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "livecommerce"
DOCUMENTS = ["docs/*.md", "README.md", "loadtests/README.md"]
TOP_LEVEL = ("livecommerce", "tests", "loadtests", "docs", "web", "tools")
EXTENSIONS = ("py", "lua", "md", "mako", "toml", "json", "html", "css", "mjs", "js", "svg", "cfg", "ini", "txt")

_EXT = "|".join(EXTENSIONS)
# A repository path in running text: not part of a longer path or URL (no `/`, `.` or word character before it).
_REPO_PATH = re.compile(rf"(?<![\w./:-])((?:{'|'.join(TOP_LEVEL)})/[\w./-]*\w)")
# A path or file name in inline code: `a/b.py`, `b.py`, `a/b/` (a folder), with an optional `:line` suffix.
_CODE_PATH = re.compile(rf"^(?:\./)?((?:[\w-][\w.-]*/)*[\w-][\w.-]*\.(?:{_EXT})|(?:[\w-][\w.-]*/)+)(?::\d+)?$")
_DOTTED = re.compile(r"(?<![\w./])(livecommerce(?:\.[A-Za-z_]\w*)+)")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Missing:
    document: str
    line: int
    name: str

    def __str__(self) -> str:
        return f"{self.document}:{self.line}: {self.name} does not exist"


def documents() -> list[Path]:
    found: list[Path] = []
    for pattern in DOCUMENTS:
        found += sorted(ROOT.glob(pattern))
    return found


def _lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, inside a fenced code block)."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        yield number, line, fenced


def _third_party(name: str) -> bool:
    """`aiohttp/web_ws.py`: the first folder is an importable package that is not ours."""
    first = name.split("/", 1)[0]
    if "/" not in name or first in TOP_LEVEL or (PACKAGE / first).exists() or not first.isidentifier():
        return False
    try:
        spec = importlib.util.find_spec(first)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    origin = Path(spec.origin or "").resolve()
    # Installed packages are not ours, even in a virtual environment inside the checkout (`make` puts .venv here).
    return "site-packages" in origin.parts or not origin.is_relative_to(ROOT)


def _ignored() -> set[str]:
    """Plain paths .gitignore names (no patterns): output folders that exist only after a run."""
    lines = (ROOT / ".gitignore").read_text().splitlines() if (ROOT / ".gitignore").exists() else []
    return {line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")}


def _ours(name: str) -> bool:
    """A bare file name: one of our files has it (`purchases.py` in a row about `api/`)."""
    return any(
        path.name == name and "node_modules" not in path.parts
        for top in TOP_LEVEL
        if (ROOT / top).is_dir()
        for path in (ROOT / top).rglob(name)
    )


def _exists(name: str, document: Path) -> bool:
    name = name.rstrip("/") or name
    if name.startswith(".") or name in _ignored():
        return True
    if "/" not in name and _ours(name):
        return True
    return any((base / name).exists() for base in (ROOT, PACKAGE, document.parent))


def _module_names(path: Path) -> set[str]:
    """The names a module defines at top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _module_exists(dotted: str) -> bool:
    """`livecommerce.hub.store` (a module or package), or `livecommerce.hub.store.RoomStore` (one of its names)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not module.is_file():
            continue
        rest = parts[cut:]
        if not rest:
            return True
        return len(rest) == 1 and rest[0] in _module_names(module)
    return False


def check_document(document: Path) -> list[Missing]:
    missing: list[Missing] = []
    where = str(document.relative_to(ROOT) if document.is_relative_to(ROOT) else document)
    for number, line, fenced in _lines(document.read_text()):
        names = {match.group(1).rstrip(".") for match in _REPO_PATH.finditer(line)}
        if not fenced:
            for span in _INLINE_CODE.findall(line):
                match = _CODE_PATH.match(span.strip())
                if match and not any(c in span for c in "*{}<>$"):
                    names.add(match.group(1))
        for name in sorted(names):
            if any(c in name for c in "*{}<>$") or _third_party(name):
                continue
            if not _exists(name, document):
                missing.append(Missing(where, number, name))
        for dotted in sorted({m.group(1).rstrip(".") for m in _DOTTED.finditer(line)}):
            if not _module_exists(dotted):
                missing.append(Missing(where, number, dotted))
    return missing


def main() -> int:
    missing = [m for document in documents() for m in check_document(document)]
    for item in missing:
        print(item)  # noqa: T201 - a command-line check
    if missing:
        print(f"{len(missing)} path(s) named in the docs do not exist")  # noqa: T201
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
