"""Task-driven training on rainy COCO128: clean, rainy, restoration-only, cascade, joint, detector_on_rain.

The experiment of the training issue, end to end with ``taskderain train`` runs:

1. split COCO128 into 100 train / 28 val images; every val image has a semantic mask
   (``<out>/data/coco128-split.yaml``, ``.txt`` image lists);
2. phase 1 (in parallel): ``segmenter`` (clean images, the 7 classes of
   pipelines/data/coco-semantic7.yaml), ``restoration`` (the derainer with the MSPFN loss alone:
   cascade mode with task weights 0, so data, rain and validation are those of the other rows),
   ``detector_on_rain`` (the budget of both phases, running through phase 2);
3. phase 2 (in parallel, same budget each): the restoration run continued (``resume=true``),
   ``cascade`` and ``joint``, both starting from the phase-1 derainer, with the phase-1 segmenter;
4. the clean and rainy rows: the pretrained detector and the trained segmenter on the clean and
   on the rainy val images.

Every run validates on the same rainy val images (heavy rain, seed 0) with ``validate_task`` (the
evaluator of ``taskderain eval``, ultralytics' validator geometry at imgsz); the table scores each run's final weights (no checkpoint selection on val),
exported with ``export_stages`` to ``<out>/export/<run>/`` and scored again in one process.
Budgets are wall-clock (``time=`` of the trainer), so step counts depend on the machine: they are
in the table. Writes ``<out>/results.json`` and ``<out>/results.md``.

    python benchmarks/coco128_experiment.py --shared ../shared --device cuda --phase-minutes 2.5
    python benchmarks/coco128_experiment.py --quick          # a CPU smoke run (tiny sizes)
    python benchmarks/coco128_experiment.py --rescore DIR    # score exported weights again, no training
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
CLASS_MAP = REPO / "pipelines" / "data" / "coco-semantic7.yaml"
ROWS = ("clean", "rainy", "restoration", "cascade", "joint", "detector_on_rain")


def write_split(coco: Path, out: Path, val_count: int = 28) -> Path:
    """A data YAML whose val split is the last ``val_count`` images that have masks; the rest train."""
    images = sorted((coco / "images" / "train2017").glob("*.jpg"))
    masked = {p.stem for p in (coco / "masks" / "train2017").glob("*.png")}
    with_masks = [p for p in images if p.stem in masked]
    val = with_masks[-val_count:]
    train = [p for p in images if p not in set(val)]
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.txt").write_text("".join(f"{p}\n" for p in train))
    (out / "val.txt").write_text("".join(f"{p}\n" for p in val))
    names = yaml.safe_load((coco / "coco128.yaml").read_text())["names"]
    data = {"path": str(coco), "train": str(out / "train.txt"), "val": str(out / "val.txt"), "names": names}
    path = out / "coco128-split.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def base_config(args: argparse.Namespace, split: Path, masks: Path) -> Dict[str, Any]:
    """The settings every task run shares (data, rain, detector, validation)."""
    return {
        "seed": 0, "device": args.device, "amp": args.amp, "epochs": 100000, "val_every": args.val_every,
        "model": {"name": args.preset},
        "data": {"detection": str(split), "train_split": "train", "val_split_name": "val", "imgsz": args.imgsz,
                 "rain_preset": "heavy", "rain_seed": 0, "clean_prob": 0.1, "batch": args.batch,
                 "workers": args.workers, "masks": str(masks), "class_map": str(CLASS_MAP)},
        "detector": {"weights": str(args.detector)},
        "optim": {"lr": 5e-4, "lr_detector": 1e-5, "lr_segmenter": 1e-5},
    }


def run_config(base: Dict[str, Any], out: Path, name: str, **changes: Any) -> Path:
    """Write ``base`` updated by ``changes`` (sections merged) to ``out/configs/<name>.yaml``."""
    config = json.loads(json.dumps(base))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    config["out"] = str(out / "runs" / name)
    path = out / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def launch(config: Path, out: Path, *overrides: str) -> subprocess.Popen:
    """``python -m taskderain train CONFIG overrides`` in the background; output to ``out/logs``."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    log = open(out / "logs" / f"{config.stem}.log", "a")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30"}
    return subprocess.Popen([sys.executable, "-m", "taskderain", "train", str(config), *overrides],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait(procs: Dict[str, subprocess.Popen], out: Path) -> None:
    failed = [name for name, p in procs.items() if p.wait() != 0]
    if failed:
        tails = "\n".join(f"--- {n}:\n" + (out / "logs" / f"{n}.log").read_text()[-2000:] for n in failed)
        raise SystemExit(f"run(s) {', '.join(failed)} failed:\n{tails}")


def final_metrics(run: Path) -> Dict[str, Optional[float]]:
    """The last validation row of ``run/log.csv`` (the final weights) and the step count."""
    rows = list(csv.DictReader(open(run / "log.csv")))
    val = [r for r in rows if not r["loss"]]
    last = val[-1] if val else {}
    out: Dict[str, Optional[float]] = {k[4:]: (float(v) if v else None) for k, v in last.items() if k.startswith("val_")}
    out["steps"] = int(rows[-1]["step"]) if rows else 0
    return out


def _step(folder: Path) -> Optional[int]:
    """Training steps recorded in an exported stage file of ``folder`` (None if none says)."""
    from taskderain.checkpoint import read_checkpoint

    for name in ("derainer.pt", "segmenter.pt"):
        if (folder / name).is_file():
            return read_checkpoint(folder / name).get("metadata", {}).get("step")
    if (folder / "detector.pt").is_file():
        from ultralytics.nn.tasks import torch_safe_load

        return torch_safe_load(str(folder / "detector.pt"))[0].get("taskderain", {}).get("step")
    return None


def score_exports(args: argparse.Namespace, config_path: Path, exports: Path) -> Dict[str, Dict[str, Any]]:
    """Every row scored on the rainy val images from stand-alone weights files (``export_stages`` layout).

    ``exports/<row>/`` may hold ``derainer.pt`` (else identity), ``detector.pt`` (else the
    pretrained detector) and ``segmenter.pt`` (else ``exports/segmenter/segmenter.pt``, the
    segmenter trained alone). ``clean`` and ``rainy`` use identity + pretrained detector. Scoring
    is :func:`~taskderain.train.tasks.validate_task` (the training validation: the evaluator of
    ``taskderain eval``, NMS as ultralytics' validator, no NMS time limit), so every row is measured
    the same way.
    """
    import torch

    from taskderain.evaluation import clean_condition
    from taskderain.inference import resolve_device
    from taskderain.models import create_derainer, load_derainer
    from taskderain.pipeline import Pipeline
    from taskderain.stages import create_detector, load_segmenter
    from taskderain.train import load_train_config
    from taskderain.train.tasks import TaskData, validate_task

    config = load_train_config(config_path)
    device = resolve_device(args.device)
    data = TaskData(config)
    det = config["heads"]["detector"]
    amp = torch.bfloat16 if args.amp else None
    default_seg = exports / "segmenter" / "segmenter.pt"

    def pipeline(folder: Optional[Path]) -> Pipeline:
        file = (lambda name: folder / name if folder is not None and (folder / name).is_file() else None)
        derainer = load_derainer(file("derainer.pt")) if file("derainer.pt") else create_derainer("identity")
        detector = create_detector(weights=file("detector.pt") or det["weights"], imgsz=config["data"]["imgsz"],
                                   conf=det["conf"], iou=det["iou"])
        seg = file("segmenter.pt") or (default_seg if default_seg.is_file() else None)
        return Pipeline(derainer, [detector, load_segmenter(seg) if seg else None]).to(device).eval()

    rows: Dict[str, Dict[str, Any]] = {}
    base = pipeline(None)
    rows["rainy"] = validate_task(base, data, amp)
    rain, data.condition = data.condition, clean_condition()  # the same val images without rain
    rows["clean"] = validate_task(base, data, amp)
    data.condition = rain
    for folder in sorted(p for p in exports.iterdir() if p.is_dir() and p.name != "segmenter"):
        rows[folder.name] = {**validate_task(pipeline(folder), data, amp), "steps": _step(folder)}
    return rows


def table(results: Dict[str, Dict[str, Any]]) -> str:
    fmt = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = ["| row | mAP50-95 | mAP50 | mIoU | PSNR-Y (dB) | steps |", "|---|---|---|---|---|---|"]
    for row in [r for r in ROWS if r in results] + [r for r in results if r not in ROWS and r != "segmenter"]:
        r = results[row]
        lines.append(f"| {row} | {fmt(r.get('map50_95'))} | {fmt(r.get('map50'))} | {fmt(r.get('miou'))} | "
                     f"{fmt(r.get('psnr_y'), 2)} | {r.get('steps', '–')} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("TASKDERAIN_SHARED", REPO.parent / "shared")))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "coco128_experiment")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default="mspfn_lite")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--val-every", type=int, default=5, help="validate every N epochs")
    parser.add_argument("--phase-minutes", type=float, default=60.0, help="wall-clock budget of each phase")
    parser.add_argument("--segmenter", default="FPN:mobilenet_v2", help="ARCH:ENCODER of the segmenter")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run (mspfn_tiny, 64 px, seconds)")
    parser.add_argument("--rescore", type=Path, default=None,
                        help="no training: score the stand-alone weights in DIR/<row>/ (export_stages layout)")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.imgsz, args.batch, args.phase_minutes, args.val_every = "mspfn_tiny", 64, 4, 0.1, 1000
    coco = args.shared / "data" / "coco128"
    args.detector = args.shared / "weights" / "yolov8n_coco.pt"
    for need in (coco / "coco128.yaml", args.detector):
        if not need.exists():
            raise SystemExit(f"missing {need}: pass --shared (the folder with data/coco128 and weights/yolov8n_coco.pt)")
    out = args.out
    split = write_split(coco, out / "data")
    base = base_config(args, split, coco / "masks" / "train2017")
    if args.rescore is not None:
        if not args.rescore.is_dir():
            raise SystemExit(f"--rescore: no folder {args.rescore} (expected <row>/derainer.pt, detector.pt, segmenter.pt)")
        results = score_exports(args, run_config(base, out, "rescore", mode="cascade"), args.rescore)
        (out / "rescore.json").write_text(json.dumps({"results": results, "exports": str(args.rescore)}, indent=2))
        print(table(results))
        return 0
    hours = args.phase_minutes / 60
    arch, encoder = args.segmenter.split(":")
    runs = out / "runs"
    seg = {"arch": arch, "encoder": encoder, "num_classes": 7}
    started = time.perf_counter()

    # phase 1: segmenter, restoration (MSPFN loss only), detector_on_rain (both phases' budget)
    cfg = {
        "segmenter": run_config(base, out, "segmenter", mode="segmenter", best_metric="miou", segmenter=seg,
                                detector=None, optim={"lr_segmenter": 1e-3}),  # null: no detector head
        "restoration": run_config(base, out, "restoration", mode="cascade", best_metric="psnr_y",
                                  loss={"restoration": 1.0, "detection": 0.0, "segmentation": 0.0}),
        "detector_on_rain": run_config(base, out, "detector_on_rain", mode="detector_on_rain",
                                       best_metric="map50_95", data={"masks": None, "class_map": None}),
    }
    detector_on_rain = launch(cfg["detector_on_rain"], out, f"time={2 * hours}")
    wait({"segmenter": launch(cfg["segmenter"], out, f"time={hours}"),
          "restoration": launch(cfg["restoration"], out, f"time={hours}")}, out)
    phase1 = time.perf_counter() - started
    seg_ckpt = runs / "segmenter" / "export"
    from taskderain.train import export_stages

    segmenter = export_stages(runs / "segmenter" / "last.pt", seg_ckpt, half=False)["segmenter"]
    start = runs / "restoration" / "phase1.pt"  # a copy: the continued restoration run rewrites last.pt
    shutil.copyfile(runs / "restoration" / "last.pt", start)
    with_seg = {"weights": str(segmenter)}
    cfg["cascade"] = run_config(base, out, "cascade", mode="cascade", best_metric="map50_95",
                                model={"weights": str(start)}, segmenter=with_seg)
    cfg["joint"] = run_config(base, out, "joint", mode="joint", best_metric="map50_95",
                              model={"weights": str(start)}, segmenter=with_seg)
    # the restoration run continues with the segmenter measuring mIoU from here on: a new key in
    # its config would stop resume, so it keeps its own (no segmenter) and gets mIoU at the end
    procs = {name: launch(cfg[name], out, f"time={hours}") for name in ("cascade", "joint")}
    procs["restoration"] = launch(cfg["restoration"], out, f"time={hours}", "resume=true")
    procs["detector_on_rain"] = detector_on_rain
    wait(procs, out)

    exports = out / "export"
    for name in ("segmenter", "restoration", "cascade", "joint", "detector_on_rain"):
        export_stages(runs / name / "last.pt", exports / name, half=False)
    results = score_exports(args, cfg["cascade"], exports)
    results["segmenter"] = final_metrics(runs / "segmenter")  # alone, on clean val images
    summary = {"results": results, "phase_minutes": args.phase_minutes, "phase1_s": phase1,
               "total_s": time.perf_counter() - started, "device": args.device, "preset": args.preset,
               "imgsz": args.imgsz, "batch": args.batch, "amp": args.amp, "segmenter": args.segmenter,
               "split": str(split)}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    text = table(results)
    (out / "results.md").write_text(text + "\n")
    print(text)
    print(f"segmenter alone on clean val: mIoU {results['segmenter'].get('miou')}; total {summary['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
