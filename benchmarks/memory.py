"""Peak memory (RSS) and wall time of the commands on one large photo, each in a fresh process.

Makes a 6000x4000 JPEG (ultralytics' ``bus.jpg`` enlarged, quality 90) and runs, as a user would
and each in its own ``python -m taskderain`` process, measured with ``os.wait4``'s ``ru_maxrss``:

- ``run CONFIG photo.jpg`` (default: pipelines/mspfn-yolov8n.yaml with the shipped MSPFN-lite
  weights; images above ``max_pixels`` are tiled automatically, 512 px tiles);
- ``derain photo.jpg --model mspfn_lite --weights default`` (the same tiling policy);
- with ``--untiled``, also ``run ... max_pixels=0`` (one whole-image pass: needs > 9 GB on a
  6000x4000 photo with mspfn_lite, so it is off by default).

The detector is ``$TASKDERAIN_YOLO``, else ``../shared/weights/yolov8n_coco.pt``, else the random
``yolov8n.yaml`` (detection does not change the memory much: it sees a 640 px letterbox). Peak
RSS is a property of the process (no noise from other jobs); the times are single runs on a
possibly shared machine — compare them within one run only. Goal: ``run`` on the 6000x4000 JPEG
≤ 3.5 GB. Writes benchmarks/results/memory.json.

Usage::

    python benchmarks/memory.py [--size 6000x4000] [--config pipelines/mspfn-yolov8n.yaml] [--untiled]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "memory.json"
SHARED_YOLO = REPO.parent / "shared" / "weights" / "yolov8n_coco.pt"


def make_photo(path: Path, width: int, height: int) -> Path:
    """A ``width`` x ``height`` JPEG made from ultralytics' bus.jpg (real content, not noise)."""
    import cv2
    from ultralytics.utils import ASSETS

    image = cv2.resize(cv2.imread(str(Path(ASSETS) / "bus.jpg")), (width, height), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def measure(args: List[str], threads: int) -> Dict[str, Any]:
    """Run ``python -m taskderain ARGS`` in a fresh process: exit status, wall seconds, peak RSS (GB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "taskderain", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return {"args": args, "returncode": process.returncode, "wall_s": round(wall, 1),
            "peak_rss_gb": round(usage.ru_maxrss / 1024 ** 2, 3),  # ru_maxrss is in KiB on Linux
            "tail": output.strip().splitlines()[-3:]}


def detector_weights() -> str:
    env = os.environ.get("TASKDERAIN_YOLO")
    if env:
        return f"detector.weights={env}"
    return f"detector.weights={SHARED_YOLO}" if SHARED_YOLO.is_file() else "detector.cfg=yolov8n.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="6000x4000", help="photo WIDTHxHEIGHT (default 6000x4000)")
    parser.add_argument("--config", default=str(REPO / "pipelines" / "mspfn-yolov8n.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--untiled", action="store_true", help="also run max_pixels=0 (needs > 9 GB)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    det = detector_weights()
    if det.startswith("detector.weights"):
        det_args = [det]
    else:  # the shipped YAML names weights: replace them with a random cfg
        det_args = ["detector.weights=null", det]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = make_photo(Path(tmp) / "photo.jpg", width, height)
        routes = [("run (auto-tiled)", ["run", args.config, str(photo), "--out", f"{tmp}/run", "device=cpu", *det_args]),
                  ("derain (auto-tiled)", ["derain", str(photo), "--model", "mspfn_lite", "--weights", "default",
                                           "--device", "cpu", "--out", f"{tmp}/derain"])]
        if args.untiled:
            routes.append(("run max_pixels=0 (untiled)", ["run", args.config, str(photo), "--out", f"{tmp}/untiled",
                                                           "device=cpu", "max_pixels=0", *det_args]))
        for name, route in routes:
            row = {"route": name, **measure(route, args.threads)}
            rows.append(row)
            print(f"{name:<30} exit {row['returncode']}  peak RSS {row['peak_rss_gb']:.2f} GB  wall {row['wall_s']:.0f} s",
                  flush=True)
    result = {"image": f"{width}x{height} JPEG (bus.jpg enlarged)", "config": args.config, "detector": det,
              "threads": args.threads, "machine": platform.processor() or platform.machine(),
              "load_avg_at_end": os.getloadavg(), "goal": "run peak RSS <= 3.5 GB", "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
