"""``OnlineRainPairs``: (rainy, clean) training pairs rained on the fly from clean images, resumable.

Everything random is a pure function of (seed, epoch, index): a resumed run sees exactly the
crops, transforms and rain the uninterrupted run would have seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.augment import NUM_DIHEDRAL, dihedral, pad_to_size, paired_center_crop
from ..imageio import read_rgb
from ..types import PathLike
from .params import RainParams, intensity_range, params_at_intensity
from .seeding import image_seed
from .synthesis import add_rain


def _tensor(image: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 → (3,H,W) float32 in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class OnlineRainPairs(Dataset):
    """(rainy, clean) pairs made on the fly from clean images with :func:`~taskderain.rain.add_rain`.

    Items are dicts like :class:`~taskderain.data.PairedRainDataset`'s: ``{"rainy", "clean"}``
    (3,H,W) float32 in [0,1] and ``"name"`` (the file stem). With a rain-zoo model ``"clean"`` is
    the target of ``RainModel.apply_pair``: the clean image under the same camera tone and shake.

    * ``train=True``: a random ``patch_size`` crop of the clean image (reflect-padded if smaller),
      rain with seed ``image_seed(f"{stem}#epoch{epoch}", rain_seed)`` on the crop, then one of the
      8 dihedral transforms on both; crop and transform come from a generator seeded by
      ``(seed, epoch, index)``. New rain every epoch, identical in any worker or after a resume.
    * ``repeat`` > 1 makes one epoch ``repeat`` passes over the images (index ``i`` is image
      ``i % len(files)``), each with its own crop and rain (key suffix ``#pass{p}`` from the
      second pass on) — BasicSR's ``dataset_enlarge_ratio`` for small image sets.
    * ``params`` may be an intensity range ``(low, high)``: each training crop draws its intensity
      from the same generator, each validation image from its rain seed; or a rain-zoo model
      (:func:`~taskderain.rain.spec.rain_from_spec`, e.g. the mix), applied with the same seeds.
    * ``train=False`` (validation): rain ``image_seed(stem, rain_seed)`` on the whole image — the
      bytes ``taskderain synth --seed rain_seed`` writes — then the centre ``patch_size`` crop
      if one is given.
    """

    def __init__(self, files: Sequence[PathLike], params: Union[RainParams, Tuple[float, float], Any], rain_seed: int = 0,
                 patch_size: Optional[int] = None, train: bool = True, seed: int = 0, repeat: int = 1) -> None:
        if repeat < 1 or (repeat > 1 and not train):
            raise ValueError(f"repeat must be >= 1 (and 1 for validation), got {repeat}")
        if train and patch_size is None:
            raise ValueError("OnlineRainPairs(train=True) needs a patch_size")
        if not isinstance(params, RainParams) and not hasattr(params, "apply"):
            params = intensity_range(params)
        self.files = [Path(f) for f in files]
        self.params, self.rain_seed, self.patch_size = params, rain_seed, patch_size
        self.train, self.seed, self.epoch, self.repeat = train, seed, 0, repeat

    def set_epoch(self, epoch: int) -> None:
        """Select the crops, transforms and rain of ``epoch`` (non-negative int)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def generator(self, index: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def rain(self, key: str, draw: Optional[torch.Generator] = None) -> RainParams:
        """The rain parameters of one image: fixed, or an intensity drawn from the range.

        The intensity comes from ``draw`` (training) or from the image's rain seed (validation).
        """
        if isinstance(self.params, RainParams):
            return self.params
        low, high = self.params
        u = (float(torch.rand((), generator=draw)) if draw is not None
             else float(np.random.default_rng([image_seed(key, self.rain_seed), 2]).random()))
        return params_at_intensity(low + (high - low) * u)

    def add_rain(self, image: np.ndarray, key: str, draw: Optional[torch.Generator] = None,
                 frame: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(rainy, target) of the image (or crop of a ``frame`` px long-side image) named ``key``:
        seed ``image_seed(key, rain_seed)``. A rain-zoo model rains a crop at its frame's scale, and
        its target is the clean image through the same camera tone (``RainModel.apply_pair``)."""
        seed = image_seed(key, self.rain_seed)
        if hasattr(self.params, "apply_pair"):  # a rain-zoo model draws everything from its seed
            from .zoo import with_frame

            return (self.params if frame is None else with_frame(self.params, frame)).apply_pair(image, seed)
        return add_rain(image, self.rain(key, draw), seed)[0], image

    def __getitem__(self, index: int) -> Dict[str, Any]:
        path = self.files[index % len(self.files)]
        clean = read_rgb(path)  # (H,W,3) uint8
        if not self.train:
            rainy, target = self.add_rain(clean, path.stem)
            r, c = _tensor(rainy), _tensor(target)
            if self.patch_size is not None:
                size = (self.patch_size, self.patch_size)
                r, c = paired_center_crop(pad_to_size(r, size), pad_to_size(c, size), size)
            return {"rainy": r, "clean": c, "name": path.stem}
        g = self.generator(index)
        k = int(torch.randint(NUM_DIHEDRAL, (1,), generator=g))
        p = self.patch_size
        h, w = clean.shape[:2]
        frame = max(h, w)
        if h < p or w < p:
            clean = np.pad(clean, ((0, max(p - h, 0)), (0, max(p - w, 0)), (0, 0)), mode="reflect")
            h, w = clean.shape[:2]
        top = int(torch.randint(h - p + 1, (1,), generator=g))
        left = int(torch.randint(w - p + 1, (1,), generator=g))
        crop = np.ascontiguousarray(clean[top:top + p, left:left + p])
        key = f"{path.stem}#epoch{self.epoch}" + (f"#pass{index // len(self.files)}" if index >= len(self.files) else "")
        rainy, target = self.add_rain(crop, key, g, frame)
        return {"rainy": dihedral(_tensor(rainy), k), "clean": dihedral(_tensor(target), k), "name": path.stem}
