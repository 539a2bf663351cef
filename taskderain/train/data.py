"""Training data: image lists, the train/val split (online-rain pairs: :mod:`taskderain.rain.online_pairs`) and the batch order.

Everything random is a pure function of (seed, epoch, index), so a resumed run sees exactly the
batches the uninterrupted run would have seen: :func:`epoch_batches` gives the whole epoch's
batch list and the trainer skips the batches it has already done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.paired import PairedRainDataset, natural_key
from ..imageio import is_image_file
from ..rain.online_pairs import OnlineRainPairs
from ..types import PathLike
from .config import rain_spec

__all__ = ["OnlineRainPairs", "build_datasets", "epoch_batches", "list_images", "make_loader", "rank_batches",
           "split_count"]

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
