"""Leave-one-family-out: how a derainer does on rain it never saw.

For every physical rain-zoo family X (streaks, garg_nayar, accumulation, raindrops, drizzle):

1. train the derainer from scratch on the mix of every family **but X** (``data.rain:
   mix:{exclude: [X]}``), at one fixed budget (``--steps``, same seed, same data) — and once on
   the mix of **all** families as the reference that has seen X;
2. score each model on X alone (intensity ``--intensity``, default 0.75 = heavy): PSNR-Y /
   SSIM-Y on the held-out COCO128 images rained with X, and COCO mAP50-95 of YOLOv8n on them
   (``taskderain eval``, one cache); Rain100L (another group's synthesis, test data only) is
   scored beside it for every model.

Training images: the 80 COCO128 images of the task-driven split (the 48 held-out images are
never trained on; they are the test images here). Rain100L is never trained or selected on.
Prints the table (Markdown) and writes ``<out>/results.json`` / ``results.md``.

    python benchmarks/rain_generalisation.py --steps 600          # CPU: ~6 runs x steps x ~1 s
    python benchmarks/rain_generalisation.py --quick              # smoke run (mspfn_tiny, seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from coco128_experiment import write_split  # noqa: E402  (benchmarks/ is not a package)

FAMILIES = ("streaks", "garg_nayar", "accumulation", "raindrops", "drizzle")


def run(cmd: List[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def train(args: argparse.Namespace, name: str, rain: str, split: Path) -> Path:
    """Train (or resume) one model; returns ``<out>/models/<name>.pt``, its final weights (last.pt:
    no selection on test data), named so that the report's labels tell the models apart."""
    out = args.out / "runs" / name
    done, model = out / "last.pt", args.out / "models" / f"{name}.pt"
    overrides = [f"out={out}", f"steps={args.steps}", f"model.name={args.preset}", f"data.images={split / 'train.txt'}",
                 f"data.rain={rain}", f"data.batch={args.batch}", f"data.patch_size={args.patch}", "data.val_split=4",
                 f"data.val_crop={args.patch * 2}", "val_every=1000", f"seed={args.seed}", f"amp={str(args.amp).lower()}",
                 "data.repeat=20", f"resume={str(done.exists()).lower()}"]
    if done.exists():
        from taskderain.train.checkpoint import load_train_checkpoint

        if load_train_checkpoint(done)["train"]["step"] >= args.steps and model.exists():
            return model
    run([sys.executable, "-m", "taskderain", "train", str(REPO / "pipelines" / "train" / "mspfn_lite-allweather.yaml"),
         "model.weights=null", "optim.lr=5e-4", *overrides])
    from taskderain.models import load_derainer, save_derainer

    save_derainer(load_derainer(done), model, metadata={"rain": rain, "steps": args.steps})
    return model


def score(args: argparse.Namespace, split: Path, models: Dict[str, Path], families: List[str]) -> Dict[str, Any]:
    """``taskderain eval`` of every model on every family at ``--intensity`` (+ clean), one cache."""
    rain = ",".join(f"{f}@{args.intensity}" for f in families)
    derainers = ",".join(f"{args.preset}:{path}" for path in models.values())
    report = args.out / "eval"
    pipeline = args.out / "pipeline.yaml"
    pipeline.write_text(f"derainer: {{name: identity}}\ndetector: {{weights: {args.detector}}}\ndevice: cpu\n")
    cmd = [sys.executable, "-m", "taskderain", "eval", str(pipeline), "--data", str(split / "coco128-split.yaml"),
           "--rain", rain, "--derainers", derainers, "--imgsz", str(args.imgsz), "--out", str(report), "--quiet",
           "--samples", "0"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    run(cmd)
    return json.loads((report / "results.json").read_text())


def rain100l(args: argparse.Namespace, path: Path) -> Optional[float]:
    root = args.shared / "data" / "rain100l"
    if not root.is_dir():
        return None
    out = args.out / "rain100l" / f"{path.stem}.json"
    if not out.exists():
        run([sys.executable, "-m", "taskderain", "eval-derain", str(root), "--model", args.preset, "--weights", str(path),
             "--json", str(out), *(["--limit", str(args.limit)] if args.limit else [])])
    return json.loads(out.read_text())["psnr_y"]


def table(records: List[Dict[str, Any]], labels: Dict[str, str], families: List[str], r100l: Dict[str, Any]) -> str:
    """Rows: held-out family X; columns: rainy, without X (never saw it), with X (saw it), clean."""
    def cell(cond: str, derainer: str, key: str) -> Optional[float]:
        row = next((r for r in records if r["condition"] == cond and r["derainer"] == derainer), None)
        return None if row is None else row.get(key)

    fmt = lambda v, d=2: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = ["| held-out family X | rainy PSNR-Y | trained without X | trained with X | rainy mAP50-95 | "
             "without X | with X | clean mAP50-95 |", "|---|---|---|---|---|---|---|---|"]
    clean = cell("clean", "identity", "map50_95")
    for family in families:
        cond = next(r["condition"] for r in records if r["condition"].startswith(family + "@"))
        without, with_x = labels[f"without_{family}"], labels["all"]
        lines.append(f"| {family} | {fmt(cell(cond, 'identity', 'psnr_y'))} | {fmt(cell(cond, without, 'psnr_y'))} | "
                     f"{fmt(cell(cond, with_x, 'psnr_y'))} | {fmt(cell(cond, 'identity', 'map50_95'), 3)} | "
                     f"{fmt(cell(cond, without, 'map50_95'), 3)} | {fmt(cell(cond, with_x, 'map50_95'), 3)} | "
                     f"{fmt(clean, 3)} |")
    lines.append("")
    lines.append("Rain100L PSNR-Y (dB) of each model: " + ", ".join(f"{k} {fmt(v)}" for k, v in r100l.items()))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("TASKDERAIN_SHARED", REPO.parent / "shared")))
    parser.add_argument("--out", type=Path, default=REPO.parent / "runs" / "rain_generalisation")
    parser.add_argument("--preset", default="mspfn_lite")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps of every model (same budget)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--intensity", type=float, default=0.75, help="test intensity of each family (0.75 = heavy)")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--limit", type=int, default=None, help="test on the first N held-out images only")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for training")
    parser.add_argument("--quick", action="store_true", help="smoke run: mspfn_tiny, 4 steps, 2 families, 4 images")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.steps, args.batch, args.patch, args.limit, args.imgsz = "mspfn_tiny", 4, 2, 32, 4, 128
        args.families = "streaks,drizzle"
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    coco = args.shared / "data" / "coco128"
    args.detector = args.shared / "weights" / "yolov8n_coco.pt"
    for need in (coco / "images" / "train2017", args.detector):
        if not need.exists():
            raise SystemExit(f"missing {need}: pass --shared (the folder with data/coco128 and weights/yolov8n_coco.pt)")
    split = args.out / "data"
    write_split(coco, split, val_count=48)
    models = {"all": train(args, "all", "{name: mix}", split)}
    for family in families:
        models[f"without_{family}"] = train(args, f"without_{family}", f"{{name: mix, exclude: [{family}]}}", split)
    result = score(args, split, models, families)
    specs = [d for d in result["meta"]["derainers"] if d["name"] != "identity"]
    labels = {name: spec["label"] for name, spec in zip(models, specs)}
    r100l = {name: rain100l(args, path) for name, path in models.items()}
    text = table(result["records"], labels, families, r100l)
    meta = {"steps": args.steps, "batch": args.batch, "patch": args.patch, "preset": args.preset,
            "test_intensity": args.intensity, "imgsz": args.imgsz, "families": families,
            "test_images": "the 48 held-out masked COCO128 images (coco128_experiment.write_split)",
            "train_images": "the other 80 COCO128 images (4 of them validate, unused for selection)"}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "table": text, "rain100l": r100l,
                                                       "records": result["records"]}, indent=2, default=str))
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
