"""``taskderain train CONFIG [key=value ...] [--resume]``: train a derainer from a YAML.

CONFIG is a training YAML (see :mod:`taskderain.train.config` for every key and its default);
``key=value`` overrides follow it (``data.batch=4 steps=1000``). The run folder ``out`` gets
``last.pt`` / ``best.pt`` (derainer checkpoints that ``--weights`` and ``load_derainer`` accept),
``log.csv`` and ``config.yaml``. A killed run continues exactly with ``--resume`` (or ``resume=true``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train from a YAML: restoration, cascade, joint, detector_on_rain, segmenter",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("config", type=Path, metavar="CONFIG", help="training YAML")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.batch=4")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUT from last.pt")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    from ..train import train
    from .common import CLIError

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise CLIError(f"override {bad[0]!r} is not key=value (e.g. data.batch=4)")
    overrides = list(args.overrides) + (["resume=true"] if args.resume else [])
    result = train(args.config, overrides)
    print(json.dumps(result, indent=2))
    return 0
