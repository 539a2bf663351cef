"""The colour step of the deraining protocol: 8-bit quantisation and MATLAB ``rgb2ycbcr`` luma.

MATLAB's ``rgb2ycbcr`` (BT.601, studio swing) gives, with R, G, B in [0, 1],
``Y = 16 + 65.481 R + 128.553 G + 24.966 B``, so Y lies in [16, 235]. For uint8 images MATLAB
computes this in double as ``(65.481/255) R + (128.553/255) G + (24.966/255) B + 16`` with
R, G, B in 0..255 and rounds the result to an integer (half away from zero); that rounded Y
is what deraining papers score. ``round_y=False`` keeps the float Y instead.
"""

from __future__ import annotations

import numpy as np
import torch

#: BT.601 studio-swing luma weights for R, G, B in [0, 1] (MATLAB ``rgb2ycbcr``, first row).
Y_WEIGHTS = (65.481, 128.553, 24.966)
#: Luma offset of studio swing: Y of black.
Y_OFFSET = 16.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise an RGB image to 8 bits as a saved PNG would hold it.

    Args:
        image: (H, W, 3) uint8 (returned unchanged) or float in [0, 1]; floats are clipped to
            [0, 1], scaled by 255 and rounded to the nearest integer.

    Returns:
        (H, W, 3) uint8.

    Raises:
        ValueError: not (H, W, 3), an unsupported dtype, NaN, or floats that look like 0..255.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected uint8 or float in [0, 1], got dtype {image.dtype}")
    if np.isnan(image).any():
        raise ValueError("image contains NaN")
    if image.size and float(image.max()) > 2.0:
        raise ValueError(
            f"float image has values up to {float(image.max()):.4g}; floats must be in [0, 1] "
            "(divide by 255 or pass uint8)"
        )
    return np.rint(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def rgb_to_y(image: np.ndarray, round_y: bool = True) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of an 8-bit RGB image.

    Args:
        image: (H, W, 3) RGB, uint8 or float in [0, 1] (floats are first rounded to 8 bits,
            see :func:`to_uint8`).
        round_y: round Y to integers as MATLAB does for uint8 images (the protocol default);
            False keeps float Y.

    Returns:
        (H, W) float64 Y in [16, 235] (integer-valued when ``round_y``).
    """
    rgb = to_uint8(image).astype(np.float64)
    wr, wg, wb = (w / 255.0 for w in Y_WEIGHTS)
    y = wr * rgb[..., 0] + wg * rgb[..., 1] + wb * rgb[..., 2] + Y_OFFSET
    return np.floor(y + 0.5) if round_y else y


def quantize_torch(image: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Round a float image in [0, data_range] to 8-bit levels 0..255 (same dtype, not differentiable)."""
    return torch.round(torch.clamp(image / data_range, 0.0, 1.0) * 255.0)


def rgb_to_y_torch(image255: torch.Tensor, round_y: bool = False) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` luma of (B, 3, H, W) RGB in 0..255 → (B, 1, H, W) Y in [16, 235].

    Same arithmetic (and operation order) as :func:`rgb_to_y`; differentiable when
    ``round_y`` is False.
    """
    wr, wg, wb = (w / 255.0 for w in Y_WEIGHTS)
    y = wr * image255[:, 0:1] + wg * image255[:, 1:2] + wb * image255[:, 2:3] + Y_OFFSET
    return torch.floor(y + 0.5) if round_y else y


CHANNELS = ("y", "rgb")


def check_channel(channel: str) -> str:
    """Validate a channel name (``"y"`` or ``"rgb"``); raises ValueError naming the choices."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    return channel


def scored_planes(a: np.ndarray, b: np.ndarray, channel: str = "y", round_y: bool = True):
    """The planes the protocol scores for a pair of RGB images.

    Args:
        a, b: (H, W, 3) RGB, uint8 or float in [0, 1] (rounded to 8 bits first).
        channel: ``"y"`` (MATLAB luma) or ``"rgb"`` (the three channels).
        round_y: round Y to integers (MATLAB's uint8 behaviour); ignored for ``"rgb"``.

    Returns:
        Two (H, W, C) float64 arrays in 0..255, C = 1 for ``"y"`` and 3 for ``"rgb"``.

    Raises:
        ValueError: shapes differ (both are named), bad layout or dtype, unknown channel.
    """
    check_channel(channel)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if channel == "y":
        return rgb_to_y(a, round_y)[..., None], rgb_to_y(b, round_y)[..., None]
    return to_uint8(a).astype(np.float64), to_uint8(b).astype(np.float64)


def scored_planes_torch(
    pred: torch.Tensor,
    target: torch.Tensor,
    channel: str = "y",
    data_range: float = 1.0,
    quantize: bool = False,
    round_y: bool | None = None,
):
    """Torch twin of :func:`scored_planes` for batches.

    Args:
        pred, target: (B, 3, H, W) float RGB in [0, data_range].
        channel: ``"y"`` or ``"rgb"``.
        data_range: value of white in the inputs (1.0 for [0, 1] images, 255 for 0..255).
        quantize: round inputs to 8 bits first and compute in float64 (the exact protocol, not
            differentiable); False keeps the input precision (at least float32) and gradients.
        round_y: round Y to integers; defaults to ``quantize``.

    Returns:
        Two (B, C, H, W) tensors in 0..255, C = 1 for ``"y"`` and 3 for ``"rgb"``.
    """
    check_channel(channel)
    if pred.shape != target.shape:
        raise ValueError(f"images differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB tensors, got shape {tuple(pred.shape)}")
    round_y = quantize if round_y is None else round_y
    if quantize:
        planes = [quantize_torch(t.to(torch.float64), data_range) for t in (pred, target)]
    else:
        dtype = torch.promote_types(pred.dtype, torch.float32)
        planes = [t.to(dtype) * (255.0 / data_range) for t in (pred, target)]
    if channel == "y":
        planes = [rgb_to_y_torch(t, round_y) for t in planes]
    return planes[0], planes[1]
