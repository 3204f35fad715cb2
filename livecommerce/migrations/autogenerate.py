"""`make migration m="add orders"`: write the next revision from the difference between models and head.

It compares against a scratch SQLite database migrated to head, so it needs no running database. Read the
generated file before committing it: autogenerate misses some changes (renames, data migrations).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from livecommerce.database import _alembic_config


def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        with engine.begin() as connection:
            config = _alembic_config(connection)
            command.upgrade(config, "head")
            head = ScriptDirectory.from_config(config).get_current_head() or "0000"
            command.revision(config, message=message, autogenerate=True, rev_id=f"{int(head) + 1:04d}")
        engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].strip():
        sys.exit('usage: make migration m="what the migration does"')
    main(sys.argv[1])
