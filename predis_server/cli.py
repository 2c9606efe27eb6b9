"""``predis-server [path/to/predis.conf] [--option value ...]``, like redis-server."""
from __future__ import annotations

import asyncio
import logging
import os
import sys

from .config import Config, InvalidValue

VERSION = "0.1.0"


def usage() -> str:
    return (
        "Usage: predis-server [/path/to/predis.conf] [options] [-]\n"
        "       predis-server - (read config from stdin)\n"
        "       predis-server -v or --version\n"
        "       predis-server -h or --help\n\n"
        "Examples:\n"
        "       predis-server (run the server with the default configuration)\n"
        "       predis-server conf/predis.conf\n"
        "       predis-server --port 7777\n"
        "       predis-server conf/predis.conf --loglevel verbose --store-backend gpu\n"
    )


def build_config(argv: list[str]) -> Config:
    config = Config()
    args = list(argv)
    if args and args[0] == "-":
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
            handle.write(sys.stdin.read())
        config.load_file(handle.name)
        config.path = None
        args = args[1:]
    elif args and not args[0].startswith("--"):
        config.load_file(args[0])
        args = args[1:]
    config.load_args(args)
    return config


def install_event_loop() -> str:
    """uvloop when installed, else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-v", "--version"):
        print(f"Predis server v={VERSION} (Redis protocol 7.2 compatible)")
        return 0
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv and argv[0] == "--example-conf":
        from .config import example_conf

        sys.stdout.write(example_conf())
        return 0
    try:
        config = build_config(argv)
    except (InvalidValue, OSError) as exc:
        print(f"\n*** FATAL CONFIG FILE ERROR (Predis {VERSION}) ***\n{exc}", file=sys.stderr)
        return 1
    from .logging_setup import setup_logging as setup_structured_logging

    setup_structured_logging(config)
    if config.pidfile:
        with open(config.pidfile, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    loop_name = install_event_loop()
    from .malloc_tuning import tune_malloc
    from .server import Server

    tune_malloc()

    server = Server(config)
    server.loop_name = loop_name
    try:
        return asyncio.run(server.serve())
    except OSError as exc:
        logging.getLogger("predis").error("could not start: %s", exc)
        return 1
    finally:
        if config.pidfile and os.path.exists(config.pidfile):
            os.unlink(config.pidfile)


if __name__ == "__main__":
    sys.exit(main())
