"""``Rainy``: wrap any sample-dict dataset so its images come out rainy, clean kept beside them."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
from torch.utils.data import Dataset

from .params import RainParams, rain_params
from .seeding import image_seed
from .synthesis import add_rain


class Rainy(Dataset):
    """Rainy version of a dataset whose samples hold ``"image"`` (H,W,3) uint8 and an ``"id"``.

    Each sample gains ``"clean"`` (the original image, or with a zoo model's camera effects its scene
    view) and ``"image"`` becomes the rainy one;
    boxes, classes and masks pass through unchanged. The rain of a sample is fully determined by
    (sample id, params, seed, epoch), whatever the worker or the order of access, and equals
    ``add_rain(image, params, image_seed(id, seed))`` — the rain ``taskderain synth`` writes.

    Args:
        dataset: e.g. :class:`~taskderain.data.YoloDetectionDataset` *without* a letterbox
            transform (rain is synthesised at the image's own resolution).
        preset: ``"light"``, ``"medium"``, ``"heavy"``, ``"storm"``; or ``intensity`` in [0, 1];
            or ``params`` (a :class:`RainParams`); or ``model``, a rain-zoo model
            (:func:`~taskderain.rain.spec.rain_from_spec`): then ``model.apply_pair(image, seed)``
            gives the rainy image and ``"clean"``, the clean image under the same camera tone.
        seed: base seed.
        p: probability that a sample gets rain (the rest stay clean, ``"image" == "clean"``).
        transform: applied after the rain (e.g. :class:`~taskderain.data.Letterbox`).
    """

    def __init__(self, dataset: Dataset, preset: Optional[str] = None, intensity: Optional[float] = None,
                 seed: int = 0, p: float = 1.0, params: Optional[RainParams] = None,
                 transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None, model: Any = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        self.dataset, self.model = dataset, model
        self.params = params if params is not None or model is not None else rain_params(preset, intensity)
        self.seed, self.p, self.transform = seed, p, transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw new rain for every sample (training); epoch 0 is the evaluation rain."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def sample_seed(self, sample_id: str) -> int:
        key = sample_id if self.epoch == 0 else f"{sample_id}#epoch{self.epoch}"
        return image_seed(key, self.seed)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        sample = dict(self.dataset[index])
        clean = sample["image"]
        seed = self.sample_seed(str(sample["id"]))
        # the p-draw has its own stream, so a sample's rain is the same whatever p is
        target = clean
        if self.p >= 1.0 or np.random.default_rng([seed, 1]).random() < self.p:
            if self.model is not None:
                sample["image"], target = self.model.apply_pair(clean, seed)
            else:
                sample["image"] = add_rain(clean, self.params, seed)[0]
        sample["clean"] = target
        return self.transform(sample) if self.transform else sample
