"""``taskderain models``: list the registered derainer presets and the weights shipped for them;
``--rain``: the rain presets and rain-zoo families that ``synth --rain``, ``eval --rain`` and the
training config's ``data.rain`` accept; ``--heads``: the task head types (``heads: {name: {type}}``)
the registered loss terms (``loss:``) and the training modes."""

from __future__ import annotations

import argparse

from ..models.pretrained import pretrained_tags
from ..models.registry import get_entry, list_derainers


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list derainer presets (--rain: rain presets and families)")
    parser.add_argument("--rain", action="store_true", help="list the rain presets and rain-zoo families instead")
    parser.add_argument("--heads", action="store_true", help="list the task head types, loss terms and training modes instead")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.heads:
        from ..losses.terms import get_loss_term, list_loss_terms
        from ..stages.head import head_class, list_heads

        for name in list_heads():
            cls = head_class(name)
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            print(f"{name:<14} {cls.task:<13} {doc}  options: {', '.join(cls.OPTIONS)}")
        print("\nloss terms (also: any head's name, or {fn: package.module:function, weight: w}):")
        for name in list_loss_terms():
            print(f"{name:<22} {((get_loss_term(name).__doc__ or '').strip().splitlines() or [''])[0]}")
        from ..train.config import MODE_STAGES
        from ..train.training_task import list_training_tasks, training_task_class

        print("\ntraining modes (train.mode; register_training_task adds yours):")
        for name in list_training_tasks():
            doc = MODE_STAGES[name]["doc"] if name in MODE_STAGES else (
                (training_task_class(name).__doc__ or "").strip().splitlines() or [""])[0]
            print(f"{name:<22} {doc}")
        return 0
    if args.rain:
        from ..rain import PRESET_INTENSITY
        from ..rain.zoo.registry import get_rain_entry, list_rains

        for name, intensity in PRESET_INTENSITY.items():
            print(f"{name:<14} streak preset (intensity {intensity})")
        for name in list_rains():
            print(f"{name:<14} {get_rain_entry(name).description}")
        print("\nspecs: NAME, NAME@INTENSITY (garg_nayar@0.5), NAME:{YAML mapping} (mix:{exclude: [raindrops]})")
        return 0
    for name in list_derainers():
        tags = pretrained_tags(name)
        shipped = f"  [--weights {', '.join(tags)}]" if tags else ""
        print(f"{name:<14} {get_entry(name).description}{shipped}")
    return 0
