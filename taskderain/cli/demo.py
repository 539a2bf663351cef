"""``taskderain demo``: rain → derain → detect on ultralytics' bundled sample images, offline.

Adds synthetic rain to ``bus.jpg`` and ``zidane.jpg`` (shipped inside the ultralytics wheel,
shrunk to 640 px, the detector's input size), derains them, detects on the clean, rainy and derained versions, writes one panel PNG
(clean | rainy | derained, detections drawn) and prints detections per image and condition.

Defaults — derainer: ``--derainer/--weights``, else ``mspfn_lite`` with the weights shipped in the
package: ``weights="default"`` (light-to-moderate synthetic rain) for ``--preset light`` / ``medium``
(the default), ``weights="allweather"`` (the rain-zoo mixture, none to storm) for ``heavy`` / ``storm``;
``--derainer prenet --weights prenet6_rain100h.pth`` for PReNet's heavy-rain weights. Detector:
``--yolo``; ``$TASKDERAIN_YOLO``; ``../shared/weights/yolov8n_coco.pt``; ultralytics' own
``yolov8n.pt`` (downloads when online); else none, and the demo says how to add one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Tuple


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="rain → derain → detect on bundled sample images (offline)",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--derainer", default=None, help="derainer preset (default: see above)")
    parser.add_argument("--weights", default=None, help="derainer weights file")
    parser.add_argument("--yolo", default=None, help="YOLO checkpoint (default: $TASKDERAIN_YOLO, ../shared, yolov8n.pt)")
    parser.add_argument("--preset", default="medium", help="rain preset (default medium)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=640, help="longest image side (default 640, the detector's)")
    parser.set_defaults(run=run)


def shared_dir() -> Optional[Path]:
    """``$TASKDERAIN_SHARED`` (set but empty: none), else ``../shared`` beside the working folder or this checkout."""
    env = os.environ.get("TASKDERAIN_SHARED")
    if env is not None:
        return Path(env) if env and Path(env).is_dir() else None
    candidates = [Path.cwd().parent / "shared", Path(__file__).resolve().parents[3] / "shared"]
    return next((c for c in candidates if c.is_dir()), None)


#: the shipped weights the demo uses for each rain preset: light rain the default's, heavy rain the all-weather ones
DEMO_WEIGHTS = {"light": "default", "medium": "default", "heavy": "allweather", "storm": "allweather"}


def pick_derainer(args: argparse.Namespace) -> Tuple[str, Optional[str], str]:
    """(preset, weights, how it was chosen)."""
    if args.derainer:
        return args.derainer, args.weights, "--derainer"
    tag = DEMO_WEIGHTS.get(args.preset, "default")
    return "mspfn_lite", tag, f"weights={tag!r} shipped with taskderain for {args.preset} rain (see the README's model card)"


def pick_detector(args: argparse.Namespace, device) -> Tuple[object, str]:
    """(Detector or None, how it was chosen / why there is none)."""
    from ..pipeline.build import build_head

    shared = shared_dir()
    choices = [(args.yolo, "--yolo"), (os.environ.get("TASKDERAIN_YOLO"), "$TASKDERAIN_YOLO")]
    if shared is not None:
        choices.append((str(shared / "weights" / "yolov8n_coco.pt"), f"{shared}/weights"))
    choices.append(("yolov8n.pt", "ultralytics' yolov8n.pt"))
    reasons = []
    for weights, how in choices:
        if not weights or (how.endswith("weights") and not Path(weights).is_file()):
            continue
        try:
            return build_head({"type": "yolo", "weights": weights}).to(device).eval(), f"{weights} ({how})"
        except (OSError, ValueError) as exc:
            if how in ("--yolo", "$TASKDERAIN_YOLO"):
                raise
            reasons.append(str(exc).splitlines()[0])
    return None, ("no detector: " + "; ".join(reasons) + ". Add one with --yolo PATH or TASKDERAIN_YOLO=PATH "
                  "(a YOLO checkpoint such as yolov8n.pt from https://github.com/ultralytics/assets/releases)")


def fit(image, size: int):
    """Shrink (H,W,3) ``image`` so its longest side is at most ``size`` (area interpolation)."""
    import cv2

    scale = size / max(image.shape[:2])
    if scale >= 1:
        return image
    return cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def run(args: argparse.Namespace) -> int:
    from ultralytics.utils import ASSETS

    from ..imageio import read_rgb, write_bytes_atomic, write_rgb
    from ..inference import DEFAULT_MAX_PIXELS, derain_tensor, resolve_device, to_tensor, to_uint8
    from ..metrics import psnr
    from ..models import create_derainer
    from ..rain import add_rain, image_seed, rain_params
    from ..visualize import draw_detections, make_panel
    from .common import ensure_writable_dir

    start = time.perf_counter()
    device = resolve_device(args.device)
    out = ensure_writable_dir(args.out)
    name, weights, why = pick_derainer(args)
    derainer = create_derainer(name, weights=weights).to(device).eval()
    detector, det_why = pick_detector(args, device)
    print(f"derainer: {name} — {why}\ndetector: {det_why}")
    params = rain_params(args.preset)
    rows, cells, titles = [], [], []
    for path in (Path(ASSETS) / "bus.jpg", Path(ASSETS) / "zidane.jpg"):
        clean = fit(read_rgb(path), args.size)
        rainy, _ = add_rain(clean, params, image_seed(path.stem, args.seed))
        derained = to_uint8(derain_tensor(derainer, to_tensor(rainy).to(device), max_pixels=DEFAULT_MAX_PIXELS))
        write_rgb(out / "rainy" / f"{path.stem}.png", rainy)
        write_rgb(out / "derained" / f"{path.stem}.png", derained)
        conditions = (("clean", clean, None), (f"rainy ({args.preset})", rainy, psnr(rainy, clean)),
                      (f"derained ({name})", derained, psnr(derained, clean)))
        for condition, image, score in conditions:
            count = None
            if detector is not None:
                detections = detector.predict(to_tensor(image).to(device))[0].to("cpu")
                image, count = draw_detections(image, detections), len(detections)
            rows.append({"image": path.name, "condition": condition, "detections": count,
                         "psnr_y": None if score is None else round(score, 2)})
            cells.append(image)
            titles.append(f"{path.stem} {condition}" + ("" if score is None else f" {score:.1f} dB")
                          + ("" if count is None else f" - {count} det"))
    panel_path = out / "demo_panel.png"
    write_rgb(panel_path, make_panel(cells, titles, height=360, columns=3))
    write_bytes_atomic(out / "demo.json", json.dumps({"derainer": name, "weights": weights, "rain": args.preset,
                                                      "seed": args.seed, "rows": rows}, indent=2).encode())
    print(f"\n{'image':<12}{'condition':<22}{'detections':>11}{'PSNR-Y dB':>11}")
    for row in rows:
        det = "-" if row["detections"] is None else row["detections"]
        score = "" if row["psnr_y"] is None else f"{row['psnr_y']:.2f}"
        print(f"{row['image']:<12}{row['condition']:<22}{det:>11}{score:>11}")
    print(f"\npanel: {panel_path}  ({time.perf_counter() - start:.0f} s)")
    if detector is None:
        print(det_why, file=sys.stderr)
    return 0
