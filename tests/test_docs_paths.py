"""Every file or module path named in docs/, README.md and loadtests/README.md exists (tools/check_docs.py)."""

from __future__ import annotations

from pathlib import Path

from tools.check_docs import check_document, documents


def test_every_path_the_docs_name_exists() -> None:
    scanned = documents()
    assert {"docs/architecture.md", "README.md", "loadtests/README.md"} <= {
        str(d.relative_to(Path(__file__).parents[1])) for d in scanned
    }
    missing = [str(m) for document in scanned for m in check_document(document)]
    assert not missing, "\n".join(missing)


def test_the_check_names_what_is_missing(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text(
        "| `cli.py` | `lua/pools.lua` | `settings.py` | livecommerce/app.py | `livecommerce.settings` |\n"
        "tests/test_smoke.py, `livecommerce.settings.Settings`, `/openapi.json`, `aiohttp/web_ws.py`\n"
        "| `hub/nowhere.py` | `gone.py` | livecommerce/hub/gone.py | `livecommerce.hub.gone` |\n"
        "`livecommerce.settings.NoSuchName` and tests/nowhere/\n"
        "```\n"
        "loadtests/gone.py in a command line\n"
        "```\n"
    )
    missing = [(m.line, m.name) for m in check_document(document)]
    assert sorted(missing) == [
        (3, "gone.py"),
        (3, "hub/nowhere.py"),
        (3, "livecommerce.hub.gone"),
        (3, "livecommerce/hub/gone.py"),
        (4, "livecommerce.settings.NoSuchName"),
        (4, "tests/nowhere"),
        (6, "loadtests/gone.py"),
    ]
