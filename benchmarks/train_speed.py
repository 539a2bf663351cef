"""Training step cost: restoration-only vs detection-only vs joint (and cascade), time per optimizer step.

One optimizer step = ``zero_grad`` + forward + loss + ``backward`` + ``Adam.step``, done exactly as
the trainer does it (:func:`taskderain.train.tasks.task_loss` on a :class:`~taskderain.pipeline.Pipeline`,
then ``loss.backward()`` and ``optimizer.step()``, as in :mod:`taskderain.train.loop`). Four routes,
all on the same batch (B images HxW float in [0, 1], a "clean" target, a few random boxes in
ultralytics' batch format: ``batch_idx`` (N,), ``cls`` (N,1), ``bboxes`` (N,4) normalised xywh):

- **restoration**: ``Pipeline(derainer)`` — derainer forward, ``mspfn_loss`` against the clean
  target (what mode ``restoration`` computes), derainer trained;
- **detection**: ``Pipeline(identity, detector)`` with the detector unfrozen and in train mode
  (mode ``detector_on_rain``): ultralytics' loss / B on the rainy images, detector trained;
- **joint**: ``Pipeline(derainer, detector)``, both trained, loss = mspfn + w · det / B (mode ``joint``);
- **cascade**: as joint but the detector frozen (eval mode, no parameter gradients; mode
  ``cascade``): only the derainer is stepped, but the gradient still flows back through the detector.

Every route owns its own copies of the models (same initial weights, seeded) and its own Adam
(lr 5e-4 derainer, 1e-4 detector, the trainer's defaults), so their steps do not interfere. The
routes are interleaved per repeat, with the order rotated every repeat, so load changes on the
shared machine hit all of them alike. Reported: the median step time per route, and the ratio
``joint / (restoration + detection)`` — from the medians and as the median of the per-repeat
ratios (the paired figure, less sensitive to load drift). The ratio is a cost comparison only:
near 1, a joint step costs about what one restoration step plus one detection step cost.

With ``--amp`` the forward runs under ``torch.autocast("cpu", torch.bfloat16)`` (the trainer's
``amp: bf16``); the losses are computed in fp32 as in ``task_loss``.

``--ratio`` measures instead what one derainer training step costs against its own forward
(restoration only, the derainer alone): for fp32 and bf16 autocast and two batch shapes (B=16 at
96 px, B=4 at 256 px), each in a fresh process, the **plain** path (unfused ConvLSTM gate ops,
glibc's default allocator) and the **fast** path the trainer uses (:func:`~taskderain.models.layers.zero_state_lstm_gates`
and :func:`~taskderain.train.allocator.keep_freed_memory`). Per worker: median step time
(zero_grad + forward + MSPFN loss + backward + Adam) and median no-grad forward, interleaved; the
ratio step / forward; page faults per step; GFLOP/s of the convolutions (a step ≈ 3 × the forward's
conv FLOPs) next to a same-run 2048² ``torch.mm`` rate.

Usage::

    python benchmarks/train_speed.py                      # mspfn_lite, B=4, 320x320, 5 repeats
    python benchmarks/train_speed.py --threads 2 --repeats 7 --amp
    python benchmarks/train_speed.py --ratio --repeats 5  # step / forward, plain vs fast
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from derain_speed import machine  # noqa: E402  (benchmarks/ is not a package)
from pipeline_speed import apply_threads_and_weights, is_yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "train_speed.json"
ROUTES = ("restoration", "detection", "joint", "cascade")
#: trainer defaults (taskderain.train.config): optim.lr, optim.lr_detector, loss weights.
LR_DERAINER, LR_DETECTOR = 5e-4, 1e-4


def make_batch(batch: int, imgsz: int, boxes_per_image: int, nc: int, seed: int) -> Dict[str, Any]:
    """A collated batch as :func:`taskderain.data.collate_batch` makes it: rainy ``img``, ``clean``, boxes."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.rand(batch, 3, imgsz, imgsz, generator=gen)
    rainy = (clean + 0.3 * torch.rand(batch, 3, imgsz, imgsz, generator=gen)).clamp(0, 1)
    n = batch * boxes_per_image
    wh = 0.1 + 0.4 * torch.rand(n, 2, generator=gen)
    xy = wh / 2 + (1 - wh) * torch.rand(n, 2, generator=gen)
    return {"img": rainy, "clean": clean,
            "batch_idx": torch.arange(batch, dtype=torch.float32).repeat_interleave(boxes_per_image),
            "cls": torch.randint(0, nc, (n, 1), generator=gen).float(),
            "bboxes": torch.cat([xy, wh], 1),
            "im_file": [f"synthetic_{i}" for i in range(batch)], "id": list(range(batch)),
            "ori_shape": [(imgsz, imgsz)] * batch, "ratio_pad": [((1.0, 1.0), (0.0, 0.0))] * batch}


class Route:
    """One training route: its pipeline, its Adam, and ``step()`` = one optimizer step as the trainer does it."""

    def __init__(self, name: str, pipeline: torch.nn.Module, weights: Dict[str, float],
                 amp_dtype: Optional[torch.dtype]) -> None:
        from taskderain.losses.terms import LossTerms

        self.name, self.pipeline, self.amp_dtype = name, pipeline, amp_dtype
        self.terms = LossTerms(weights, pipeline)
        groups = []
        for stage, lr in (("derainer", LR_DERAINER), ("detector", LR_DETECTOR)):
            module = getattr(pipeline, stage, None)
            params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
            if params:
                groups.append({"params": params, "lr": lr})
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999))
        self.trained_params = sum(p.numel() for g in groups for p in g["params"])
        self.parts: Dict[str, float] = {}

    def step(self, batch: Dict[str, Any]) -> None:
        from taskderain.train.tasks import task_loss

        self.pipeline.train()  # a frozen detector stays in eval mode
        self.optimizer.zero_grad(set_to_none=True)
        loss, self.parts = task_loss(self.pipeline, batch, self.terms, torch.device("cpu"), self.amp_dtype)
        loss.backward()
        self.optimizer.step()


def build_routes(args: argparse.Namespace) -> Dict[str, Route]:
    from taskderain.models import create_derainer
    from taskderain.pipeline import Pipeline
    from taskderain.stages import create_detector

    torch.manual_seed(args.seed)  # random derainer (and yaml detector) weights: reproducible
    derainer = create_derainer(args.derainer)
    key = "cfg" if is_yaml(args.weights) else "weights"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has random weights.*")
        detector = create_detector(**{key: args.weights}, imgsz=args.imgsz)
    trainable = copy.deepcopy(detector).unfreeze()
    frozen = copy.deepcopy(detector).freeze()
    weights = {"restoration": 1.0, "detection": args.det_weight, "segmentation": 0.0}
    amp = torch.bfloat16 if args.amp else None
    pipes = {
        "restoration": Pipeline(copy.deepcopy(derainer)),
        "detection": Pipeline(create_derainer("identity"), copy.deepcopy(trainable)),
        "joint": Pipeline(copy.deepcopy(derainer), copy.deepcopy(trainable)),
        "cascade": Pipeline(copy.deepcopy(derainer), frozen),
    }
    return {name: Route(name, pipes[name], weights, amp) for name in args.routes}


RATIO_SHAPES = ((16, 96), (4, 256))


def ratio_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One (variant, precision, shape) in this fresh process: median step and forward seconds."""
    import resource

    from taskderain.losses import MSPFNLoss
    from taskderain.models import create_derainer
    from taskderain.models.layers import ConvLSTMCell
    from taskderain.train.allocator import keep_freed_memory

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    fast = spec["variant"] == "fast"
    if fast:
        keep_freed_memory()
    ConvLSTMCell.fused_gates = fast
    torch.manual_seed(spec["seed"])
    model = create_derainer(spec["derainer"]).train()
    with torch.no_grad():  # trained-like weights: PReLU slopes and biases off zero
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    optimizer, loss_fn = torch.optim.Adam(model.parameters(), LR_DERAINER), MSPFNLoss()
    gen = torch.Generator().manual_seed(spec["seed"])
    b, size = spec["batch"], spec["size"]
    clean = torch.rand(b, 3, size, size, generator=gen)
    rainy = (clean + 0.3 * torch.rand(b, 3, size, size, generator=gen)).clamp(0, 1)
    amp = torch.autocast("cpu", torch.bfloat16, enabled=spec["amp"])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with amp:
            out = model(rainy)
        loss_fn(out.float(), clean).backward()
        optimizer.step()

    def forward() -> None:
        with torch.no_grad(), amp:
            model(rainy)

    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # noqa: E731
    for _ in range(spec["warmup"] + 1):
        step()
        forward()
    steps, forwards, step_faults = [], [], []
    for _ in range(spec["repeats"]):
        f0, t0 = faults(), time.perf_counter()
        step()
        steps.append(time.perf_counter() - t0)
        step_faults.append(faults() - f0)
        t0 = time.perf_counter()
        forward()
        forwards.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(steps), "forward_s": statistics.median(forwards), "steps_s": steps,
            "forwards_s": forwards, "page_faults_per_step": statistics.median(step_faults),
            "paired_ratio": statistics.median(s / f for s, f in zip(steps, forwards))}


def run_ratio(args: argparse.Namespace) -> int:
    import subprocess

    from derain_speed import conv_macs, matmul_gflops

    info = machine()
    mm_start = {d: matmul_gflops(t) for d, t in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"{info['cpu']} | {args.threads or torch.get_num_threads()} threads | torch {info['torch']} | "
          f"load {info['load_avg_1min']:.2f} | 2048² mm: fp32 {mm_start['fp32']:.0f}, bf16 {mm_start['bf16']:.0f} "
          f"GFLOP/s\nderainer {args.derainer} (random init, perturbed), restoration step vs no-grad forward", flush=True)
    rows = []
    head = (f"{'precision':<9} {'batch':>9} {'variant':<7} {'step s':>7} {'fwd s':>6} {'ratio':>6} {'paired':>6} "
            f"{'faults':>8} {'step GF/s':>9} {'fwd GF/s':>8}")
    print(head + "\n" + "-" * len(head))
    for amp in (False, True):
        for batch, size in RATIO_SHAPES:
            gmac = conv_macs(args.derainer, (size, size))["gmac"] * batch
            for variant in ("plain", "fast"):
                spec = {"variant": variant, "amp": amp, "batch": batch, "size": size, "derainer": args.derainer,
                        "threads": args.threads, "seed": args.seed, "repeats": args.repeats, "warmup": args.warmup}
                proc = subprocess.run([sys.executable, __file__, "--ratio-worker", json.dumps(spec)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-3000:]}")
                row = {**spec, **json.loads(proc.stdout.strip().splitlines()[-1]), "gmac_forward": gmac}
                row["ratio"] = row["step_s"] / row["forward_s"]
                row["step_gflops"] = 2 * 3 * gmac / row["step_s"]
                row["forward_gflops"] = 2 * gmac / row["forward_s"]
                rows.append(row)
                print(f"{'bf16' if amp else 'fp32':<9} {f'{batch}x{size}px':>9} {variant:<7} {row['step_s']:>7.3f} "
                      f"{row['forward_s']:>6.3f} {row['ratio']:>6.2f} {row['paired_ratio']:>6.2f} "
                      f"{row['page_faults_per_step']:>8.0f} {row['step_gflops']:>9.1f} {row['forward_gflops']:>8.1f}",
                      flush=True)
    mm_end = {d: matmul_gflops(t) for d, t in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"2048² mm at the end: fp32 {mm_end['fp32']:.0f}, bf16 {mm_end['bf16']:.0f} GFLOP/s; "
          f"load {os.getloadavg()[0]:.2f}")
    info["load_avg_1min_end"] = os.getloadavg()[0]
    report = {"machine": info, "matmul_gflops_start": mm_start, "matmul_gflops_end": mm_end,
              "step": "zero_grad + forward + mspfn_loss + backward + Adam.step (derainer alone)",
              "forward": "torch.no_grad forward, same batch", "rows": rows}
    path = args.json if args.json != DEFAULT_JSON else DEFAULT_JSON.with_name("train_speed_ratio.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--derainer", default="mspfn_lite", help="derainer preset, random weights (default mspfn_lite)")
    parser.add_argument("--weights", help="detector checkpoint or model YAML (default: $TASKDERAIN_YOLO, then "
                                          "../shared/weights/yolov8n_coco.pt, else yolov8n.yaml random init)")
    parser.add_argument("--batch", type=int, default=4, help="images per step (default 4)")
    parser.add_argument("--imgsz", type=int, default=320, help="square image size (default 320)")
    parser.add_argument("--boxes", type=int, default=3, help="random boxes per image (default 3)")
    parser.add_argument("--det-weight", type=float, default=0.01,
                        help="w in mspfn + w · det / B (trainer default loss.detection 0.01)")
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=ROUTES, help="routes to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per route (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per route first")
    parser.add_argument("--amp", action="store_true", help="forward under bf16 autocast (trainer amp: bf16)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output file (default {DEFAULT_JSON})")
    parser.add_argument("--ratio", action="store_true", help="step / forward of the derainer, plain vs fast path")
    parser.add_argument("--ratio-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ratio_worker:
        print(json.dumps(ratio_worker(json.loads(args.ratio_worker))))
        return 0
    if args.ratio:
        return run_ratio(args)

    os.environ.setdefault("YOLO_OFFLINE", "1")
    threads, source = apply_threads_and_weights(args)

    routes = build_routes(args)
    if torch.get_num_threads() != threads:  # ultralytics imports may change it
        torch.set_num_threads(threads)
    nc = next(r.pipeline.detector.nc for r in routes.values() if r.pipeline.detector is not None) \
        if any(r.pipeline.detector is not None for r in routes.values()) else 80
    batch = make_batch(args.batch, args.imgsz, args.boxes, nc, args.seed)
    info = machine()
    print(f"{info['cpu']} | {threads} threads | torch {info['torch']} | load {info['load_avg_1min']:.2f}\n"
          f"derainer {args.derainer} (random init) | detector {args.weights} ({source}) | "
          f"B={args.batch} {args.imgsz}x{args.imgsz} | {len(batch['cls'])} boxes | "
          f"{'bf16 autocast' if args.amp else 'fp32'} | det weight {args.det_weight}", flush=True)

    for _ in range(args.warmup):
        for route in routes.values():
            route.step(batch)
    times: Dict[str, List[float]] = {name: [] for name in routes}
    order = list(routes)
    for rep in range(args.repeats):
        shift = rep % len(order)
        for name in order[shift:] + order[:shift]:
            start = time.perf_counter()
            routes[name].step(batch)
            times[name].append(time.perf_counter() - start)
        print(f"  repeat {rep + 1}/{args.repeats}: " +
              ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms" for n in routes), flush=True)

    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios: Dict[str, Any] = {}
    if all(n in routes for n in ("restoration", "detection", "joint")):
        per_rep = [j / (r + d) for j, r, d in zip(times["joint"], times["restoration"], times["detection"])]
        ratios["joint_over_sum_of_medians"] = medians["joint"] / (medians["restoration"] + medians["detection"])
        ratios["joint_over_sum_paired_median"] = statistics.median(per_rep)
        ratios["joint_over_sum_per_repeat"] = per_rep
    if all(n in routes for n in ("restoration", "cascade")):
        ratios["cascade_over_restoration"] = medians["cascade"] / medians["restoration"]
    if all(n in routes for n in ("joint", "cascade")):
        ratios["cascade_over_joint"] = medians["cascade"] / medians["joint"]

    print()
    head = f"{'route':<12} {'trained params':>14} {'median ms':>10} {'min ms':>8} {'max ms':>8}  last losses"
    print(head)
    print("-" * len(head))
    for name, route in routes.items():
        t = times[name]
        parts = ", ".join(f"{k} {v:.4g}" for k, v in route.parts.items())
        print(f"{name:<12} {route.trained_params:>14,} {medians[name] * 1e3:>10.0f} {min(t) * 1e3:>8.0f} "
              f"{max(t) * 1e3:>8.0f}  {parts}")
    if "joint_over_sum_of_medians" in ratios:
        print(f"\njoint / (restoration + detection): {ratios['joint_over_sum_of_medians']:.3f} from the medians, "
              f"{ratios['joint_over_sum_paired_median']:.3f} median of per-repeat ratios")
    if "cascade_over_restoration" in ratios:
        print(f"cascade / restoration: {ratios['cascade_over_restoration']:.3f}", end="")
        print(f", cascade / joint: {ratios['cascade_over_joint']:.3f}" if "cascade_over_joint" in ratios else "")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (started at {info['load_avg_1min']:.2f})")

    info["load_avg_1min_end"] = os.getloadavg()[0]
    report = {"machine": info, "detector_source": source,
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "step": "zero_grad + task_loss (forward, losses) + backward + Adam.step, per route",
              "medians_ms": {n: m * 1e3 for n, m in medians.items()},
              "times_ms": {n: [x * 1e3 for x in t] for n, t in times.items()},
              "trained_params": {n: r.trained_params for n, r in routes.items()},
              "last_losses": {n: r.parts for n, r in routes.items()},
              "ratios": ratios}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
