"""Derainer speed on this machine: median forward time in fp32 and bf16, conv GMAC, GFLOP/s, peak RSS.

For every preset (random weights, seeded input, B=1, eval mode, ``torch.inference_mode``):

- median wall time of ``model(x)`` in float32 and under ``torch.autocast("cpu", torch.bfloat16)``,
  at 320x480 (HxW) and, for PReNet, also at 321x481 (the 481x321 Rain100 frames);
- conv MACs of the computation actually executed and of the naive graph (MSPFN's ConvLSTM cells
  convolving their all-zero initial h); transposed convs count per input pixel;
- achieved GFLOP/s = 2 · MAC / time, next to a same-run 2048x2048 ``torch.mm`` rate per dtype;
- PSNR (dB, peak 1, unclamped outputs) of the bf16 output against the fp32 one;
- peak RSS of a fresh worker process per (preset, size): after the bf16 runs, then after fp32.

Timings on a shared 2-core machine are noisy (two OpenMP threads stall badly when another process
holds a core): compare medians, re-run when the matmul rates at the start and end disagree. No
threshold is asserted.

``--tune-malloc`` runs the workers with glibc's mmap disabled for large blocks
(``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:...``). By default every fp32 activation above 32 MB
(e.g. 64 channels at 320x480) is a fresh mmap whose page faults can cost as much as the op that
fills it; the option shows what an application could gain by tuning its allocator.

Usage::

    python benchmarks/derain_speed.py --presets mspfn_m17n1 mspfn_lite prenet --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "derain_speed.json"
SIZES: Dict[str, List[Tuple[int, int]]] = {"prenet": [(320, 480), (321, 481)]}
DEFAULT_SIZE = (320, 480)


def median_time(fn, repeats: int, warmup: int, min_seconds: float = 0.0) -> Tuple[float, List[float]]:
    """Median seconds of ``fn()`` over at least ``repeats`` calls (more, up to 100, until ``min_seconds``
    of timed calls) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < 100):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 7) -> float:
    """Rate of an n x n ``torch.mm`` in GFLOP/s (2 n³ FLOPs)."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(dtype) for _ in range(2))
    with torch.inference_mode():
        seconds, _ = median_time(lambda: torch.mm(a, b), repeats, warmup=2)
    return 2 * n ** 3 / seconds / 1e9


def conv_macs(name: str, size: Tuple[int, int]) -> Dict[str, float]:
    """Conv / transposed-conv MACs of one forward, executed and naive, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from taskderain.models import create_derainer
    from taskderain.models.layers import ConvLSTMCell

    with torch.device("meta"):
        model = create_derainer(name).eval()
    x = torch.empty(1, 3, *size, device="meta")
    out = {}
    for label, skip in (("gmac", True), ("gmac_naive", False)):
        for cell in model.modules():
            if isinstance(cell, ConvLSTMCell):
                cell.skip_zero_state = skip
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
        out[label] = counter.get_total_flops() / 2 / 1e9
    return out


def onednn_bf16_kernels() -> List[str]:
    """oneDNN implementations chosen for a bf16 autocast conv and transposed conv (ONEDNN_VERBOSE)."""
    code = ("import torch\n"
            "c, d = torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ConvTranspose2d(64, 64, 3, 2, 1)\n"
            "x = torch.rand(1, 64, 32, 32).contiguous(memory_format=torch.channels_last)\n"
            "with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16): c(x); d(x)\n")
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    kernels = []
    for line in proc.stdout.splitlines():
        parts = line.split(",")
        kind = next((p for p in parts if p in ("convolution", "deconvolution")), None)
        if line.startswith("onednn_verbose") and "exec" in parts and kind and "bf16" in line:
            kernels.append(f"{kind}:{parts[parts.index(kind) + 1]}")
    return sorted(set(kernels))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of a against b, peak 1 (images on [0, 1])."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def run_worker(name: str, size: Tuple[int, int], repeats: int, warmup: int, seed: int,
               threads: int | None = None, min_seconds: float = 0.0) -> Dict[str, Any]:
    """Time one preset at one size in this (fresh) process; bf16 first so the RSS peaks separate."""
    from taskderain.models import create_derainer

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = create_derainer(name).eval()
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    rss_mb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731 (KiB on Linux)
    result: Dict[str, Any] = {"rss_mb_model": rss_mb()}
    outputs = {}
    for mode in ("bf16", "fp32"):
        def forward():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                outputs[mode] = model(x)

        seconds, times = median_time(forward, repeats, warmup, min_seconds)
        result[f"{mode}_s"], result[f"{mode}_times_s"] = seconds, times
        result[f"rss_mb_after_{mode}"] = rss_mb()
    result["bf16_psnr_db"] = psnr(outputs["bf16"], outputs["fp32"])
    result["bf16_max_abs_diff"] = float((outputs["bf16"] - outputs["fp32"]).abs().max())
    return result


TUNED_MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"


def run_in_subprocess(name: str, size: Tuple[int, int], args: argparse.Namespace) -> Dict[str, Any]:
    spec = json.dumps({"name": name, "size": list(size), "repeats": args.repeats, "warmup": args.warmup,
                       "seed": args.seed, "threads": args.threads, "min_seconds": args.min_seconds})
    env = {**os.environ, **({"GLIBC_TUNABLES": TUNED_MALLOC} if args.tune_malloc else {})}
    proc = subprocess.run([sys.executable, __file__, "--worker", spec], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {name} {size} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> Dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.is_available(), "python": platform.python_version(),
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def print_table(rows: Sequence[Dict[str, Any]], mm: Dict[str, float]) -> None:
    head = (f"{'preset':<12} {'HxW':>8} {'params':>11} {'GMAC':>7} {'naive':>7} {'fp32 s':>7} {'bf16 s':>7} "
            f"{'fp32 GF/s':>9} {'bf16 GF/s':>9} {'bf16 PSNR':>9} {'RSS MB':>14}")
    print(head)
    print("-" * len(head))
    for r in rows:
        rss = f"{r['rss_mb_model']:.0f}/{r['rss_mb_after_bf16']:.0f}/{r['rss_mb_after_fp32']:.0f}"
        print(f"{r['preset']:<12} {r['size']:>8} {r['params']:>11,} {r['gmac']:>7.1f} {r['gmac_naive']:>7.1f} "
              f"{r['fp32_s']:>7.3f} {r['bf16_s']:>7.3f} {r['fp32_gflops']:>9.1f} {r['bf16_gflops']:>9.1f} "
              f"{r['bf16_psnr_db']:>9.1f} {rss:>14}")
    print(f"\n2048x2048 torch.mm: fp32 {mm['fp32_gflops']:.0f} GFLOP/s, bf16 {mm['bf16_gflops']:.0f} GFLOP/s "
          f"(x{mm['bf16_over_fp32']:.2f}); at the end: fp32 {mm['fp32_gflops_end']:.0f}, bf16 {mm['bf16_gflops_end']:.0f}")
    print("GMAC: convs as executed / naive graph (x2 = FLOP); PSNR: bf16 vs fp32 output, dB;\n"
          "RSS: peak of the worker with the model built / after the bf16 runs / after the fp32 runs.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", help="derainer presets (default: all but identity)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per dtype (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per dtype first")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="keep timing fast presets until this many seconds per dtype (max 100 runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads in the workers (default: torch's choice)")
    parser.add_argument("--tune-malloc", action="store_true", help="workers run without mmap for large blocks")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output file (default {DEFAULT_JSON})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # child process: one preset at one size, result as a JSON line
        spec = json.loads(args.worker)
        print(json.dumps(run_worker(spec["name"], tuple(spec["size"]), spec["repeats"], spec["warmup"],
                                    spec["seed"], spec["threads"], spec["min_seconds"])))
        return 0

    from taskderain.models import create_derainer, list_derainers

    names = args.presets or [n for n in list_derainers() if n != "identity"]
    unknown = sorted(set(names) - set(list_derainers()))
    if unknown:
        parser.error(f"unknown presets {unknown}; available: {', '.join(list_derainers())}")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    info["malloc"] = f"GLIBC_TUNABLES={TUNED_MALLOC}" if args.tune_malloc else "default"
    mm = {"fp32_gflops": matmul_gflops(torch.float32), "bf16_gflops": matmul_gflops(torch.bfloat16)}
    mm["bf16_over_fp32"] = mm["bf16_gflops"] / mm["fp32_gflops"]
    info["onednn_bf16_kernels"] = onednn_bf16_kernels()
    print(f"{info['cpu']} | {info['torch_threads']} threads | torch {info['torch']} | {info['cpu_capability']} | "
          f"malloc {info['malloc']} | load {info['load_avg_1min']:.2f}\n"
          f"oneDNN bf16 kernels: {', '.join(info['onednn_bf16_kernels']) or 'none (bf16 convs not on oneDNN)'}")

    rows = []
    for name in names:
        with torch.device("meta"):
            params = sum(p.numel() for p in create_derainer(name).parameters())
        for size in SIZES.get(name, [DEFAULT_SIZE]):
            row: Dict[str, Any] = {"preset": name, "size": f"{size[0]}x{size[1]}", "params": params,
                                   **conv_macs(name, size), **run_in_subprocess(name, size, args)}
            row["fp32_gflops"] = 2 * row["gmac"] / row["fp32_s"]
            row["bf16_gflops"] = 2 * row["gmac"] / row["bf16_s"]
            rows.append(row)
            print(f"  {name} {row['size']}: fp32 {row['fp32_s']:.3f} s, bf16 {row['bf16_s']:.3f} s", flush=True)

    mm["fp32_gflops_end"], mm["bf16_gflops_end"] = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print()
    print_table(rows, mm)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "matmul_2048": mm, "repeats": args.repeats, "warmup": args.warmup,
              "min_seconds": args.min_seconds, "batch": 1, "results": rows}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
