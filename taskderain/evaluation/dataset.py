"""The images and labels an evaluation scores, checked before any work starts.

Detection labels come from an ultralytics data YAML (YOLO txt labels, one split) or a COCO json
file (with its image folder); masks, when given, from a folder of class-id PNGs paired by file
stem. Everything that would make a report wrong is an error naming the file: a split whose images
have no label file at all, a class id outside ``names``, any invalid label line (read with
``strict=True``: nothing is skipped silently), an empty split, COCO images missing on disk, or a
mask folder that matches no image. Label files without an image (labels and images out of step)
are refused too unless the caller allows them: COCO128 as ultralytics ships it has two; they
change no score, but a set out of step usually means the wrong folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from torch.utils.data import Dataset

from ..data import CocoDetectionDataset, YoloDetectionDataset, load_data_yaml
from ..data.detection import list_split_images
from ..data.labels import label_path_for
from ..imageio import is_image_file
from ..types import PathLike



@dataclass
class EvalData:
    """A checked evaluation set.

    Attributes:
        dataset: sample dicts (``image``, ``cls``, ``bboxes`` normalised xywh, ``id``,
            ``ori_shape``, and ``mask`` when masks are given).
        indices: the dataset indices evaluated (``--limit`` keeps the first N).
        names: detection class index → name. ``source``: the data YAML / json. ``split``.
        background: images without objects (among those evaluated).
        masks: mask folder or None. ``mask_names``: segmentation class index → name (from the
            class map) or {}. ``with_masks``: evaluated images that have a mask file.
        labels: ``(path, cls, xywhn)`` of the evaluated images.
        unpaired_labels: label files without an image that were ignored (``allow_unpaired_labels``).
    """

    dataset: Dataset
    indices: List[int]
    names: Dict[int, str]
    source: str
    split: str
    background: int = 0
    masks: Optional[str] = None
    mask_names: Dict[int, str] = field(default_factory=dict)
    with_masks: int = 0
    labels: List[tuple] = field(default_factory=list)
    unpaired_labels: int = 0

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> Dict[str, Any]:
        return {"source": self.source, "split": self.split, "n_images": len(self), "background_images": self.background,
                "masks": self.masks, "images_with_masks": self.with_masks, "nc": len(self.names),
                "unpaired_labels_ignored": self.unpaired_labels}


def check_label_pairing(data_yaml: PathLike, split: str, allow_unpaired: bool = False) -> List[Path]:
    """Label files of the split's folders that have no image, after checking that labels exist at all.

    Raises:
        ValueError: the split lists no image; no image of the split has a label file; a folder
            split whose labels folder holds label files without an image (stems named) unless
            ``allow_unpaired`` (then they are returned, and ignored).
    """
    data = load_data_yaml(data_yaml)
    if split not in data:
        raise ValueError(f"data YAML {data_yaml} has no {split!r} split (has: "
                         f"{', '.join(s for s in ('train', 'val', 'test') if s in data) or 'none'})")
    images = list_split_images(data[split], f"{data_yaml} [{split}]")
    if not any(label_path_for(p).is_file() for p in images):
        raise ValueError(f"{data_yaml} [{split}]: none of the {len(images)} images has a label file "
                         f"(looked for e.g. {label_path_for(images[0])}); YOLO labels go in labels/ beside images/")
    unpaired: List[Path] = []
    for entry in data[split]:
        if not entry.is_dir():
            continue  # a .txt list may name a subset of a shared labels folder
        labels_dir = label_path_for(entry / "x.jpg").parent
        if not labels_dir.is_dir():
            continue
        stems = {p.relative_to(entry).with_suffix("").as_posix() for p in entry.rglob("*") if is_image_file(p)}
        labels = sorted(labels_dir.rglob("*.txt"))
        orphans = [p for p in labels if p.relative_to(labels_dir).with_suffix("").as_posix() not in stems]
        if orphans and not allow_unpaired:
            shown = ", ".join(p.name for p in orphans[:3]) + (" ..." if len(orphans) > 3 else "")
            unlabelled = len(stems) - (len(labels) - len(orphans))
            raise ValueError(f"labels and images out of step: {len(orphans)} of the {len(labels)} label files in "
                             f"{labels_dir} have no image in {entry} ({shown}), and {unlabelled} of its {len(stems)} "
                             f"images have no label file; they must pair by file stem. Fix the dataset, list the "
                             f"images to use in a .txt split, or pass --allow-unpaired-labels to ignore those labels")
        unpaired.extend(orphans)
    return unpaired


def _coco_dataset(annotations: Path, images: Optional[PathLike]) -> CocoDetectionDataset:
    if images is None:
        raise ValueError(f"{annotations} is a COCO json file: give its image folder as well (--images DIR)")
    dataset = CocoDetectionDataset(images, annotations, strict=True)
    missing = [str(path) for path, _, _ in dataset.records if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"{annotations} lists {len(missing)} image(s) not found under {images}, "
                                f"e.g. {missing[0]}")
    return dataset


def open_eval_data(data: PathLike, split: str = "val", images: Optional[PathLike] = None, limit: Optional[int] = None,
                   masks: Optional[PathLike] = None, class_map: Optional[PathLike] = None,
                   allow_unpaired_labels: bool = False) -> EvalData:
    """Open and check an evaluation set (see the module docstring for what is checked).

    Args:
        data: ultralytics data YAML, or a COCO json annotation file (then ``images`` is its folder).
        split: the YAML's split to evaluate.
        limit: evaluate only the first N images.
        masks: folder of class-id masks (by image stem); ``class_map``: YAML ``classes: {id: name}``
            mapping mask values to class indices (``None`` keeps mask values as indices).
        allow_unpaired_labels: ignore label files without an image instead of refusing the set.

    Raises:
        FileNotFoundError / ValueError / LabelError: naming the file and what is wrong.
    """
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    unpaired: List[Path] = []
    if data.suffix.lower() == ".json":
        dataset: Any = _coco_dataset(data, images)
        split = "annotations"
    else:
        unpaired = check_label_pairing(data, split, allow_unpaired_labels)
        dataset = YoloDetectionDataset(data, split, strict=True)
    if len(dataset) == 0:
        raise ValueError(f"{data} [{split}]: no images to evaluate")
    indices = list(range(len(dataset)))[:limit]
    records = [dataset.records[i] for i in indices]
    names, background = dict(dataset.names), sum(1 for _, cls, _ in records if len(cls) == 0)
    mask_names: Dict[int, str] = {}
    with_masks = 0
    if masks is not None:
        from ..data.segmentation import WithMasks

        wrapped = WithMasks(dataset, str(masks), None if class_map is None else str(class_map))
        ids = {Path(path).stem for path, _, _ in records}
        with_masks = len(ids & set(wrapped.files))
        if with_masks == 0:
            raise ValueError(f"no mask in {masks} matches an image of {data} [{split}] (masks pair with images by "
                             f"file stem, e.g. {next(iter(sorted(ids)))}.png)")
        mask_names, dataset = dict(wrapped.names), wrapped
    elif class_map is not None:
        raise ValueError("--class-map needs --masks (the mask folder)")
    return EvalData(dataset, indices, names, str(data), split, background, None if masks is None else str(masks),
                    mask_names, with_masks, records, len(unpaired))
