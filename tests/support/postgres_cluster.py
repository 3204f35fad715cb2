"""A throwaway PostgreSQL cluster on a free loopback port, for tests that stop and start the database.

The suite's shared PostgreSQL must never be stopped, so a fault test starts its own: `initdb` into a temporary
directory, `pg_ctl start` on a free port (Unix socket in the same directory), and `stop`/`start` as the test
needs. `initdb` refuses to run as root, so under root every command runs as the `postgres` OS user. Without
the binaries the test is skipped with the reason, except under CI (`CI=true`), where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

__all__ = ["PostgresCluster", "postgres_cluster"]

PG_BIN = Path(os.environ.get("LIVECOMMERCE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"a throwaway PostgreSQL cluster is required under CI: {reason}")
    pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {reason} (set LIVECOMMERCE_TEST_PG_BIN)")


@dataclass
class PostgresCluster:
    port: int
    directory: Path
    runner: list[str]  # prefix that runs a command as the cluster's owner

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def _run(self, *args: str) -> None:
        # Output goes to a file, not a pipe: the server pg_ctl starts would hold a pipe open forever.
        output = self.directory / "commands.out"
        with output.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(*self.runner, *args, stdout=sink, stderr=sink)
            await process.wait()
        if process.returncode != 0:
            log = (self.directory / "log").read_text() if (self.directory / "log").exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} exited with {process.returncode}: {output.read_text()}\n{log}")

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        await self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-o", options, "-l",
            str(self.directory / "log"), "-w", "-t", "30", "start",
        )  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        await self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")


@asynccontextmanager
async def postgres_cluster() -> AsyncIterator[PostgresCluster]:
    """A running cluster (trust auth, user `postgres`), stopped and deleted afterwards whatever happens."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        _unavailable(f"no initdb/pg_ctl in {PG_BIN}")
    runner: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="lc-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(directory)
            _unavailable("running as root and there is no `postgres` user to run initdb as")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        runner = ["runuser", "-u", "postgres", "--"]
    cluster = PostgresCluster(free_port(), directory, runner)
    try:
        await cluster._run(
            str(PG_BIN / "initdb"), "-D", str(directory / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8",
        )  # fmt: skip
        await cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped (or never started)
            await cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
