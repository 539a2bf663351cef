"""Tiny training setups shared by the training tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml


def write_clean_images(folder: Path, count: int) -> Path:
    """``count`` clean 40x40 PNGs with structure (10x10 noise blocks), for tiny training runs."""
    from taskderain.imageio import write_rgb

    generator = np.random.default_rng(0)
    for i in range(count):
        block = (generator.random((10, 10, 3)) * 255).astype(np.uint8)
        write_rgb(folder / f"im{i}.png", block.repeat(4, 0).repeat(4, 1))
    return folder


def tiny_train_config(images: Path, out: Path, steps: int = 10, batch: int = 2, **top) -> dict:
    """A restoration config for mspfn_tiny on ``images`` (2 held out), 24 px patches, seed 3."""
    config = {"out": str(out), "steps": steps, "seed": 3, "device": "cpu", "model": {"name": "mspfn_tiny"},
              "data": {"images": str(images), "val_split": 2, "val_crop": 32, "patch_size": 24, "batch": batch}}
    config.update(top)
    return config


def write_yolo_data(root: Path) -> Path:
    """Under ``root``: 6 images 64x48 (non-square: letterbox padding matters) with 1-2 boxes each,
    3 classes, masks; returns the data YAML."""
    from taskderain.imageio import write_rgb

    rng = np.random.default_rng(0)
    for i in range(6):
        image = (rng.random((12, 16, 3)) * 80).astype(np.uint8).repeat(4, 0).repeat(4, 1)
        labels, mask = [], np.zeros((48, 64), np.uint8)
        for k in range(1 + i % 2):
            c = (i + k) % 3
            x0, y0 = 8 + 24 * k, 8 + 4 * (i % 3)
            image[y0:y0 + 20, x0:x0 + 20] = [(200, 40, 40), (40, 200, 40), (40, 40, 200)][c]
            mask[y0:y0 + 20, x0:x0 + 20] = c + 1
            labels.append(f"{c} {(x0 + 10) / 64:.6f} {(y0 + 10) / 48:.6f} {20 / 64:.6f} {20 / 48:.6f}")
        write_rgb(root / "images" / "train" / f"im{i}.png", image)
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / f"im{i}.txt").write_text("\n".join(labels) + "\n")
        (root / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), mask)
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": {0: "unlabeled", 1: "a", 2: "b", 3: "c"}}))
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/train",
                                                    "val": "images/train", "names": ["a", "b", "c"]}))
    return root / "data.yaml"
