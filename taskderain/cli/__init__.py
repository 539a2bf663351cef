"""The ``taskderain`` command line: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from .. import __version__
from .common import CLIError

_COMMANDS = ("run", "demo", "train", "derain", "eval_derain", "eval", "synth", "models")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="taskderain", description="Vision-task-driven image deraining.")
    parser.add_argument("--version", action="version", version=f"taskderain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``taskderain`` console script; returns the exit status.

    User errors (missing or bad files, unknown names, bad options) print one line and exit 2;
    set ``TASKDERAIN_DEBUG=1`` for the traceback.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (ultralytics style) for commands that take them
        if not hasattr(args, "overrides") or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (OSError, KeyError, ValueError, CLIError) as exc:  # user-facing: bad files, names, options
        if os.environ.get("TASKDERAIN_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"taskderain {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"taskderain {args.command}: interrupted; finished outputs are complete and kept", file=sys.stderr)
        return 130
