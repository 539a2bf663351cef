"""SSIM as Wang et al.'s ``ssim_index.m`` computes it: Gaussian 11x11, σ 1.5, 'valid', mean of the map.

With ``w`` the normalised window (``fspecial('gaussian', 11, 1.5)``) and every filter
``filter2(w, ·, 'valid')`` (no padding, so the map is (H-10, W-10))::

    mu_x = w * x,  sigma_x^2 = w * x^2 - mu_x^2,  sigma_xy = w * (x y) - mu_x mu_y
    SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = 255``. The 2009 ``ssim.m`` additionally
downsamples by ``round(min(H, W) / 256)``, which is 1 (no downsampling) for images under 384
pixels on the short side, such as Rain100L/H; this module never downsamples.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from taskderain.metrics.color import scored_planes, scored_planes_torch
from taskderain.metrics.reduction import BatchMetric

WINDOW_SIZE = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
L = 255.0
C1, C2 = (K1 * L) ** 2, (K2 * L) ** 2


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian (size,) float64; its outer product is MATLAB's ``fspecial`` window."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _check_size(height: int, width: int) -> None:
    if height < WINDOW_SIZE or width < WINDOW_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {WINDOW_SIZE}x{WINDOW_SIZE} pixels ('valid' filtering), "
            f"got {height}x{width}"
        )


def _filter_valid(stack: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering (MATLAB ``filter2(w, ·, 'valid')``) of (H, W, N) float64.

    OpenCV filters with some border, which the crop then discards: (H-k+1, W-k+1, N).
    """
    r = g.size // 2
    out = cv2.sepFilter2D(np.ascontiguousarray(stack), cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
    return out.reshape(stack.shape)[r : stack.shape[0] - r, r : stack.shape[1] - r]


def _ssim_from_moments(mu_x, mu_y, xx, yy, xy):
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_x, sigma_y, sigma_xy = xx - mu_xx, yy - mu_yy, xy - mu_xy
    return ((2 * mu_xy + C1) * (2 * sigma_xy + C2)) / ((mu_xx + mu_yy + C1) * (sigma_x + sigma_y + C2))


def ssim_map(a: np.ndarray, b: np.ndarray, channel: str = "y", round_y: bool = True) -> np.ndarray:
    """The SSIM map of two RGB images (see :func:`ssim` for the arguments).

    Returns:
        (H-10, W-10, C) float64, C = 1 for ``"y"`` and 3 for ``"rgb"``.
    """
    x, y = scored_planes(a, b, channel, round_y)
    _check_size(*x.shape[:2])
    stack = np.concatenate([x, y, x * x, y * y, x * y], axis=-1)
    moments = _filter_valid(stack, gaussian_window())
    planes = np.ascontiguousarray(np.moveaxis(moments, -1, 0))  # (5C, H-10, W-10), fast maths
    return np.moveaxis(_ssim_from_moments(*np.split(planes, 5, axis=0)), 0, -1)


def ssim(a: np.ndarray, b: np.ndarray, channel: str = "y", round_y: bool = True) -> float:
    """Structural similarity of two RGB images (Wang et al. 2004, the deraining protocol).

    Args:
        a, b: (H, W, 3) RGB, uint8 or float in [0, 1] (floats are rounded to 8 bits first);
            at least 11x11.
        channel: ``"y"`` (MATLAB ``rgb2ycbcr`` luma, the protocol) or ``"rgb"`` (mean of the
            three per-channel SSIMs), values in 0..255.
        round_y: round Y as MATLAB does for uint8 images (default); False keeps float Y.

    Returns:
        Mean of the SSIM map, in [-1, 1]; exactly 1.0 for identical images.

    Raises:
        ValueError: shapes differ (both are named), images under 11x11, bad layout, channel.
    """
    return float(np.mean(ssim_map(a, b, channel, round_y)))


def ssim_torch(
    pred: torch.Tensor,
    target: torch.Tensor,
    channel: str = "y",
    data_range: float = 1.0,
    quantize: bool = False,
    round_y: bool | None = None,
) -> torch.Tensor:
    """Batched SSIM for training loops, per image.

    Same maths as :func:`ssim` (depthwise ``conv2d`` with the separable Gaussian, 'valid').
    ``quantize=True`` is the exact protocol in float64 (matches :func:`ssim`); ``quantize=False``
    (default) is differentiable at the input precision (at least float32). Device-agnostic
    (``quantize=True`` needs float64 support, so not on MPS).

    Args:
        pred, target: (B, 3, H, W) float RGB in [0, data_range], H, W >= 11.
        channel: ``"y"`` or ``"rgb"`` (mean over the three channels).
        data_range: value of white in the inputs (1.0 for [0, 1]).
        quantize: score 8-bit-rounded inputs exactly as the protocol does.
        round_y: round Y to integers; defaults to ``quantize``.

    Returns:
        (B,) mean SSIM per image.
    """
    x, y = scored_planes_torch(pred, target, channel, data_range, quantize, round_y)
    _check_size(*x.shape[-2:])
    channels = x.shape[1]
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    g = torch.as_tensor(gaussian_window(), dtype=x.dtype, device=x.device)
    groups = stack.shape[1]
    moments = F.conv2d(stack, g.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    moments = F.conv2d(moments, g.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    smap = _ssim_from_moments(*moments.split(channels, dim=1))
    return smap.flatten(1).mean(dim=1)


class SSIM(BatchMetric):
    """Module form of :func:`ssim_torch`: holds the options, returns SSIM per image.

    Args:
        channel, data_range, quantize, round_y: as in :func:`ssim_torch`.
        reduction: ``"none"`` → (B,), ``"mean"`` or ``"sum"`` → scalar.
    """

    fn = staticmethod(ssim_torch)
