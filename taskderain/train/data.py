"""Training data: online-rain pairs from clean images, the train/val split and the batch order.

Everything random is a pure function of (seed, epoch, index), so a resumed run sees exactly the
batches the uninterrupted run would have seen: :func:`epoch_batches` gives the whole epoch's
batch list and the trainer skips the batches it has already done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.augment import NUM_DIHEDRAL, dihedral, pad_to_size, paired_center_crop
from ..data.paired import PairedRainDataset, natural_key
from ..imageio import is_image_file, read_rgb
from ..rain import add_rain, image_seed
from ..rain.params import RainParams, intensity_range, params_at_intensity
from .config import rain_spec

PathLike = Union[str, os.PathLike]


def list_images(folder: PathLike) -> List[Path]:
    """Image files directly in ``folder`` (natural order), or those a ``.txt`` list names one per
    line (relative to the list; order kept); errors name the folder or list."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".txt":
        files = [folder.parent / line.strip() for line in folder.read_text().splitlines() if line.strip()]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lists {len(missing)} missing image(s), e.g. {missing[0]}")
        if not files:
            raise ValueError(f"image list {folder} is empty")
        return files
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p)),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise ValueError(f"folder {folder} holds no images")
    return files


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
            from ..rain.zoo import with_frame

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


def split_count(n: int, val_split: float) -> int:
    """Number of the ``n`` images held out for validation: a fraction (<1) or a count (>=1)."""
    count = int(round(n * val_split)) if val_split < 1 else int(val_split)
    if val_split and not 0 < count < n:
        raise ValueError(f"data.val_split={val_split} holds out {count} of {n} image(s); "
                         f"need at least 1 for validation and 1 for training")
    return count


def build_datasets(data: Dict[str, Any], seed: int) -> Tuple[Dataset, List[int], Optional[Dataset]]:
    """(training dataset, the indices it trains on, validation dataset or None) from ``config["data"]``.

    With ``val_split`` the last images (natural order) are held out for validation.
    """
    crop = data["val_crop"]
    if data["images"] is not None:
        params = rain_spec(data)
        files = list_images(data["images"])
        held = split_count(len(files), data["val_split"])
        train = OnlineRainPairs(files[:len(files) - held], params, data["rain_seed"], data["patch_size"], train=True,
                                seed=seed, repeat=data["repeat"])
        indices = list(range(len(train)))
        val_files = list_images(data["val"]) if data["val"] is not None else files[len(files) - held:]
        val = OnlineRainPairs(val_files, params, data["rain_seed"], crop, train=False) if val_files else None
        return train, indices, val
    train = PairedRainDataset(data["paired"], patch_size=data["patch_size"], augment=True, seed=seed)
    held = split_count(len(train), data["val_split"])
    indices = list(range(len(train) - held))
    if data["val"] is not None:
        val: Optional[Dataset] = PairedRainDataset(data["val"], patch_size=crop)
    elif held:
        val = Subset(PairedRainDataset(data["paired"], patch_size=crop), list(range(len(train) - held, len(train))))
    else:
        val = None
    return train, indices, val


def epoch_batches(indices: Sequence[int], batch: int, seed: int, epoch: int) -> List[List[int]]:
    """The epoch's batches: a permutation of ``indices`` seeded by (seed, epoch), full batches only."""
    if len(indices) < batch:
        raise ValueError(f"{len(indices)} training image(s) cannot fill one batch of {batch}; "
                         "lower data.batch or add images")
    state = np.random.SeedSequence([seed, epoch, 0x0BA7C4]).generate_state(1, dtype=np.uint64)[0]
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(int(state))).tolist()
    chosen = [indices[i] for i in order]
    return [chosen[i:i + batch] for i in range(0, len(chosen) - batch + 1, batch)]


def rank_batches(batches: List[List[int]], rank: int, world: int) -> List[List[int]]:
    """Rank ``rank``'s contiguous share (``len(batch) / world`` indices) of every global batch.

    The ranks' shares are disjoint and together the global batches (DistributedSampler-like
    sharding of the epoch's seeded permutation). Identity for ``world == 1``.
    """
    if world == 1:
        return batches
    out = []
    for b in batches:
        if len(b) % world:
            raise ValueError(f"a batch of {len(b)} cannot be split evenly over {world} processes")
        k = len(b) // world
        out.append(b[rank * k:(rank + 1) * k])
    return out


def _collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"rainy": torch.stack([i["rainy"] for i in items]), "clean": torch.stack([i["clean"] for i in items]),
            "name": [i["name"] for i in items]}


def make_loader(dataset: Dataset, batches: List[List[int]], workers: int) -> DataLoader:
    """A DataLoader over exactly ``batches`` (lists of dataset indices), in order."""
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=_collate)
