"""``add_rain``: the whole NumPy synthesis of one image, a pure function of (image, params, seed)."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .blend import check_image, composite
from .params import RainParams
from .seeding import SeedLike, as_generator
from .streaks import render_streaks, sample_streaks


def add_rain(image: np.ndarray, params: RainParams, seed: SeedLike) -> Tuple[np.ndarray, np.ndarray]:
    """Synthesise rain on one image.

    ``S = render_streaks(sample_streaks(H, W, params, rng))``, then ``rainy = composite(image, S,
    params)`` (see :mod:`taskderain.rain.blend` for the blend and veil formula). For a uint8 image
    the output bytes depend only on (image, params, seed): the same on every machine and thread
    count.

    Args:
        image: (H, W, 3) RGB, uint8 (0..255) or float (0..1).
        params: a :class:`RainParams`, e.g. ``rain_params("light")``.
        seed: int (e.g. ``image_seed("rain-001", 0)``), ``SeedSequence`` or a numpy ``Generator``
            (which is advanced).

    Returns:
        ``(rainy, streaks)``: rainy has the shape and dtype of ``image``; streaks is the (H, W, 1)
        float32 layer ``S`` in [0, 1], with ``composite(image, streaks, params) == rainy``.

    Raises:
        ValueError: the image is not (H, W, 3) uint8/float. TypeError: bad seed.
    """
    check_image(image)
    if not isinstance(params, RainParams):
        raise TypeError(f"params must be a RainParams (see rain_params()), got {type(params).__name__}")
    rng = as_generator(seed)
    h, w = image.shape[:2]
    if params.is_identity:
        return image.copy(), np.zeros((h, w, 1), np.float32)
    streaks = render_streaks(sample_streaks(h, w, params, rng))[:, :, None]
    return composite(image, streaks, params), streaks
