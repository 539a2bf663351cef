"""``taskderain eval CONFIG --data DATA --out DIR``: what rain costs the tasks and what each derainer wins back.

Every rain condition (``--rain light,heavy`` or ``--intensity 0:1:5``; the clean images are always
the reference) × every derainer (``--derainers identity,prenet:W.pth,...``) on the same images:
PSNR-Y / SSIM-Y, COCO mAP50-95 / mAP50 / per-class AP (pycocotools), mIoU (with ``--masks`` and a
segmenter in CONFIG), recovery ratios and wall time per stage. Writes ``results.json``,
``results.csv``, ``report.md``, ``map_vs_intensity.png`` and ``samples.png``; per-image results are
cached in ``DIR/cache`` (or ``--cache``), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from .common import CLIError, ensure_writable_dir, load_pipeline_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluation report: mAP / mIoU / PSNR under rain, per derainer",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("config", type=Path, metavar="CONFIG",
                        help="pipeline YAML: its detector / segmenter are evaluated, its derainer is the default")
    parser.add_argument("--data", required=True, type=Path,
                        help="ultralytics data YAML (YOLO labels) or a COCO json annotation file (with --images)")
    parser.add_argument("--split", default="val", help="split of the data YAML to evaluate (default val)")
    parser.add_argument("--images", type=Path, default=None, help="image folder of a COCO json --data")
    rain = parser.add_mutually_exclusive_group()
    rain.add_argument("--rain", default=None, help="rain presets, e.g. light,heavy (default: CONFIG's rain)")
    rain.add_argument("--intensity", default=None, help="START:STOP:N evenly spaced intensities (0:1:5) or a list")
    parser.add_argument("--derainers", default=None,
                        help="NAME or NAME:WEIGHTS, comma-separated (identity is always included; default: "
                             "identity and CONFIG's derainer)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--out", required=True, type=Path, help="report folder")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default OUT/cache); share it between runs")
    parser.add_argument("--imgsz", type=int, default=None, help="longest image side (default: CONFIG's detector.imgsz)")
    parser.add_argument("--batch", type=int, default=16,
                        help="ultralytics' validator batch whose rect canvases the detector sees (default 16, as "
                             "YOLO.val); the images are still run one by one")
    parser.add_argument("--seed", type=int, default=None, help="rain seed (default: CONFIG's rain.seed)")
    parser.add_argument("--conf", type=float, default=0.001, help="detector confidence threshold for mAP (default 0.001)")
    parser.add_argument("--iou", type=float, default=0.7, help="detector NMS IoU for mAP (default 0.7)")
    parser.add_argument("--masks", type=Path, default=None, help="class-id mask folder (by image stem) for mIoU")
    parser.add_argument("--class-map", type=Path, default=None, help="YAML 'classes: {id: name}' mapping mask ids")
    parser.add_argument("--samples", type=int, default=3, help="images in the sample grid (default 3)")
    parser.add_argument("--allow-unpaired-labels", action="store_true",
                        help="ignore label files without an image instead of refusing the dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    from ..imageio import remove_stale_parts

    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be >= 1, got {args.limit}")
    if args.imgsz is not None and args.imgsz < 1:
        raise CLIError(f"--imgsz must be a positive number of pixels, got {args.imgsz}")
    if args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    for name in ("conf", "iou"):
        if not 0 <= getattr(args, name) <= 1:
            raise CLIError(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    for folder in (args.out, args.cache):  # before any work; a killed run's temporary files go
        if folder is not None:
            remove_stale_parts(ensure_writable_dir(folder))

    from ..evaluation import (EvalSettings, build_derainer_spec, evaluate_report, identity_spec, open_eval_data,
                              parse_derainers, parse_intensity, parse_rain)
    from ..evaluation.conditions import conditions_from_config
    from ..evaluation.report import results_table
    from ..inference import half_dtype, resolve_device

    config = load_pipeline_config(args.config, args.overrides)
    conditions = (parse_rain(args.rain) if args.rain else parse_intensity(args.intensity) if args.intensity
                  else conditions_from_config(config["rain"]))
    d = config["derainer"]
    if args.derainers:
        derainers = parse_derainers(args.derainers)
    else:  # identity and CONFIG's derainer, with its options
        derainers = [identity_spec()] + ([build_derainer_spec(d["name"], d["weights"], **d["options"])]
                                         if d["name"] != "identity" else [])
    data = open_eval_data(args.data, args.split, images=args.images, limit=args.limit, masks=args.masks,
                          class_map=args.class_map, allow_unpaired_labels=args.allow_unpaired_labels)
    device = resolve_device(config["device"])
    det_spec = _first_head(config, "detection")
    heads = _heads(config, data, args.imgsz, device)
    imgsz = args.imgsz if args.imgsz is not None else ((det_spec or {}).get("imgsz") or 640)
    settings = EvalSettings(imgsz=imgsz, batch=args.batch, seed=config["rain"]["seed"] if args.seed is None else args.seed,
                            conf=args.conf, iou=args.iou, max_det=(det_spec or {}).get("max_det") or 300,
                            dtype=half_dtype(device) if config["half"] else None, tile=config["tile"],
                            overlap=config["overlap"], max_pixels=config["max_pixels"],
                            samples=args.samples)
    for spec in derainers:
        spec.model.to(device)
    result = evaluate_report(
        data, conditions, derainers, args.out, heads, settings, cache_dir=args.cache,
        weights={n: h.get("weights") or h.get("cfg") for n, h in config["heads"].items()},
        device=str(device), progress=not args.quiet,
        extra_meta={"config": str(args.config), "overrides": list(args.overrides)})
    print(results_table(result["records"]))
    counts = ", ".join(f"{k} {v['reused']} reused / {v['computed']} computed" for k, v in result["cache"].items())
    print(f"cache: {counts}")
    print(f"wrote {', '.join(str(p) for p in result['files'].values())}")
    return 0


def _first_head(config: dict, task: str) -> Optional[Dict[str, Any]]:
    """The spec of the config's first head of ``task`` (``detection`` / ``segmentation``), or None."""
    from ..stages.head import head_class

    return next((h for h in config["heads"].values() if head_class(h["type"]).task == task), None)


def _heads(config: dict, data, imgsz, device) -> Dict[str, Any]:
    """Every head of the pipeline config, built and checked against the data (segmentation heads only with masks)."""
    from ..pipeline.build import build_head
    from ..stages.head import head_class

    heads: Dict[str, Any] = {}
    for name, spec in config["heads"].items():
        task = head_class(spec["type"]).task
        source = spec.get("weights") or spec.get("cfg") or spec["type"]
        if task == "segmentation" and data.masks is None:
            print(f"note: CONFIG has a segmenter ({name}) but no --masks was given: its mIoU is not computed",
                  file=sys.stderr)
            continue
        head = build_head(spec, imgsz=imgsz if task == "detection" else None).to(device).eval()
        if task == "detection":
            if head.nc != len(data.names):
                raise CLIError(f"the detector {name} ({source}) has {head.nc} classes but {data.source} "
                               f"names {len(data.names)}; evaluate with a detector trained on these classes")
            differ = [i for i in data.names if head.names.get(i) != data.names[i]]
            if differ:
                i = differ[0]
                print(f"warning: {len(differ)} class names differ between the detector {name} and {data.source} "
                      f"(e.g. class {i}: {head.names.get(i)!r} vs {data.names[i]!r}); scoring by class index",
                      file=sys.stderr)
        elif task == "segmentation":
            if data.mask_names and len(data.mask_names) != head.num_classes:
                raise CLIError(f"the segmenter {name} predicts {head.num_classes} classes but the --class-map maps "
                               f"the masks to {len(data.mask_names)}; use the class map it was trained with")
            if spec.get("weights") is None:
                print(f"warning: the segmenter {name} has no weights (its weights are null): its mIoU is meaningless",
                      file=sys.stderr)
        heads[name] = head
    if data.masks is not None and not any(h.task == "segmentation" for h in heads.values()):
        print("note: --masks given but CONFIG has no segmenter: mIoU is not computed", file=sys.stderr)
    return heads
