"""Scoring a derainer on paired rainy/clean images with the papers' PSNR/SSIM protocol."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..data import PairedRainDataset
from ..inference import DEFAULT_MAX_PIXELS, NonFiniteOutputError, derain_tensor, module_device, to_uint8
from ..metrics import describe_protocol, psnr, ssim
from ..models.base import Derainer


def evaluate_derainer(model: Derainer, dataset: PairedRainDataset, tile: Optional[int] = None,
                      overlap: int = 64, dtype: Optional[torch.dtype] = None, channel: str = "y",
                      round_y: bool = True, progress: bool = True,
                      max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Dict[str, Any]:
    """Mean PSNR (dB) and SSIM of ``model``'s 8-bit outputs against the clean images.

    Outputs are rounded to 8 bits before scoring, as published numbers are computed on saved
    PNGs. The model runs on its own device. ``channel``/``round_y`` select the protocol
    (default: MATLAB Y rounded to integers, as the papers). Tiling follows
    :func:`~taskderain.inference.choose_tile` (images above ``max_pixels`` are tiled).

    Returns:
        ``{"psnr_y", "ssim_y", "n", "protocol", "per_image": [{"name", "psnr_y", "ssim_y"}, ...]}``
        (keys ``psnr_rgb``/``ssim_rgb`` for ``channel="rgb"``).
    """
    device = module_device(model)
    psnr_key, ssim_key = f"psnr_{channel}", f"ssim_{channel}"
    rows = []
    for item in tqdm(dataset, total=len(dataset), desc="eval-derain", unit="img", disable=not progress):
        rainy = item["rainy"][None].to(device)
        try:
            derained = to_uint8(derain_tensor(model, rainy, tile=tile, overlap=overlap, dtype=dtype,
                                              max_pixels=max_pixels))
        except NonFiniteOutputError as exc:
            raise NonFiniteOutputError(f"{item['name']}: {exc}") from None
        clean = to_uint8(item["clean"])
        rows.append({"name": item["name"],
                     psnr_key: psnr(derained, clean, channel=channel, round_y=round_y),
                     ssim_key: ssim(derained, clean, channel=channel, round_y=round_y)})
    if not rows:
        raise ValueError("the dataset holds no image pairs to evaluate")
    return {
        psnr_key: float(np.mean([r[psnr_key] for r in rows])),
        ssim_key: float(np.mean([r[ssim_key] for r in rows])),
        "n": len(rows),
        "protocol": describe_protocol(channel, round_y),
        "per_image": rows,
    }
