"""The ``computethis`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from client_sdk.commands import add_commands, run_client_command
from gateway.config import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_BUNDLE,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_OUTPUTS,
    DEFAULT_MAX_QUEUED,
    DEFAULT_RESULT_TTL,
    GatewayConfig,
    TlsFiles,
)
from scheduler.config import DEFAULT_ALLOWED_FAILURES

DEFAULT_SAVE_DIR = os.environ.get("COMPUTETHIS_SAVE_DIR", "save")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="computethis", description="Run Python functions on a Dask cluster over HTTP."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run workers, scheduler and gateway in one process")
    up.add_argument(
        "--workers",
        type=_positive,
        default=os.cpu_count() or 1,
        help="worker processes, one thread each (default: CPU count)",
    )
    _gateway_options(up)
    _allowed_failures_option(up)

    gateway = commands.add_parser("gateway", help="run the HTTP gateway against a scheduler")
    gateway.add_argument(
        "--scheduler",
        required=True,
        help="scheduler address, tcp://HOST:8786 (tls:// with Dask TLS)",
    )
    _gateway_options(gateway)

    scheduler = commands.add_parser("scheduler", help="run a Dask scheduler")
    scheduler.add_argument("--host", default="0.0.0.0", help="interface to listen on")
    scheduler.add_argument("--port", type=int, default=8786, help="port (default 8786)")
    _allowed_failures_option(scheduler)

    worker = commands.add_parser("worker", help="run Dask workers connected to a scheduler")
    worker.add_argument(
        "scheduler_address",
        metavar="SCHEDULER_ADDRESS",
        help="scheduler address, tcp://HOST:8786 (tls:// with Dask TLS)",
    )
    worker.add_argument(
        "--nworkers",
        type=_positive,
        default=1,
        help="worker processes, one thread each (default 1)",
    )
    worker.add_argument("--name", default=None, help="worker name (suffixed -0, -1... if several)")
    worker.add_argument("--host", default=None, help="interface the workers listen on")
    token = commands.add_parser("token", help="manage tenants' API tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a tenant and print its new token")
    create.add_argument("name", metavar="NAME")
    actions.add_parser("list", help="list tenants")
    revoke = actions.add_parser("revoke", help="revoke a tenant's token")
    revoke.add_argument("name", metavar="NAME")
    for action in (create, actions.choices["list"], revoke):
        action.add_argument(
            "--save-dir", default=DEFAULT_SAVE_DIR, help="the gateway's save dir (default ./save)"
        )
    add_commands(commands)
    return parser


def run_token_command(args: argparse.Namespace) -> int:
    """``computethis token create|list|revoke``: edits the tenants table of a save dir."""
    from gateway.tokens import TokenError, TokenStore

    tokens = TokenStore(Path(args.save_dir) / "jobs.sqlite3")
    try:
        if args.action == "create":
            print(tokens.create(args.name))
        elif args.action == "list":
            for tenant in tokens.list():
                print(tenant["name"])
        else:
            tokens.revoke(args.name)
            print(f"revoked {args.name}")
    except TokenError as exc:
        print(f"computethis token: {exc}", file=sys.stderr)
        return 1
    return 0


def _gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve HTTP on")
    parser.add_argument("--port", type=int, default=5000, help="HTTP port (default 5000)")
    parser.add_argument(
        "--save-dir",
        default=DEFAULT_SAVE_DIR,
        help="where jobs and results are stored (default ./save)",
    )
    parser.add_argument(
        "--token", default=None, help="API token (default: $COMPUTETHIS_TOKEN, else generated)"
    )
    parser.add_argument(
        "--max-body",
        type=_positive,
        default=DEFAULT_MAX_BODY,
        help="largest request body in bytes (default 64 MiB)",
    )
    parser.add_argument(
        "--max-bundle",
        type=_positive,
        default=DEFAULT_MAX_BUNDLE,
        help="largest uploaded folder (its tar) in bytes (default 1 GiB)",
    )
    parser.add_argument(
        "--max-outputs",
        type=_positive,
        default=DEFAULT_MAX_OUTPUTS,
        help="most bytes of output files one folder job may keep; more fail the job "
        "(default 1 GiB)",
    )
    parser.add_argument(
        "--result-ttl",
        type=_seconds,
        default=DEFAULT_RESULT_TTL,
        help="seconds a finished job's result is kept before it expires (default 7 days)",
    )
    parser.add_argument(
        "--max-queued",
        type=_positive,
        default=DEFAULT_MAX_QUEUED,
        help="queued + running jobs allowed per tenant; more are answered 429 "
        f"(default {DEFAULT_MAX_QUEUED})",
    )
    parser.add_argument(
        "--header-timeout",
        type=_seconds,
        default=DEFAULT_HEADER_TIMEOUT,
        help="seconds a request's headers (and a body up to 64 KiB) have to arrive, from "
        f"its first byte; slower ones are answered 408 (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-connections-per-address",
        type=_positive,
        default=DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        help="open connections allowed per client address; more are answered 503 "
        f"(default {DEFAULT_MAX_CONNECTIONS_PER_ADDRESS})",
    )
    parser.add_argument(
        "--certfile", default=None, help="serve HTTPS with this PEM certificate (chain)"
    )
    parser.add_argument(
        "--keyfile", default=None, help="the certificate's PEM private key (if not in --certfile)"
    )


def _allowed_failures_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allowed-failures",
        type=_positive,
        default=None,
        help="times a job may kill its worker before it fails "
        f"(default {DEFAULT_ALLOWED_FAILURES})",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def gateway_config(args: argparse.Namespace) -> tuple[GatewayConfig, bool]:
    """The gateway's settings from parsed options; also whether the token was generated."""
    from gateway.server import resolve_token

    token, generated = resolve_token(args.token)
    config = GatewayConfig(
        save_dir=Path(args.save_dir),
        token=token,
        max_body=args.max_body,
        max_bundle=args.max_bundle,
        max_outputs=args.max_outputs,
        result_ttl=args.result_ttl,
        max_queued=args.max_queued,
        header_timeout=args.header_timeout,
        max_connections_per_address=args.max_connections_per_address,
    )
    return config, generated


def tls_files(args: argparse.Namespace) -> TlsFiles | None:
    """``--certfile``/``--keyfile`` checked up front, so a typo fails before anything starts."""
    if args.certfile is None:
        if args.keyfile is not None:
            sys.exit("computethis: --keyfile needs --certfile")
        return None
    for path in (args.certfile, args.keyfile):
        if path is not None and not Path(path).is_file():
            sys.exit(f"computethis: no such file: {path}")
    return TlsFiles(certfile=args.certfile, keyfile=args.keyfile)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(args)
    except OSError as exc:
        from gateway.server import PortInUse

        if isinstance(exc, PortInUse):
            sys.exit(f"computethis {args.command}: {exc}")
        raise


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command in the foreground; its exit code."""
    code = run_client_command(args)
    if code is not None:
        return code
    if args.command == "up":
        from gateway.embedded import run_embedded

        config, generated = gateway_config(args)
        run_embedded(
            config,
            workers=args.workers,
            host=args.host,
            port=args.port,
            token_generated=generated,
            allowed_failures=args.allowed_failures,
            tls=tls_files(args),
        )
    elif args.command == "gateway":
        from gateway.server import run_gateway

        config, generated = gateway_config(args)
        run_gateway(
            args.scheduler,
            config,
            host=args.host,
            port=args.port,
            token_generated=generated,
            tls=tls_files(args),
        )
    elif args.command == "scheduler":
        from scheduler.main import main as scheduler_main

        scheduler_main(args.host, args.port, args.allowed_failures)
    elif args.command == "worker":
        from worker.main import main as worker_main

        worker_main(args.scheduler_address, args.nworkers, args.name, args.host)
    elif args.command == "token":
        return run_token_command(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
