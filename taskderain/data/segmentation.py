"""Semantic segmentation datasets: an image folder and a folder of single-channel class-id masks,
and :class:`WithMasks`, which adds such masks to the samples of a detection dataset.

Masks pair with images by file stem. Sparse ids (e.g. COCO panoptic category ids) are mapped to
contiguous class indices by a class map; unmapped ids and unlabeled pixels become ``ignore_index``.
Sample dict::

    {"image": (H,W,3) uint8 RGB, "mask": (H,W) int64, "path": str, "mask_path": str,
     "id": str, "ori_shape": (H, W)}
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import cv2
import numpy as np
import yaml
from torch.utils.data import Dataset

from ..imageio import ImageReadError, image_size, is_image_file, read_rgb
from ..types import PathLike
from .detection import Transform

LOGGER = logging.getLogger("taskderain")
#: the mask value of unlabelled pixels (no loss, no mIoU)
IGNORE = 255


def class_map_from_yaml(path: PathLike, keep: Optional[Iterable[str]] = None,
                        unlabeled: Iterable[int] = (0,)) -> Tuple[Dict[int, int], Dict[int, str]]:
    """A class map from a YAML with ``classes: {id: name}`` (e.g. COCO128's semantic-classes.yaml).

    Args:
        keep: class names to keep (a reduced class set), in the order they get indices 0..K-1;
            ``None`` keeps every labelled class in id order.
        unlabeled: ids that mean "no label" (mapped to the ignore index).

    Returns:
        (``{sparse_id: class_index}``, ``{class_index: name}``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class YAML not found: {path}")
    classes = (yaml.safe_load(path.read_text()) or {}).get("classes")
    if not isinstance(classes, Mapping):
        raise ValueError(f"{path} has no 'classes: {{id: name}}' mapping")
    classes = {int(k): str(v) for k, v in classes.items() if int(k) not in set(unlabeled)}
    if keep is None:
        ordered = sorted(classes)
    else:
        by_name = {v: k for k, v in classes.items()}
        missing = [n for n in keep if n not in by_name]
        if missing:
            raise ValueError(f"classes {missing} are not in {path}; known: {', '.join(sorted(by_name))}")
        ordered = [by_name[n] for n in keep]
    return {sid: i for i, sid in enumerate(ordered)}, {i: classes[sid] for i, sid in enumerate(ordered)}


def read_mask(path: Path) -> np.ndarray:
    """A single-channel 8- or 16-bit class-id mask → (H, W) int64."""
    if not path.exists():
        raise FileNotFoundError(f"mask not found: {path}")
    mask = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ImageReadError(f"cannot decode mask (corrupt or not an image): {path}")
    if mask.ndim != 2:
        raise ImageReadError(f"mask must be single-channel class ids, got shape {mask.shape}: {path}")
    return mask.astype(np.int64)


class MaskSegmentationDataset(Dataset):
    """Images with single-channel class-id masks, paired by stem.

    Args:
        images: folder of images.
        masks: folder of masks (PNG, same stems). Images without a mask are left out and counted
            in :attr:`missing_masks` (a warning names the first few).
        class_map: ``{mask_value: class_index}``; values not in it become ``ignore_index``.
            ``None`` keeps mask values as they are.
        names: ``{class_index: name}``.
        ignore_index: label of unlabeled / unmapped pixels (255 by default).
        transform: applied to every sample dict (e.g. :class:`~taskderain.data.Letterbox`).
    """

    def __init__(self, images: PathLike, masks: PathLike, class_map: Optional[Mapping[int, int]] = None,
                 names: Optional[Mapping[int, str]] = None, ignore_index: int = 255,
                 transform: Transform = None) -> None:
        images, masks = Path(images), Path(masks)
        for folder, what in ((images, "image"), (masks, "mask")):
            if not folder.is_dir():
                raise FileNotFoundError(f"{what} folder not found: {folder}")
        mask_files = {p.stem: p for p in masks.iterdir() if p.is_file() and is_image_file(p)}
        image_files = sorted(p for p in images.iterdir() if p.is_file() and is_image_file(p))
        self.pairs: List[Tuple[Path, Path]] = [(p, mask_files[p.stem]) for p in image_files if p.stem in mask_files]
        self.missing_masks = [p.name for p in image_files if p.stem not in mask_files]
        orphans = sorted(set(mask_files) - {p.stem for p in image_files})
        if not self.pairs:
            raise ValueError(f"no image in {images} has a mask in {masks} (paired by file stem)")
        if self.missing_masks or orphans:
            LOGGER.warning("%s: %d images without a mask left out (%s); %d masks without an image",
                           images, len(self.missing_masks), ", ".join(self.missing_masks[:3]), len(orphans))
        self.ignore_index = ignore_index
        self.class_map = dict(class_map) if class_map is not None else None
        self.names = dict(names) if names is not None else {}
        self.transform = transform
        if self.class_map is not None:
            size = max(max(self.class_map) + 1, 256)
            self._lut = np.full(size, ignore_index, np.int64)
            for sparse, dense in self.class_map.items():
                self._lut[sparse] = dense

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def num_classes(self) -> int:
        return len(self.names) if self.names else (len(set(self.class_map.values())) if self.class_map else 0)

    def map_mask(self, mask: np.ndarray) -> np.ndarray:
        """Sparse ids → class indices (unmapped, including ids beyond the map → ``ignore_index``)."""
        if self.class_map is None:
            return mask
        lut = self._lut
        return np.where(mask < len(lut), lut[np.minimum(mask, len(lut) - 1)], self.ignore_index)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        image_path, mask_path = self.pairs[index]
        image = read_rgb(image_path)
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} "
                             f"is {image.shape[1]}x{image.shape[0]} (W x H)")
        sample = {"image": image, "mask": self.map_mask(mask), "path": str(image_path),
                  "mask_path": str(mask_path), "id": image_path.stem, "ori_shape": image.shape[:2]}
        return self.transform(sample) if self.transform else sample


class WithMasks(Dataset):
    """Adds ``"mask"`` (H,W) int64 to a detection dataset's samples: ``masks/<id>.*``, mapped by a class map.

    Images without a mask get an all-``ignore`` mask (no segmentation loss, no mIoU pixels).
    """

    def __init__(self, dataset: Dataset, masks: str, class_map: Optional[str] = None) -> None:
        folder = Path(masks)
        if not folder.is_dir():
            raise FileNotFoundError(f"data.masks: mask folder not found: {folder}")
        self.dataset, self.files = dataset, {p.stem: p for p in folder.iterdir() if p.is_file() and is_image_file(p)}
        self.lut: Optional[np.ndarray] = None
        self.names: Dict[int, str] = {}
        if class_map is not None:
            mapping, self.names = class_map_from_yaml(class_map)
            self.lut = np.full(max(max(mapping) + 1, 65536), IGNORE, np.int64)
            for sparse, dense in mapping.items():
                self.lut[sparse] = dense
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Every mask has its image's size (headers only): found now, not when a batch reaches it."""
        wrong = []
        for record in getattr(self.dataset, "records", ()):
            image = Path(record[0])
            mask = self.files.get(image.stem)
            if mask is None:
                continue
            (mh, mw), (ih, iw) = image_size(mask), image_size(image)
            if (mh, mw) != (ih, iw):
                wrong.append(f"{mask} is {mw}x{mh}, its image {image} {iw}x{ih}")
        if wrong:
            raise ValueError(f"data.masks: {len(wrong)} mask(s) are not the size of their image, e.g. {wrong[0]}")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        sample = dict(self.dataset[index])
        path = self.files.get(str(sample["id"]))
        h, w = sample["image"].shape[:2]
        if path is None:
            mask = np.full((h, w), IGNORE, np.int64)
        else:
            mask = read_mask(path)
            if mask.shape != (h, w):
                raise ValueError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its image {sample['path']} {w}x{h}")
            if self.lut is not None:
                mask = self.lut[np.clip(mask, 0, len(self.lut) - 1)]
        sample["mask"] = mask.astype(np.uint8) if mask.max(initial=0) < 256 else mask
        return sample
