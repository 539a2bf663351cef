"""PSNR as deraining papers report it: 20·log10(255 / RMSE) on 8-bit MATLAB Y, no border shaving."""

from __future__ import annotations

import math

import numpy as np
import torch

from taskderain.metrics.color import scored_planes, scored_planes_torch
from taskderain.metrics.reduction import BatchMetric

PEAK = 255.0


def psnr(a: np.ndarray, b: np.ndarray, channel: str = "y", round_y: bool = True) -> float:
    """Peak signal-to-noise ratio of two RGB images, in dB.

    ``PSNR = 20·log10(255 / RMSE)`` with the RMSE over all pixels of the scored planes: MATLAB
    ``rgb2ycbcr`` Y (``channel="y"``, rounded to integers when ``round_y``) or the three RGB
    channels together (``channel="rgb"``), values in 0..255, no border shaving.

    Args:
        a, b: (H, W, 3) RGB, uint8 or float in [0, 1]. Floats are rounded to 8 bits first, as
            published numbers are computed on saved PNGs.
        channel: ``"y"`` (the protocol) or ``"rgb"``.
        round_y: round Y as MATLAB does for uint8 images (default); False keeps float Y.

    Returns:
        PSNR in dB; ``inf`` for identical images (zero error).

    Raises:
        ValueError: shapes differ (both are named), bad layout or dtype, unknown channel.
    """
    x, y = scored_planes(a, b, channel, round_y)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(PEAK / math.sqrt(mse))


def psnr_torch(
    pred: torch.Tensor,
    target: torch.Tensor,
    channel: str = "y",
    data_range: float = 1.0,
    quantize: bool = False,
    round_y: bool | None = None,
) -> torch.Tensor:
    """Batched PSNR for training loops, in dB per image.

    Same maths as :func:`psnr`. With ``quantize=True`` it is the exact protocol (inputs rounded
    to 8 bits, Y rounded, float64; matches :func:`psnr`); with ``quantize=False`` (default) it is
    differentiable and keeps the input precision (at least float32). Device-agnostic.

    Args:
        pred, target: (B, 3, H, W) float RGB in [0, data_range].
        channel: ``"y"`` or ``"rgb"``.
        data_range: value of white in the inputs (1.0 for [0, 1]).
        quantize: score 8-bit-rounded inputs exactly as the protocol does.
        round_y: round Y to integers; defaults to ``quantize``.

    Returns:
        (B,) PSNR in dB; ``inf`` where an image equals its target.
    """
    x, y = scored_planes_torch(pred, target, channel, data_range, quantize, round_y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 20.0 * torch.log10(PEAK / torch.sqrt(mse))


class PSNR(BatchMetric):
    """Module form of :func:`psnr_torch`: holds the options, returns dB.

    Args:
        channel, data_range, quantize, round_y: as in :func:`psnr_torch`.
        reduction: ``"none"`` → (B,), ``"mean"`` or ``"sum"`` → scalar.
    """

    fn = staticmethod(psnr_torch)
