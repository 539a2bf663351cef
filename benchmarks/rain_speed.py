"""Rain synthesis throughput: images/s per preset, NumPy path and torch path (CPU, CUDA if present).

Each figure is the median over ``--runs`` timed runs of ``--images`` images (after ``--warmup``
seconds of untimed runs and one more warm-up run per cell); every image gets its own seed, as in a data pipeline. Other processes on the machine add
noise: compare medians, not single runs.

    python benchmarks/rain_speed.py                      # 640x480, all presets
    python benchmarks/rain_speed.py --size 1280x720 --runs 7 --json benchmarks/results/rain_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
import torch

from taskderain.rain import add_rain, add_rain_torch, image_seed, list_presets, rain_params

REPO = Path(__file__).resolve().parents[1]


def test_image(height: int, width: int) -> np.ndarray:
    """A smooth colourful (H, W, 3) uint8 image (content barely matters for speed)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(height // 32, 2), max(width // 32, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def median_rate(run: Callable[[int], int], runs: int) -> Dict[str, float]:
    """Images/s of ``run(k)`` (which returns the images it made): median, min, max over runs."""
    run(-1)
    rates = []
    for k in range(runs):
        start = time.perf_counter()
        n = run(k)
        rates.append(n / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def bench_numpy(image: np.ndarray, preset: str, images: int, runs: int) -> Dict[str, float]:
    params = rain_params(preset)

    def run(k: int) -> int:
        for i in range(images):
            add_rain(image, params, image_seed(f"{k}-{i}", 0))
        return images

    return median_rate(run, runs)


def bench_torch(image: np.ndarray, preset: str, images: int, runs: int, batch: int, device: str) -> Dict[str, float]:
    params = rain_params(preset)
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(device)
    x = x[None].expand(batch, -1, -1, -1).contiguous()
    steps = max(1, images // batch)

    def run(k: int) -> int:
        for s in range(steps):
            add_rain_torch(x, params, [image_seed(f"{k}-{s}-{i}", 0) for i in range(batch)])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return steps * batch

    return median_rate(run, runs)


def warmup(image: np.ndarray, presets: List[str], devices: List[str], seconds: float) -> None:
    """Run every path untimed for a while: the first images are slow (allocations, clocks, caches)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for preset in presets:
            bench_numpy(image, preset, 2, 1)
            for device in devices:
                bench_torch(image, preset, 2, 1, 2, device)


def main(argv: Optional[List[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--presets", default=",".join(list_presets()))
    parser.add_argument("--images", type=int, default=20, help="images per timed run (default 20)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported (default 5)")
    parser.add_argument("--batch", type=int, default=8, help="torch batch size (default 8)")
    parser.add_argument("--devices", default=None, help="torch devices, comma-separated (default: cpu, plus cuda if available)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of untimed synthesis before measuring (default 3)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "rain_speed.json")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    image = test_image(height, width)
    warmup(image, args.presets.split(","), devices, args.warmup)
    rows = []
    print(f"rain synthesis, {width}x{height}, images/s (median of {args.runs} runs; min-max)")
    header = f"{'preset':<8} {'numpy':>20}" + "".join(f" {'torch-' + d + ' b' + str(args.batch):>22}" for d in devices)
    print(header)
    for preset in args.presets.split(","):
        row = {"preset": preset, "numpy": bench_numpy(image, preset, args.images, args.runs)}
        for device in devices:
            row[f"torch_{device}"] = bench_torch(image, preset, args.images, args.runs, args.batch, device)
        rows.append(row)
        cells = [row["numpy"]] + [row[f"torch_{d}"] for d in devices]
        print(f"{preset:<8} " + " ".join(f"{c['median']:>8.1f} ({c['min']:.0f}-{c['max']:.0f})".rjust(20 if i == 0 else 22) for i, c in enumerate(cells)))
    result = {
        "size": [width, height],
        "unit": "images/s",
        "statistic": f"median of {args.runs} runs of {args.images} images",
        "torch_batch": args.batch,
        "rows": rows,
        "environment": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cv2_threads": cv2.getNumThreads(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "torch": torch.__version__,
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
