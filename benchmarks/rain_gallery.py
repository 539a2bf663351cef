"""Gallery of synthetic rain beside the real Rain100L input: one PNG, a row per image.

Columns: clean | each preset | the real Rain100L rainy input of the same image, each labelled
with its PSNR-Y against the clean image (MATLAB Y, 8-bit). Seeds: ``image_seed("norain-NNN", seed)``.

    python benchmarks/rain_gallery.py --images 1,5,13 --out benchmarks/results/rain_gallery.png
    python benchmarks/rain_gallery.py --images 1 --crop 100,100,240,160 --zoom 3   # look closely
    python benchmarks/rain_gallery.py --calibrate   # also print mean PSNR-Y per preset over all images
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from taskderain.imageio import read_rgb, write_rgb
from taskderain.metrics import psnr
from taskderain.rain import add_rain, image_seed, list_presets, rain_params

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "rain100l"
HEADER = 28


def label(cell: np.ndarray, text: str) -> np.ndarray:
    """The cell with a black header strip carrying ``text``."""
    strip = np.zeros((HEADER, cell.shape[1], 3), np.uint8)
    cv2.putText(strip, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, cell], 0)


def fit(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Letterbox ``image`` into (height, width) without distorting it (grey bars)."""
    h, w = size
    scale = min(h / image.shape[0], w / image.shape[1])
    if scale != 1:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    out = np.full((h, w, 3), 64, np.uint8)
    top, left = (h - image.shape[0]) // 2, (w - image.shape[1]) // 2
    out[top : top + image.shape[0], left : left + image.shape[1]] = image
    return out


def gallery_row(root: Path, index: int, presets: List[str], seed: int, crop: Optional[Tuple[int, int, int, int]], zoom: int) -> List[np.ndarray]:
    """Labelled cells for one Rain100L image: clean, each preset, the real rainy input."""
    name = f"norain-{index:03d}"
    clean = read_rgb(root / f"{name}.png")
    cells = [("clean " + name, clean)]
    for preset in presets:
        rainy, _ = add_rain(clean, rain_params(preset), image_seed(name, seed))
        cells.append((f"{preset} {psnr(rainy, clean):.1f} dB", rainy))
    real = root / "rainy" / f"rain-{index:03d}.png"
    if real.exists():
        rainy = read_rgb(real)
        cells.append((f"Rain100L real {psnr(rainy, clean):.1f} dB", rainy))
    out = []
    for text, image in cells:
        if crop is not None:
            x, y, w, h = crop
            image = image[y : y + h, x : x + w]
        if zoom > 1:
            image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        out.append((text, image))
    size = max(i.shape[0] for _, i in out), max(i.shape[1] for _, i in out)
    size = (size[0], size[0] * 3 // 2) if crop is None else size
    return [label(fit(image, size), text) for text, image in out]


def calibrate(root: Path, presets: List[str], seed: int) -> None:
    """Print the mean PSNR-Y (rainy vs clean, 8-bit) of each preset over every norain-NNN.png in ``root``."""
    paths = sorted(root.glob("norain-*.png"))
    cleans = [read_rgb(p) for p in paths]
    targets = {"light": "Rain100L inputs 26.90", "heavy": "Rain100H inputs 13.55"}
    for preset in presets:
        params = rain_params(preset)
        values = [psnr(add_rain(c, params, image_seed(p.stem, seed))[0], c) for p, c in zip(paths, cleans)]
        note = f"  (real {targets[preset]})" if preset in targets else ""
        print(f"{preset:<7} mean PSNR-Y {np.mean(values):.3f} dB over {len(values)} images, sd {np.std(values):.2f}{note}")


def main(argv: Optional[List[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="Rain100L test folder (norain-NNN.png, rainy/rain-NNN.png)")
    parser.add_argument("--images", default="1,5,13", help="comma-separated image numbers NNN (default 1,5,13)")
    parser.add_argument("--presets", default=",".join(list_presets()), help="comma-separated presets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", default=None, help="x,y,w,h window to show instead of the whole image")
    parser.add_argument("--zoom", type=int, default=1, help="integer nearest-neighbour zoom (with --crop)")
    parser.add_argument("--calibrate", action="store_true", help="print mean PSNR-Y per preset over all images of --root")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rain_gallery.png")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"Rain100L folder not found: {args.root} (pass --root)")
    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    rows = [np.concatenate(gallery_row(args.root, int(i), presets, args.seed, crop, args.zoom), 1) for i in args.images.split(",")]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    write_rgb(args.out, np.concatenate(rows, 0))
    print(f"wrote {args.out}")
    if args.calibrate:
        calibrate(args.root, presets, args.seed)
    return args.out


if __name__ == "__main__":
    main()
