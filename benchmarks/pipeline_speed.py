"""Pipeline glue overhead: ``Pipeline.predict`` vs. the same stages called separately vs. the naive PNG route.

Per image (ultralytics' bundled ``bus.jpg`` and ``zidane.jpg`` by default, B=1, CPU, fp32,
``torch.inference_mode``), three routes on the same derainer and detector weights:

- **pipeline**: ``Pipeline.predict(tensor)`` — derain + detect in one call;
- **separate**: ``derain_tensor(pipe.derainer, x)`` then ``pipe.detector.predict(derained)`` — the
  same objects called one after the other; its two parts are reported as *derain* and *detect*;
- **naive**: ``derain_tensor``, ``write_rgb`` of the derained PNG to a temp dir, then
  ``ultralytics.YOLO(weights).predict(png, imgsz=...)`` — how it is done without taskderain.
  Its parts (derain / save / yolo) are kept in the JSON.

Glue overhead = pipeline / separate − 1 (target ≤ 5 %); naive ratio = naive / pipeline. Both from
the medians, and also as the median of the per-repeat ratios (routes of one repeat run back to
back, so the paired figure is less sensitive to load changing between repeats).

The input image is read once, before timing, into a contiguous (1,3,H,W) float tensor: file
reading is excluded from all three routes. (``to_tensor`` alone gives a channels-last strided
view, on which the derainer is a few % slower; ``Pipeline.predict`` copies its input to a
contiguous batch anyway, so without ``.contiguous()`` the separate route would lose by layout.)
The naive route's PNG encode + write (``write_rgb`` fsyncs) and ultralytics' read-back of it are
part of that route, since they are what it costs.

With ``--derainer identity`` the glue is measured against detection alone (~0.1 s), so the few
ms that ``Pipeline.predict`` adds (copying the input into a batch with ``torch.stack``, switching
the whole module tree to eval mode on every call) show as several %.

Routes are interleaved per repeat (cycling through all six orders) so load changes and cache
effects hit all of them alike.
The naive ``YOLO`` object is created once and warmed up outside the timing loop. ultralytics'
predictor setup calls ``select_device("cpu")``, which sets torch to ``os.cpu_count() - 1``
threads for the whole process; the thread count is restored after every naive call (outside the
timed region) so that all routes run with the same number of threads.

Usage::

    python benchmarks/pipeline_speed.py                      # mspfn_lite, 5 repeats
    python benchmarks/pipeline_speed.py --repeats 9 --derainer prenet --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from derain_speed import machine  # noqa: E402  (benchmarks/ is not a package)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "pipeline_speed.json"
SHARED_YOLO = REPO.parent / "shared" / "weights" / "yolov8n_coco.pt"
DERAINERS = ("mspfn_lite", "prenet", "identity")
ROUTES = ("pipeline", "separate", "naive")
# Route orders, cycled per (repeat, image): every route runs in every position and right after every
# other route equally often. (A plain rotation always puts the same route after the naive one, whose
# ultralytics predictor evicts the caches: that route then looks ~10 ms slower.)
ORDERS = list(itertools.permutations(ROUTES))


def default_weights() -> Tuple[str, str]:
    """(weights, where from): $TASKDERAIN_YOLO, then ../shared/weights/yolov8n_coco.pt, else yolov8n.yaml."""
    env = os.environ.get("TASKDERAIN_YOLO")
    if env:
        return env, "$TASKDERAIN_YOLO"
    if SHARED_YOLO.is_file():
        return str(SHARED_YOLO), "../shared/weights (pretrained COCO)"
    return "yolov8n.yaml", "no checkpoint found: yolov8n.yaml, random init"


def apply_threads_and_weights(args: argparse.Namespace) -> Tuple[int, str]:
    """Set torch's threads from ``--threads`` and fill ``--weights`` with :func:`default_weights`;
    returns (threads, where the weights come from)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    source = "--weights"
    if args.weights is None:
        args.weights, source = default_weights()
    return torch.get_num_threads(), source


def is_yaml(weights: str) -> bool:
    return Path(weights).suffix.lower() in (".yaml", ".yml")


def build(args: argparse.Namespace):
    """The pipeline (from a config, as users build it) and a separate ultralytics YOLO with the same weights."""
    from taskderain.pipeline import Pipeline, load_config

    torch.manual_seed(args.seed)  # random derainer (and yaml detector) weights: reproducible
    key = "cfg" if is_yaml(args.weights) else "weights"
    config = load_config(None, [f"derainer.name={args.derainer}", f"detector.{key}={args.weights}",
                                f"detector.imgsz={args.imgsz}", "device=cpu"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has random weights.*")  # stated in the header line
        pipe = Pipeline.from_config(config)

    os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics' YOLO object exists
    from ultralytics import YOLO

    yolo = YOLO(args.weights)
    if is_yaml(args.weights):  # random init: give the naive route the pipeline's detector weights
        yolo.model.load_state_dict(pipe.detector.model.state_dict())
    return pipe, yolo


def timed(fn: Callable[[], Any]) -> Tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def matched(a, b, iou: float = 0.9) -> int:
    """Boxes of detections ``a`` with a same-class box in ``b`` at IoU >= ``iou`` (a sanity check, not mAP)."""
    from ultralytics.utils.metrics import box_iou

    if len(a) == 0 or len(b) == 0:
        return 0
    ious = box_iou(a.boxes, b.boxes) * (a.classes[:, None] == b.classes[None, :])
    return int((ious.max(1).values >= iou).sum())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--derainer", default="mspfn_lite", choices=DERAINERS,
                        help="derainer preset, random weights (default mspfn_lite)")
    parser.add_argument("--weights", help="detector checkpoint or model YAML (default: $TASKDERAIN_YOLO, then "
                                          "../shared/weights/yolov8n_coco.pt, else yolov8n.yaml random init)")
    parser.add_argument("--images", nargs="+", help="image files (default: ultralytics' bus.jpg and zidane.jpg)")
    parser.add_argument("--imgsz", type=int, default=640, help="detector inference size (default 640)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of every route per image (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of every route per image first")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output file (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be ≥ 1 and --warmup ≥ 0")
    threads, source = apply_threads_and_weights(args)

    from taskderain.imageio import read_rgb, write_rgb
    from taskderain.inference import derain_tensor, to_tensor, to_uint8
    from taskderain.stages.results import Detections

    from ultralytics.utils import ASSETS

    paths = [Path(p) for p in args.images] if args.images else [ASSETS / "bus.jpg", ASSETS / "zidane.jpg"]
    pipe, yolo = build(args)
    derainer, detector = pipe.derainer, pipe.detector
    conf, iou, max_det = detector.conf, detector.iou, detector.max_det
    tmp = tempfile.TemporaryDirectory(prefix="pipeline_speed_")
    thread_resets = 0

    def restore_threads() -> None:
        nonlocal thread_resets
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
            thread_resets += 1

    def run_route(route: str, name: str, x: torch.Tensor) -> Tuple[Dict[str, float], Any]:
        """Seconds of ``route`` (total and parts) and its detections for image ``x``."""
        if route == "pipeline":
            total, res = timed(lambda: pipe.predict(x))
            return {"total": total}, res[0].detections
        if route == "separate":
            t_derain, derained = timed(lambda: derain_tensor(derainer, x))
            t_detect, dets = timed(lambda: detector.predict(derained))
            return {"total": t_derain + t_detect, "derain": t_derain, "detect": t_detect}, dets[0]
        png = Path(tmp.name) / f"{name}_derained.png"
        t_derain, derained = timed(lambda: derain_tensor(derainer, x))
        t_save, _ = timed(lambda: write_rgb(png, to_uint8(derained)))
        t_yolo, res = timed(lambda: yolo.predict(str(png), imgsz=args.imgsz, conf=conf, iou=iou, max_det=max_det,
                                                 device="cpu", verbose=False))
        restore_threads()  # predictor setup: select_device("cpu") -> torch.set_num_threads(cpu_count - 1)
        boxes = res[0].boxes
        dets = Detections(boxes.xyxy.float(), boxes.conf.float(), boxes.cls.long(), detector.names)
        return {"total": t_derain + t_save + t_yolo, "derain": t_derain, "save": t_save, "yolo": t_yolo}, dets

    images = []
    for path in paths:
        # (1,3,H,W) float in [0,1], read once, outside all timings. Contiguous: to_tensor's permuted view is
        # channels-last strided, which the derainer runs ~5 % slower on, while Pipeline.predict's torch.stack
        # makes a contiguous copy -- the routes would then compare memory layouts, not glue.
        x = to_tensor(read_rgb(path)).contiguous()
        images.append({"name": path.stem, "path": str(path), "x": x, "times": {r: [] for r in ROUTES},
                       "parts": {r: [] for r in ROUTES}, "ndet": {r: [] for r in ROUTES}, "last": {}})

    info = machine()
    info["load_avg_1min_start"] = info.pop("load_avg_1min")
    print(f"{info['cpu']} | {threads} torch threads | torch {info['torch']} | {info['cpu_capability']} | "
          f"load {info['load_avg_1min_start']:.2f}")
    print(f"derainer {args.derainer}{'' if args.derainer == 'identity' else ' (random weights)'} | detector {args.weights} [{source}] | imgsz {args.imgsz} | "
          f"{args.warmup} warm-up + {args.repeats} timed runs per route, interleaved; input read excluded")

    with torch.inference_mode():
        run_route("naive", images[0]["name"], images[0]["x"])  # YOLO predictor setup, untimed, whatever --warmup
        thread_resets = 0  # that setup is expected to change the thread count once
        for rep in range(-args.warmup, args.repeats):
            for i, img in enumerate(images):
                order = ORDERS[(rep * len(images) + i) % len(ORDERS)]
                for route in order:
                    seconds, dets = run_route(route, img["name"], img["x"])
                    if rep >= 0:
                        img["times"][route].append(seconds["total"])
                        img["parts"][route].append(seconds)
                        img["ndet"][route].append(len(dets))
                        img["last"][route] = dets
            if rep >= 0:
                print(f"  repeat {rep + 1}/{args.repeats}: " + "; ".join(
                    f"{img['name']} " + " ".join(f"{r} {img['times'][r][-1]:.2f}s" for r in ROUTES)
                    for img in images), flush=True)

    rows = []
    for img in images:
        med = {r: statistics.median(img["times"][r]) for r in ROUTES}
        part_med = lambda route, key: statistics.median(p[key] for p in img["parts"][route])  # noqa: E731
        paired_over = [p / s - 1 for p, s in zip(img["times"]["pipeline"], img["times"]["separate"])]
        paired_naive = [n / p for n, p in zip(img["times"]["naive"], img["times"]["pipeline"])]
        pip, sep, naive = (img["last"][r] for r in ROUTES)
        same = len(sep) == len(pip) and torch.equal(sep.classes, pip.classes)  # boxes agree to float noise only:
        box_diff = float((sep.boxes - pip.boxes).abs().max()) if same and len(pip) else (0.0 if same else None)
        rows.append({
            "image": img["name"], "path": img["path"], "size": f"{img['x'].shape[2]}x{img['x'].shape[3]}",
            "derain_s": part_med("separate", "derain"), "detect_s": part_med("separate", "detect"),
            "separate_s": med["separate"], "pipeline_s": med["pipeline"], "naive_s": med["naive"],
            "naive_save_s": part_med("naive", "save"), "naive_yolo_s": part_med("naive", "yolo"),
            "naive_derain_s": part_med("naive", "derain"),
            "min_s": {r: min(img["times"][r]) for r in ROUTES},
            "overhead_min": min(img["times"]["pipeline"]) / min(img["times"]["separate"]) - 1,
            "overhead": med["pipeline"] / med["separate"] - 1, "overhead_paired": statistics.median(paired_over),
            "naive_ratio": med["naive"] / med["pipeline"], "naive_ratio_paired": statistics.median(paired_naive),
            "ndet": {r: sorted(set(img["ndet"][r])) for r in ROUTES},
            "pipeline_vs_separate_max_box_diff_px": box_diff, "naive_matched_iou90": matched(naive, pip),
            "times_s": img["times"], "parts_s": img["parts"],
        })

    print()
    head = (f"{'image':<8} {'HxW':>9} {'derain':>8} {'detect':>7} {'separate':>9} {'pipeline':>9} {'naive':>8} "
            f"{'overhead':>9} {'(paired)':>9} {'naive x':>8} {'(paired)':>8} {'dets p/s/n':>11} {'p-s px':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ms = lambda s: f"{s * 1e3:.0f}"  # noqa: E731
        d = r["pipeline_vs_separate_max_box_diff_px"]
        diff = "differ" if d is None else f"{d:.0e}" if d else "0"
        dets = "/".join(",".join(map(str, r["ndet"][k])) for k in ROUTES)
        print(f"{r['image']:<8} {r['size']:>9} {ms(r['derain_s']):>8} {ms(r['detect_s']):>7} {ms(r['separate_s']):>9} "
              f"{ms(r['pipeline_s']):>9} {ms(r['naive_s']):>8} {r['overhead']:>+9.1%} {r['overhead_paired']:>+9.1%} "
              f"{r['naive_ratio']:>8.3f} {r['naive_ratio_paired']:>8.3f} {dets:>11} {diff:>7}")
    print("\nms = median over repeats (derain/detect: the separate route's parts; separate = their sum).\n"
          "overhead = pipeline / separate - 1 (target <= 5 %); naive x = naive / pipeline; (paired) = median of the\n"
          "per-repeat ratios. dets p/s/n: detections of pipeline/separate/naive (distinct counts over repeats);\n"
          "p-s px: largest box coordinate difference pipeline vs separate, last repeat (\"differ\": other boxes or\n"
          "classes); expected 0 (same weights, same contiguous input).")
    for r in rows:
        print(f"  {r['image']}: naive parts derain {r['naive_derain_s'] * 1e3:.0f} ms + save PNG {r['naive_save_s'] * 1e3:.0f} ms"
              f" + YOLO.predict {r['naive_yolo_s'] * 1e3:.0f} ms; overhead from the fastest runs "
              f"{r['overhead_min']:+.1%}; {r['naive_matched_iou90']} of "
              f"{r['ndet']['naive'][-1]} naive boxes match a pipeline box (same class, IoU >= 0.9)")
    if thread_resets:
        print(f"note: ultralytics changed the torch thread count {thread_resets} time(s) during timing (restored each time)")

    info["load_avg_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["torch_threads"] = threads
    import ultralytics

    info["ultralytics"] = ultralytics.__version__
    report = {"machine": info,
              "args": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                       "weights_source": source},
              "input_read": "excluded (image read once before timing; the naive route's PNG write + read-back included)",
              "input_layout": "contiguous NCHW float32 (1,3,H,W)",
              "dtype": "fp32", "batch": 1, "device": "cpu", "thread_resets_during_timing": thread_resets,
              "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
