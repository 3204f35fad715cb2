"""The `livecommerce` command: serve, worker, migrate, create-user, token.

Operator mistakes (bad settings, unreachable services, a port in use) end with one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import uvloop

from livecommerce import __version__
from livecommerce.errors import ClientError, ConfigError
from livecommerce.logs import configure
from livecommerce.models import Role
from livecommerce.settings import Settings, add_arguments, load_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecommerce", description="Real-time server for live-stream shopping.")
    parser.add_argument("--version", action="version", version=f"livecommerce {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a web process (HTTP API and websocket hub)")
    add_arguments(serve)
    serve.add_argument("--open", action="store_true", help="open the demo page in a browser once serving")

    worker = commands.add_parser("worker", help="run the background worker")
    add_arguments(worker)

    migrate = commands.add_parser("migrate", help="bring the database schema to the newest revision")
    add_arguments(migrate)

    create_user = commands.add_parser("create-user", help="create a user (e.g. the first admin)")
    add_arguments(create_user)
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--name", required=True, help="display name")
    create_user.add_argument("--role", required=True, choices=[role.value for role in Role])
    create_user.add_argument("--brand-id", type=int, default=None, help="the brand of a brand_staff user")

    token = commands.add_parser("token", help="print a bearer token for a user")
    add_arguments(token)
    token.add_argument("email")
    return parser


def _run(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro_factory())


@contextlib.contextmanager
def _redis_for(settings: Settings) -> Iterator[str]:
    """The Redis URL to use: the configured one, or the data directory's embedded Redis."""
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    from livecommerce.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(settings.data_dir) as embedded:
        yield embedded.url


def _command(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "serve":
        from livecommerce.server import serve

        with _redis_for(settings) as url:
            _run(lambda: serve(settings, url, open_browser=args.open))
    elif args.command == "worker":
        from livecommerce.worker import run_worker

        with _redis_for(settings) as url:
            _run(lambda: run_worker(settings, url))
    else:
        from livecommerce import admin

        if args.command == "migrate":
            _run(lambda: admin.migrate_only(settings))
        elif args.command == "create-user":
            role = Role(args.role)
            _run(lambda: admin.create_user(settings, args.email, args.name, role, args.brand_id))
        elif args.command == "token":
            _run(lambda: admin.print_token(settings, args.email))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    flags = {name: value for name, value in vars(args).items() if isinstance(value, str)}
    try:
        settings = load_settings(flags=flags)
        configure(settings.log_level)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _command(args, settings)
    except ConfigError as exc:
        print(f"livecommerce: error: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"livecommerce: error: {exc.detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
