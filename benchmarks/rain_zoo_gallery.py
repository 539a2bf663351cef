"""Gallery of the rain zoo: every family at three intensities, labelled with PSNR-Y against the clean image.

One block per image (ultralytics' bundled ``bus.jpg`` and, when ``../shared/data/coco128`` is
there, one COCO128 image), resized to ``--size`` px on the long side; one row per family, columns
clean | intensity 0.25 | 0.5 | 0.9 (``mix`` is left out by default: it is a draw over the others).
Seeds: ``image_seed(stem, seed)``. Writes the PNG and a JSON of
the PSNR-Y figures; with COCO128 present it also prints the mean PSNR-Y of every family at
intensities 0.25 / 0.5 / 0.75 / 1.0 over ``--calibrate`` COCO128 images (Rain100H's inputs: 13.55 dB).

    python benchmarks/rain_zoo_gallery.py
    python benchmarks/rain_zoo_gallery.py --families garg_nayar,raindrops --crop 100,80,200,150 --zoom 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from taskderain.imageio import read_rgb, write_rgb
from taskderain.metrics import psnr
from taskderain.rain import image_seed
from taskderain.rain.zoo import create_rain, list_rains

REPO = Path(__file__).resolve().parents[1]
COCO = REPO.parent / "shared" / "data" / "coco128" / "images" / "train2017"
HEADER = 24
GALLERY_INTENSITIES = (0.25, 0.5, 0.9)
TABLE_INTENSITIES = (0.25, 0.5, 0.75, 1.0)


def resize_long(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled (area interpolation) so that its long side is ``size`` px."""
    scale = size / max(image.shape[:2])
    return cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def label(cell: np.ndarray, text: str) -> np.ndarray:
    """The cell with a black header strip carrying ``text``."""
    strip = np.zeros((HEADER, cell.shape[1], 3), np.uint8)
    cv2.putText(strip, text, (5, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, cell], 0)


def sources(size: int) -> List[Tuple[str, np.ndarray]]:
    """(stem, (H, W, 3) uint8 RGB) of bus.jpg and one COCO128 image if present."""
    from ultralytics.utils import ASSETS

    out = [("bus", resize_long(read_rgb(Path(ASSETS) / "bus.jpg"), size))]
    if COCO.is_dir():
        first = sorted(COCO.glob("*.jpg"))[:1]
        out += [(p.stem, resize_long(read_rgb(p), size)) for p in first]
    return out


def crop_zoom(image: np.ndarray, crop: Optional[Tuple[int, int, int, int]], zoom: int) -> np.ndarray:
    if crop is not None:
        x, y, w, h = crop
        image = image[y : y + h, x : x + w]
    return cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else image


def gallery(images: Sequence[Tuple[str, np.ndarray]], families: Sequence[str], seed: int,
            crop: Optional[Tuple[int, int, int, int]], zoom: int) -> Tuple[np.ndarray, Dict]:
    """The gallery image and {image: {family: {intensity: PSNR-Y dB}}}."""
    blocks, figures = [], {}
    for stem, clean in images:
        figures[stem] = {}
        for family in families:
            row = [label(crop_zoom(clean, crop, zoom), f"{stem} clean")]
            figures[stem][family] = {}
            for x in GALLERY_INTENSITIES:
                rainy = create_rain(family, intensity=x).apply(clean, image_seed(stem, seed))
                value = psnr(rainy, clean)
                figures[stem][family][str(x)] = round(value, 2)
                row.append(label(crop_zoom(rainy, crop, zoom), f"{family} {x:.2f}  {value:.1f} dB"))
            blocks.append(np.concatenate(row, 1))
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 4), (0, width - b.shape[1]), (0, 0))) for b in blocks]
    return np.concatenate(blocks, 0), figures


def calibrate(families: Sequence[str], count: int, size: int, seed: int) -> Dict:
    """Mean PSNR-Y of each family at each of TABLE_INTENSITIES over ``count`` COCO128 images."""
    paths = sorted(COCO.glob("*.jpg"))[:count]
    cleans = [(p.stem, resize_long(read_rgb(p), size)) for p in paths]
    table: Dict[str, Dict[str, float]] = {}
    print(f"mean PSNR-Y (dB) over {len(cleans)} COCO128 images at {size} px (Rain100H inputs: 13.55, Rain100L: 26.90)")
    print("family      " + "".join(f"{x:>8.2f}" for x in TABLE_INTENSITIES))
    for family in families:
        table[family] = {}
        for x in TABLE_INTENSITIES:
            model = create_rain(family, intensity=x)
            values = [psnr(model.apply(c, image_seed(stem, seed)), c) for stem, c in cleans]
            table[family][str(x)] = round(float(np.mean(values)), 2)
        print(f"{family:<12}" + "".join(f"{table[family][str(x)]:>8.2f}" for x in TABLE_INTENSITIES))
    return table


def main(argv: Optional[List[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(n for n in list_rains() if n != "mix"), help="comma-separated families")
    parser.add_argument("--size", type=int, default=480, help="long side of the images, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", default=None, help="x,y,w,h window to show instead of the whole image")
    parser.add_argument("--zoom", type=int, default=1, help="integer nearest-neighbour zoom (with --crop)")
    parser.add_argument("--calibrate", type=int, default=10, help="COCO128 images for the PSNR table (0 = skip)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rain_zoo_gallery.png")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    start = time.perf_counter()
    picture, figures = gallery(sources(args.size), families, args.seed, crop, args.zoom)
    write_rgb(args.out, picture)
    print(f"wrote {args.out} ({time.perf_counter() - start:.1f} s)")
    result = {"size": args.size, "seed": args.seed, "gallery_psnr_y": figures}
    if args.calibrate > 0 and COCO.is_dir():
        result["coco128_mean_psnr_y"] = calibrate(families, args.calibrate, args.size, args.seed)
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {json_path} ({time.perf_counter() - start:.1f} s)")
    return args.out


if __name__ == "__main__":
    main()
