"""Does task-driven training beat restoration-only? A powered, paired experiment on rainy COCO128.

Every variant starts from the shipped all-weather derainer (``weights=allweather``) and fine-tunes
it with ``taskderain train`` (mode ``cascade``: the COCO YOLOv8n frozen) at equal steps — the
same steps, batch, images, rain and seeds; only the ``loss`` section differs (each variant's CPU
hours are reported: the task terms and the anchor's frozen start model cost up to ~25 % more per step):

==================  =====================================================================
restoration         ``restoration: 1`` (the baseline: MSPFN's pixel loss alone)
detection           ``restoration: 1, detection: 0.01`` (the frozen YOLO's loss)
features            ``restoration: 1, detector_features: 0.1`` (SR4IR-style perceptual loss)
task                ``restoration: 1, detection: 0.01, detector_features: 0.1`` (both task terms)
consistency         ``restoration: 1, detection_consistency: 0.01`` (clean detections as labels)
anchored            ``restoration: 1, anchor: 1`` (tone held at the start model's: no drift)
task_anchored       ``task``'s loss plus ``anchor: 1``
targeted            ``targeted_restoration: 1`` (Sun et al. 2022's targeted-adversarial target)
joint               ``task``'s loss in mode ``joint``: the YOLO fine-tuned too (Adam at
                    ``optim.lr_detector`` 1e-5, no warm-up, BatchNorm statistics kept:
                    ``freeze_bn``); scored with its own detector. At 1e-4 (the config
                    default) 60 steps wreck the detector (mAP50-95 about 8)
==================  =====================================================================

Weights are fixed before any scoring: each task term starts at about the size of the restoration
term on the training images (log.csv's first rows), never chosen on the scored images.

Training: the 80 COCO128 images outside the 48 held-out ones (the split the all-weather derainer
was trained without), rain = the zoo mix *without* the held-out family (``--held-out``), seeds
``--seeds``. Scoring (one :class:`~taskderain.evaluation.Evaluation`, ultralytics' validator
geometry at ``--imgsz``): the 48 held-out images under the mix of the seen families and under the
held-out family, both at heavy intensity, plus the clean and rainy rows. Per variant: mAP50-95,
mAP50 and PSNR-Y (mean over seeds), and the **paired bootstrap 95 % interval of the difference to
restoration-only** (images resampled with replacement, the same resample for both arms, seeds
averaged inside each resample; BCa, and the plain percentile interval in results.json), so the
table says which differences the 48 images resolve.

    python benchmarks/taskdriven_experiment.py --amp                      # CPU: ~1.1 h (60 steps x 12 runs, then scoring)
    python benchmarks/taskdriven_experiment.py --amp --variants anchored,task_anchored --baseline anchored   # re-scored only
    python benchmarks/taskdriven_experiment.py --quick                    # smoke run (tiny, seconds)
    python benchmarks/taskdriven_experiment.py --variants restoration,my --loss-my "{restoration: 1, mine: {fn: my_pkg:term, weight: 0.1}}" \
        --data my_data.yaml --head "{type: yolo, weights: my_yolo.pt}"      # your term, data and detector
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from coco128_experiment import write_split  # noqa: E402  (benchmarks/ is not a package)

#: every term spelled out: a training config's loss section adds to DEFAULT_LOSS (detection 0.01)
_OFF = {"restoration": 0.0, "detection": 0.0, "segmentation": 0.0}
VARIANTS: Dict[str, Dict[str, Any]] = {
    "restoration": {**_OFF, "restoration": 1.0},
    "detection": {**_OFF, "restoration": 1.0, "detection": 0.01},
    "features": {**_OFF, "restoration": 1.0, "detector_features": 0.1},
    "task": {**_OFF, "restoration": 1.0, "detection": 0.01, "detector_features": 0.1},
    "consistency": {**_OFF, "restoration": 1.0, "detection_consistency": 0.01},
    "targeted": {**_OFF, "targeted_restoration": 1.0},
    "anchored": {**_OFF, "restoration": 1.0, "anchor": 1.0},
    "task_anchored": {**_OFF, "restoration": 1.0, "detection": 0.01, "detector_features": 0.1, "anchor": 1.0},
    "joint": {"mode": "joint", "loss": {**_OFF, "restoration": 1.0, "detection": 0.01, "detector_features": 0.1},
              "optim": {"lr_detector": 1e-5}},
}
DEFAULT_VARIANTS = "restoration,anchored,task,task_anchored"
BASELINE = "restoration"


def variant_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """``{"mode", "loss", "optim"}`` of a variant given as a spec ``loss`` section (mode cascade) or
    as ``{mode: cascade | joint, loss: {...}, optim: {...}}``."""
    if not isinstance(spec, dict):
        raise SystemExit(f"a variant is a YAML mapping (a loss section or {{mode, loss, optim}}), got {spec!r}")
    if "loss" not in spec:
        spec = {"loss": spec}
    for key in ("loss", "optim"):
        if not isinstance(spec.get(key) or {}, dict):
            raise SystemExit(f"variant '{key}' must be a mapping, got {spec[key]!r}")
    unknown = set(spec) - {"mode", "loss", "optim"}
    if unknown:
        raise SystemExit(f"variant keys {sorted(unknown)}: a variant is a loss section or {{mode, loss, optim}}")
    mode = spec.get("mode", "cascade")
    if mode not in ("cascade", "joint"):
        raise SystemExit(f"variant mode {mode!r}: cascade (frozen detector) or joint (detector fine-tuned)")
    return {"mode": mode, "loss": dict(spec["loss"]), "optim": dict(spec.get("optim") or {})}


def train_variant(args: argparse.Namespace, name: str, variant: Dict[str, Any], seed: int) -> Dict[str, Any]:
    """One ``taskderain train`` run (resumed if interrupted); returns its final derainer (and, in
    mode joint, its fine-tuned detector) and its cost."""
    out = args.out / "runs" / f"{name}-s{seed}"
    model = args.out / "models" / f"{name}-s{seed}.pt"
    detector = model.with_suffix(".detector.pt") if variant["mode"] == "joint" else None
    cost_file = out / "cost.json"
    done = {"model": model, "detector": detector}
    if model.exists() and cost_file.exists() and (detector is None or detector.exists()):
        return {**done, **json.loads(cost_file.read_text())}
    optim = {"lr": args.lr, **variant["optim"]}
    config = {  # one spec (taskderain.spec): `taskderain eval` / `run` take this file as well
        "derainer": {"name": args.preset, "weights": args.weights},
        "heads": {"detector": dict(args.head)},
        "rain": {"model": {"name": "mix", "exclude": [args.held_out]}, "seed": seed},
        "device": "cpu",
        "train": {"mode": variant["mode"], "out": str(out), "steps": args.steps, "seed": seed, "amp": args.amp,
                  "data": {"detection": str(args.data), "train_split": "train", "val_split": 2,
                           "imgsz": args.train_imgsz, "clean_prob": 0.0, "batch": args.batch},
                  "loss": variant["loss"], "optim": optim, "val_every": 10 ** 6, "save_every": 10,
                  "best_metric": "map50_95", "freeze_bn": True, "resume": (out / "last.pt").exists()},
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{name}-s{seed}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    start_cpu, start = _children_cpu(), time.perf_counter()
    cmd = [sys.executable, "-m", "taskderain", "train", str(path)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    from taskderain.models import load_derainer, save_derainer
    from taskderain.train import export_stages

    model.parent.mkdir(parents=True, exist_ok=True)
    save_derainer(load_derainer(out / "last.pt"), model, metadata={"variant": name, "seed": seed, **variant})
    if detector is not None:  # the YOLO it was tuned with, scored with it
        os.replace(export_stages(out / "last.pt", out / "export")["detector"], detector)
    cost = {"wall_s": time.perf_counter() - start, "cpu_s": _children_cpu() - start_cpu, "steps": args.steps,
            "images_seen": args.steps * args.batch}
    cost_file.write_text(json.dumps(cost))
    return {**done, **cost}


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def score(args: argparse.Namespace, runs: Dict[str, List[Dict[str, Any]]]):
    """Every model on the held-out images with the one evaluator: the frozen-detector models in one
    :class:`~taskderain.evaluation.Evaluation`, each joint model with its own fine-tuned detector in
    one more (same images, rain and geometry). Returns (records, accumulators, conditions)."""
    import torch

    from taskderain.evaluation import EvalCache, Evaluation, EvalSettings, open_eval_data
    from taskderain.evaluation.conditions import clean_condition, zoo_condition
    from taskderain.evaluation.stages import build_derainer_spec, identity_spec
    from taskderain.pipeline.build import build_head

    torch.set_num_threads(os.cpu_count() or 1)
    data = open_eval_data(args.data, "val", limit=args.limit)
    seen = dataclasses.replace(zoo_condition({"name": "mix", "exclude": [args.held_out], "intensity": [0.75, 0.75]}),
                               name=f"seen: mix w/o {args.held_out}@0.75")
    held = dataclasses.replace(zoo_condition(f"{args.held_out}@0.75"), name=f"held out: {args.held_out}@0.75")
    conditions = [clean_condition(), seen, held]
    settings = EvalSettings(imgsz=args.imgsz, samples=0)
    spec = lambda model: build_derainer_spec(args.preset, model, label=Path(model).stem)  # noqa: E731

    def head(weights: Optional[Path] = None):  # --head as given, or with a joint run's tuned weights
        entry = {**args.head, "conf": 0.001, **({"weights": str(weights)} if weights is not None else {})}
        return build_head(entry, imgsz=args.imgsz).eval()

    start = [build_derainer_spec(args.preset, args.weights, label="start")] if args.weights else []
    shared = [identity_spec(), *start] + [spec(r["model"]) for rs in runs.values() for r in rs if not r.get("detector")]
    evaluations = [Evaluation(data, conditions, shared, {"detector": head()},
                              EvalCache(args.out / "cache"), settings)]
    evaluations += [Evaluation(data, conditions, [spec(r["model"])], {"detector": head(r["detector"])},
                               EvalCache(args.out / "cache"), settings)
                    for rs in runs.values() for r in rs if r.get("detector")]
    records, accumulators = [], {}
    for evaluation in evaluations:
        records += evaluation.run(progress=not args.quiet)
        accumulators.update(evaluation.accumulators)
    return records, accumulators, conditions


def bootstrap_vs(accs: Dict[Any, Any], condition: str, variant: Sequence[str], baseline: Sequence[str],
                 n: int, method: str = "BCa") -> Dict[str, float]:
    """Paired bootstrap interval of the mAP50-95 difference (seeds averaged inside each resample)."""
    from taskderain.metrics import paired_bootstrap

    arms = lambda labels: [accs[(condition, label)].detection for label in labels]  # noqa: E731
    return paired_bootstrap(arms(variant), arms(baseline), n=n, method=method)


def table(args, records, accs, conditions, runs) -> Dict[str, Any]:
    by = {(r["condition"], r["derainer"]): r for r in records}
    labels = {name: [Path(r["model"]).stem for r in rs] for name, rs in runs.items()}
    out: Dict[str, Any] = {"rows": [], "conditions": [c.name for c in conditions[1:]], "baseline": args.baseline}
    clean = by[("clean", "identity")]
    for cond in conditions[1:]:
        rainy = by[(cond.name, "identity")]
        lost = clean["map50_95"] - rainy["map50_95"]
        out["rows"].append({"condition": cond.name, "variant": "rainy (no derainer)", "map50_95": rainy["map50_95"],
                            "map50": rainy["map50"], "psnr_y": rainy["psnr_y"]})
        if (cond.name, "start") in by:  # the derainer every variant starts from, not fine-tuned
            s0 = by[(cond.name, "start")]
            out["rows"].append({"condition": cond.name, "variant": f"start ({args.weights}, not fine-tuned)",
                                "map50_95": s0["map50_95"], "map50": s0["map50"], "psnr_y": s0["psnr_y"],
                                "recovered": (s0["map50_95"] - rainy["map50_95"]) / lost if lost > 0 else math.nan})
        for name, seeds in labels.items():
            rows = [by[(cond.name, label)] for label in seeds]
            mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
            row = {"condition": cond.name, "variant": name, "map50_95": mean("map50_95"), "map50": mean("map50"),
                   "psnr_y": mean("psnr_y"), "seeds": len(rows),
                   "map50_95_per_seed": [r["map50_95"] for r in rows],
                   "recovered": (mean("map50_95") - rainy["map50_95"]) / lost if lost > 0 else math.nan}
            if (cond.name, "start") in by:  # does fine-tuning pay at all?
                row["vs_start"] = bootstrap_vs(accs, cond.name, seeds, ["start"], args.bootstrap)
            if name != args.baseline and args.baseline in labels:
                row["vs_baseline"] = bootstrap_vs(accs, cond.name, seeds, labels[args.baseline], args.bootstrap)
                row["vs_baseline_percentile"] = bootstrap_vs(accs, cond.name, seeds, labels[args.baseline],
                                                                args.bootstrap, method="percentile")
            out["rows"].append(row)
    out["clean"] = {"map50_95": clean["map50_95"], "map50": clean["map50"]}
    return out


def markdown(result: Dict[str, Any], costs: Dict[str, Dict[str, float]]) -> str:
    lines = [f"Clean images: mAP50-95 {result['clean']['map50_95']:.3f}, mAP50 {result['clean']['map50']:.3f}.", "",
             f"| rain | variant | mAP50-95 | Δ vs {result['baseline']} [95 % CI] | Δ vs start [95 % CI] | mAP50 | PSNR-Y | "
             "lost mAP recovered | CPU h (all seeds) |", "|---|---|---|---|---|---|---|---|---|"]
    interval = lambda ci: f"{ci['diff'] * 100:+.1f} [{ci['low'] * 100:+.1f}, {ci['high'] * 100:+.1f}]" if ci else "—"  # noqa: E731
    for r in result["rows"]:
        delta, vs_start = interval(r.get("vs_baseline")), interval(r.get("vs_start"))
        rec = r.get("recovered")
        cost = costs.get(r["variant"], {}).get("cpu_h")
        lines.append(f"| {r['condition']} | {r['variant']} | {r['map50_95'] * 100:.1f} | {delta} | {vs_start} | "
                     f"{r['map50'] * 100:.1f} | {r['psnr_y']:.2f} | "
                     f"{'—' if rec is None or math.isnan(rec) else f'{rec * 100:.0f} %'} | "
                     f"{'—' if cost is None else f'{cost:.2f}'} |")
    lines += ["", f"mAP in points (×100); Δ = mean over seeds of variant − {result['baseline']} (or the start "
              "model, not fine-tuned) on the same images, BCa interval from the paired bootstrap over images "
              "(percentile intervals in results.json)."]
    widths = [(r["vs_baseline"]["high"] - r["vs_baseline"]["low"]) / 2 for r in result["rows"] if r.get("vs_baseline")]
    if widths:
        lines.append(f"Interval half-widths {min(widths) * 100:.1f}–{max(widths) * 100:.1f} points: the "
                     f"smallest difference these images resolve.")
    return "\n".join(lines)


def results_stem(variants: Sequence[str], baseline: str) -> str:
    """``results`` for the default comparison, ``results-<variants>-vs-<baseline>`` for any other, so
    re-scoring the same runs another way never overwrites a finished table."""
    if ",".join(variants) == DEFAULT_VARIANTS and baseline == BASELINE:
        return "results"
    return f"results-{'-'.join(variants)}-vs-{baseline}"


def _yaml_arg(flag: str, text: str) -> Any:
    """The YAML value of a command-line argument; a SystemExit naming the flag when it does not parse."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SystemExit(f"{flag}: not valid YAML ({exc.__class__.__name__}): {text!r}") from None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("TASKDERAIN_SHARED", REPO.parent / "shared")))
    parser.add_argument("--out", type=Path, default=REPO.parent / "runs" / "taskdriven_experiment")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma list of {', '.join(VARIANTS)} or your own")
    parser.add_argument("--baseline", default=BASELINE,
                        help="the variant every other is compared with (paired intervals; default restoration)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps of every run (equal compute)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--train-imgsz", type=int, default=256)
    parser.add_argument("--imgsz", type=int, default=320, help="scoring size (validator geometry)")
    parser.add_argument("--lr", type=float, default=3e-5,
                        help="derainer lr: a tenth of the all-weather recipe's 3e-4, as fine-tuning goes")
    parser.add_argument("--preset", default="mspfn_lite")
    parser.add_argument("--weights", default=None,
                        help="the start of every variant (default allweather; --quick: from scratch)")
    parser.add_argument("--data", type=Path, default=None,
                        help="your ultralytics data YAML (train split trains, val split is scored); "
                             "default: COCO128 split into 80 train / 48 held-out images")
    parser.add_argument("--head", default=None,
                        help="your detection head as a YAML mapping, e.g. \"{type: yolo, weights: best.pt}\" or "
                             "\"{type: torchvision, arch: fcos_resnet50_fpn, weights: w.pth, nc: 80}\" "
                             "(default: the COCO YOLOv8n of --shared)")
    parser.add_argument("--held-out", default="garg_nayar", help="rain family never trained on (scored apart)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--limit", type=int, default=None, help="score the first N held-out images only")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for training")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: mspfn_tiny from scratch, 2 steps, 4 images")
    args, extra = parser.parse_known_args(argv)
    variants = {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        own = next((extra[i + 1] for i, e in enumerate(extra[:-1]) if e == f"--loss-{name}"), None)
        if own is None and name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}: known {', '.join(VARIANTS)}; or give --loss-{name} YAML")
        variants[name] = variant_spec(_yaml_arg(f"--loss-{name}", own) if own is not None else VARIANTS[name])
    if args.baseline not in variants:
        raise SystemExit(f"--baseline {args.baseline!r} is not one of --variants ({', '.join(variants)})")
    if args.quick:
        args.preset, args.steps, args.batch, args.limit = "mspfn_tiny", 2, 2, 4
        args.train_imgsz, args.imgsz, args.bootstrap, args.seeds = 64, 128, 20, "0,1"
    elif args.weights is None:
        args.weights = "allweather"
    seeds = [int(s) for s in args.seeds.split(",")]
    coco = args.shared / "data" / "coco128"
    if args.head is None:
        args.head = {"type": "yolo", "weights": str(args.shared / "weights" / "yolov8n_coco.pt")}
        if not Path(args.head["weights"]).exists():
            raise SystemExit(f"missing {args.head['weights']}: pass --shared, or --head with your detector")
    else:
        args.head = _yaml_arg("--head", args.head)
        if not isinstance(args.head, dict) or "type" not in args.head:
            raise SystemExit(f"--head must be a head mapping with a type, e.g. \"{{type: yolo, weights: best.pt}}\"; "
                             f"got {args.head!r}")
    if args.data is None:
        if not (coco / "images" / "train2017").exists():
            raise SystemExit(f"missing {coco}: pass --shared (the folder with data/coco128), or --data YAML")
        args.data = write_split(coco, args.out / "data", val_count=48)
    elif not args.data.is_file():
        raise SystemExit(f"--data {args.data}: no such data YAML")
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in variants}
    for seed in seeds:  # seed by seed: an interrupted experiment has every variant of the first seeds
        for name, variant in variants.items():
            runs[name].append(train_variant(args, name, variant, seed))
    costs = {name: {"cpu_h": sum(r["cpu_s"] for r in rs) / 3600, "wall_h": sum(r["wall_s"] for r in rs) / 3600,
                    "steps_per_run": args.steps, "images_seen_per_run": args.steps * args.batch}
             for name, rs in runs.items()}
    records, accs, conditions = score(args, runs)
    result = table(args, records, accs, conditions, runs)
    text = markdown(result, costs)
    meta = {"steps": args.steps, "batch": args.batch, "train_imgsz": args.train_imgsz, "imgsz": args.imgsz,
            "seeds": seeds, "baseline": args.baseline, "lr": args.lr, "start": args.weights,
            "held_out": args.held_out, "variants": variants,
            "scored_images": len(accs[("clean", "identity")].psnr) or None, "bootstrap": args.bootstrap,
            "train_images": "80 COCO128 images outside the 48 held-out ones (2 of them validate, unused)"}
    stem = results_stem(list(variants), args.baseline)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "costs": costs, **result}, indent=2, default=str))
    (args.out / f"{stem}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
