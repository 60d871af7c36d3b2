"""The ``computethis`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway.config import DEFAULT_MAX_BODY

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

    gateway = commands.add_parser("gateway", help="run the HTTP gateway against a scheduler")
    gateway.add_argument("--scheduler", required=True, help="scheduler address, tcp://HOST:8786")
    _gateway_options(gateway)

    scheduler = commands.add_parser("scheduler", help="run a Dask scheduler")
    scheduler.add_argument("--host", default="0.0.0.0", help="interface to listen on")
    scheduler.add_argument("--port", type=int, default=8786, help="port (default 8786)")

    worker = commands.add_parser("worker", help="run Dask workers connected to a scheduler")
    worker.add_argument(
        "scheduler_address", metavar="SCHEDULER_ADDRESS", help="scheduler address, tcp://HOST:8786"
    )
    worker.add_argument(
        "--nworkers",
        type=_positive,
        default=1,
        help="worker processes, one thread each (default 1)",
    )
    worker.add_argument("--name", default=None, help="worker name (suffixed -0, -1... if several)")
    worker.add_argument("--host", default=None, help="interface the workers listen on")
    return parser


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        from gateway.embedded import run_embedded

        run_embedded(
            workers=args.workers,
            host=args.host,
            port=args.port,
            save_dir=args.save_dir,
            token=args.token,
            max_body=args.max_body,
        )
    elif args.command == "gateway":
        from gateway.server import run_gateway

        run_gateway(
            args.scheduler,
            host=args.host,
            port=args.port,
            save_dir=args.save_dir,
            token=args.token,
            max_body=args.max_body,
        )
    elif args.command == "scheduler":
        from scheduler.main import main as scheduler_main

        scheduler_main(args.host, args.port)
    elif args.command == "worker":
        from worker.main import main as worker_main

        worker_main(args.scheduler_address, args.nworkers, args.name, args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
