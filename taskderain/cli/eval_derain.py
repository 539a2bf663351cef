"""``taskderain eval-derain DATA_ROOT --model NAME``: mean PSNR/SSIM (Y) on a paired rain set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_model_args, ensure_writable_dir, load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval-derain", help="PSNR/SSIM (Y, papers' protocol) of a derainer on paired data",
                            description="Score a derainer on a paired rain dataset (Rain100L/H, Rain1400, "
                                        "input/target, ...). `--model identity` scores the rainy input.")
    parser.add_argument("data_root", type=Path, metavar="DATA_ROOT", help="paired dataset folder")
    add_model_args(parser)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--channel", choices=("y", "rgb"), default="y", help="score Y (papers, default) or RGB")
    parser.add_argument("--float-y", action="store_true", help="do not round Y to integers (MATLAB rounds)")
    parser.add_argument("--json", type=Path, default=None, help="write the results (with per-image rows) here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import PairedRainDataset
    from ..evaluation import evaluate_derainer
    from ..imageio import write_bytes_atomic

    if args.json is not None:  # before any work
        ensure_writable_dir(args.json.parent)
    dataset = PairedRainDataset(args.data_root, limit=args.limit)
    model, dtype = load_model(args)
    result = evaluate_derainer(model, dataset, tile=args.tile, overlap=args.overlap, dtype=dtype,
                               channel=args.channel, round_y=not args.float_y, max_pixels=args.max_pixels)
    result = {"model": args.model, "weights": args.weights, "data_root": str(args.data_root),
              "precision": "fp32" if dtype is None else str(dtype).replace("torch.", ""), **result}
    tag = args.channel.upper()
    print(f"{args.model} on {args.data_root} ({result['n']} pairs): PSNR-{tag} "
          f"{result['psnr_' + args.channel]:.3f} dB  SSIM-{tag} {result['ssim_' + args.channel]:.4f}\n"
          f"protocol: {result['protocol']}")
    if args.json is not None:
        write_bytes_atomic(args.json, json.dumps(result, indent=2).encode())
        print(f"wrote {args.json}")
    return 0
