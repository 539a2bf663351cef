"""The deraining papers' table: PSNR-Y / SSIM-Y per paired dataset × derainer.

For every DATA_ROOT (any layout ``taskderain eval-derain`` recognises: Rain100L/H, Rain1400,
input/target, ...) and every derainer (``identity`` = the rainy input, always included;
``NAME:WEIGHTS``; or a taskderain checkpoint path), scores the 8-bit outputs against the clean
images with :func:`taskderain.evaluation.evaluate_derainer` under the papers' protocol (MATLAB Y,
rounded; SSIM of Wang et al.). Prints a markdown table and writes JSON (per-image rows included).

Reference (docs/evaluation.md): Rain100L test, all 100 pairs — rainy input 26.898 dB,
PReNet (official Rain100L weights) 37.608 dB.

Usage::

    python benchmarks/derain_quality.py ../shared/data/rain100l \\
        --derainers identity,prenet:../shared/weights/prenet6_rain100l.pth,prenet:../shared/weights/prenet6_rain100h.pth
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "derain_quality.json"


def quality_table(rows: List[Dict[str, Any]], datasets: Sequence[str], derainers: Sequence[str]) -> str:
    """Markdown: one row per derainer, PSNR-Y (dB) / SSIM-Y per dataset."""
    by = {(r["dataset"], r["derainer"]): r for r in rows}
    head = ["derainer"] + [f"{Path(d).name} PSNR-Y / SSIM-Y (n)" for d in datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in derainers:
        cells = [name]
        for d in datasets:
            r = by.get((d, name))
            cells.append("—" if r is None else f"{r['psnr_y']:.3f} / {r['ssim_y']:.4f} ({r['n']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from taskderain.data import PairedRainDataset
    from taskderain.evaluation import evaluate_derainer, parse_derainers
    from taskderain.metrics import PROTOCOL

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_roots", nargs="+", metavar="DATA_ROOT", help="paired rain datasets")
    parser.add_argument("--derainers", default="identity",
                        help="NAME, NAME:WEIGHTS or checkpoint paths, comma-separated (identity always included)")
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of each dataset")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output file (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    datasets = {root: PairedRainDataset(root, limit=args.limit) for root in args.data_roots}  # checks layouts first
    specs = parse_derainers(args.derainers)
    rows: List[Dict[str, Any]] = []
    for root, dataset in datasets.items():
        for spec in specs:
            start = time.perf_counter()
            result = evaluate_derainer(spec.model, dataset, progress=False)
            seconds = time.perf_counter() - start
            rows.append({"dataset": root, "derainer": spec.label, **spec.describe(), "n": result["n"],
                         "psnr_y": result["psnr_y"], "ssim_y": result["ssim_y"], "seconds": seconds,
                         "per_image": result["per_image"]})
            print(f"{Path(root).name:>12} {spec.label:>28}: PSNR-Y {result['psnr_y']:.3f} dB  "
                  f"SSIM-Y {result['ssim_y']:.4f}  ({result['n']} pairs, {seconds:.1f} s)", file=sys.stderr)
    table = quality_table(rows, list(datasets), [s.label for s in specs])
    print(table)
    print(f"\nprotocol: {PROTOCOL}; outputs rounded to 8 bits; fp32, whole images, CPU threads "
          f"{torch.get_num_threads()}")
    payload = {"protocol": PROTOCOL, "limit": args.limit, "torch": str(torch.__version__),
               "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "table": table, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from taskderain.imageio import write_bytes_atomic

    write_bytes_atomic(args.json, json.dumps(payload, indent=2).encode())
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
