"""Tiny training setups shared by the training tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
