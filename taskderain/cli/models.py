"""``taskderain models``: list the registered derainer presets and the weights shipped for them."""

from __future__ import annotations

import argparse

from ..models.pretrained import pretrained_tags
from ..models.registry import get_entry, list_derainers


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list derainer presets")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for name in list_derainers():
        tags = pretrained_tags(name)
        shipped = f"  [--weights {', '.join(tags)}]" if tags else ""
        print(f"{name:<14} {get_entry(name).description}{shipped}")
    return 0
