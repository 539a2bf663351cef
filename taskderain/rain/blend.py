"""Putting a streak layer onto an image: background blur, blend, atmospheric veil (NumPy).

With ``J`` the clean image, ``S`` the streak layer (white, the same on the three channels) and
``t = 1 - haze``, all in [0, 1]::

    B = G_blur ∗ J                            background blur (Gaussian, sigma = blur; skipped at 0)
    R = B + S            (blend "add")        or   B + S·(1 - B)   (blend "screen")
    I = clip(R·t + A·(1 - t), 0, 1)           veil of airlight A (Koschmieder; skipped at haze 0)

Rain100L/H were made with the additive blend (their rainy − clean residual is equal on R, G, B).
uint8 images are blurred with OpenCV's bit-exact fixed-point 8-bit Gaussian and the result is
rounded half-to-even to uint8, so the output bytes are the same on every machine.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .params import RainParams


def gaussian_ksize(sigma: float) -> int:
    """Odd Gaussian kernel side used for the background blur: ``2·ceil(3·sigma) + 1``."""
    return 2 * int(math.ceil(3 * sigma)) + 1


def check_image(image: np.ndarray) -> None:
    """Raise a ValueError naming the problem unless ``image`` is (H, W, 3) uint8 or float."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy (H, W, 3) image, got {type(image).__name__}; use add_rain_torch for tensors")
    if image.ndim != 3 or image.shape[2] != 3:
        hint = " (grayscale: np.repeat(image[..., None], 3, axis=2))" if image.ndim == 2 or image.shape[-1] == 1 else ""
        raise ValueError(f"expected an RGB image shaped (H, W, 3), got {image.shape}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected uint8 (0..255) or float (0..1) pixels, got {image.dtype}")


def blur_background(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (reflect-101 borders) of an (H, W, 3) image; same dtype; identity at sigma 0."""
    if sigma <= 0:
        return image
    k = gaussian_ksize(sigma)
    src = image if image.dtype in (np.uint8, np.float32) else image.astype(np.float32)
    return cv2.GaussianBlur(src, (k, k), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101,
                            hint=cv2.ALGO_HINT_ACCURATE)


def composite(image: np.ndarray, streaks: np.ndarray, params: RainParams) -> np.ndarray:
    """Blend a streak layer onto an image (formula in the module docstring).

    Args:
        image: (H, W, 3) RGB, uint8 or float in [0, 1].
        streaks: (H, W) or (H, W, 1) float32 in [0, 1], e.g. from :func:`render_streaks`.
        params: uses ``blur``, ``blend``, ``haze`` and ``airlight``.

    Returns:
        The rainy image, same shape and dtype as ``image`` (float results clipped to [0, 1]).
    """
    check_image(image)
    s = streaks.reshape(image.shape[0], image.shape[1], 1).astype(np.float32, copy=False)
    background = blur_background(image, params.blur)
    if background.dtype == np.uint8:
        x = background.astype(np.float32) / np.float32(255)
    else:
        x = background.astype(np.float32)
    y = x + s if params.blend == "add" else x + s * (np.float32(1) - x)
    if params.haze > 0:
        y *= np.float32(1 - params.haze)
        y += np.float32(params.haze * params.airlight)
    np.clip(y, 0, 1, out=y)
    if image.dtype == np.uint8:
        return np.rint(y * np.float32(255)).astype(np.uint8)
    return y.astype(image.dtype, copy=False)
