"""``taskderain models``: list the registered derainer presets."""

from __future__ import annotations

import argparse

from ..models.registry import get_entry, list_derainers


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list derainer presets")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for name in list_derainers():
        print(f"{name:<14} {get_entry(name).description}")
    return 0
