"""``Rain``: the augmentation module — holds the parameters, derives per-image seeds, calls the function."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .params import RainParams, rain_params
from .seeding import image_seed
from .synthesis import add_rain
from .synthesis_torch import add_rain_torch

ImageId = Union[str, int]


def _resolve(rain: Union[str, float, RainParams]) -> RainParams:
    if isinstance(rain, RainParams):
        return rain
    if isinstance(rain, str):
        return rain_params(preset=rain)
    if isinstance(rain, (int, float)) and not isinstance(rain, bool):
        return rain_params(intensity=float(rain))
    raise TypeError(f"rain must be a preset name, an intensity in [0, 1] or a RainParams, got {rain!r}")


class Rain(nn.Module):
    """Add synthetic rain, reproducibly: image ``id`` under ``seed`` always gets the same rain.

    Image ``id`` uses ``s = image_seed(id, seed)``: it is rained when ``default_rng([s, 1]).random()
    < p`` and then gets ``add_rain(image, params, s)`` (NumPy input) or the torch twin (tensor
    input). Without ``ids``, the n-th image this module sees is named ``"call-n"`` — reproducible
    for a fixed call order only (not across DataLoader workers): pass ids for datasets.

    Args:
        rain: preset name (``"light"``, ...), intensity in [0, 1], or a :class:`RainParams`.
        seed: base seed, combined with each image id.
        p: probability that an image is rained, in [0, 1].

    Call with ``(H, W, 3)`` uint8/float NumPy images, ``(3, H, W)`` or ``(B, 3, H, W)`` float
    tensors in [0, 1], and optionally ``ids`` (one per image). Returns the rainy images, same
    type, shape and dtype.
    """

    def __init__(self, rain: Union[str, float, RainParams] = "light", seed: int = 0, p: float = 1.0) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"p is a probability in [0, 1], got {p!r}")
        self.params = _resolve(rain)
        self.seed, self.p = int(seed), float(p)
        self._calls = 0

    def seed_for(self, image_id: ImageId) -> int:
        """The seed image ``image_id`` gets: ``image_seed(image_id, self.seed)``."""
        return image_seed(image_id, self.seed)

    def applies(self, image_seed_value: int) -> bool:
        """Whether the image with this seed is rained (probability ``p``)."""
        if self.p >= 1:
            return True
        return bool(np.random.default_rng([image_seed_value, 1]).random() < self.p)

    def _ids(self, ids: Optional[Sequence[ImageId]], count: int) -> Sequence[ImageId]:
        if ids is None:
            ids = [f"call-{self._calls + i}" for i in range(count)]
            self._calls += count
        elif len(ids) != count:
            raise ValueError(f"got {len(ids)} ids for {count} images; give one id per image")
        return ids

    def forward(self, images, ids: Optional[Union[ImageId, Sequence[ImageId]]] = None):
        if isinstance(images, np.ndarray):
            seed = self.seed_for(self._ids(None if ids is None else [ids], 1)[0])
            return add_rain(images, self.params, seed)[0] if self.applies(seed) else images.copy()
        if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
            raise ValueError(f"expected a numpy (H, W, 3) image or a (3, H, W) / (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
        single = images.ndim == 3
        batch = images[None] if single else images
        if single and ids is not None:
            ids = [ids]
        seeds = [self.seed_for(i) for i in self._ids(ids, batch.shape[0])]
        chosen = [i for i, s in enumerate(seeds) if self.applies(s)]
        out = batch.clone()
        if chosen:
            out[chosen] = add_rain_torch(batch[chosen], self.params, [seeds[i] for i in chosen])[0]
        return out[0] if single else out

    def extra_repr(self) -> str:
        return f"params={self.params}, seed={self.seed}, p={self.p}"
