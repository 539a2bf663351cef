"""Detection datasets: ultralytics YOLO data YAMLs and COCO-json annotations (via pycocotools).

Both yield the same sample dict, resolution-independent until a transform letterboxes it::

    {"image": (H,W,3) uint8 RGB, "cls": (N,) int64, "bboxes": (N,4) float32 normalised xywh,
     "path": str, "id": str (file stem), "ori_shape": (H, W)}

Invalid labels follow the rules of :mod:`taskderain.data.labels` (skip and report, or raise
with ``strict=True``); :attr:`report` keeps what the scan found.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..config import read_yaml
from ..imageio import is_image_file, read_rgb
from .labels import LabelError, LabelReport, check_boxes, scan_labels
from ..types import PathLike

LOGGER = logging.getLogger("taskderain")
Transform = Optional[Callable[[Dict[str, Any]], Dict[str, Any]]]


def load_data_yaml(path: PathLike) -> Dict[str, Any]:
    """Parse an ultralytics data YAML and resolve its folders.

    ``path`` (the dataset root) is taken relative to the YAML's folder when relative (then the
    current folder, as ultralytics does); ``train``/``val``/``test`` entries become lists of
    absolute paths; ``names`` becomes ``{id: name}`` and ``nc`` is filled in.

    Raises:
        FileNotFoundError / ValueError: naming the YAML and the missing key or folder.
    """
    path = Path(path)
    data = read_yaml(path, "data YAML")
    if "names" not in data:
        raise ValueError(f"data YAML {path} has no 'names' (class names)")
    names = data["names"]
    if not isinstance(names, (list, tuple, dict)):
        raise ValueError(f"data YAML {path}: 'names' must be a list of class names or a mapping id: name, "
                         f"got {type(names).__name__} {names!r}")
    try:
        names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise ValueError(f"data YAML {path}: 'names' keys must be class ids 0..N-1, got {list(names)}") from None
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"data YAML {path}: class ids in 'names' must be 0..{len(names) - 1}, got {sorted(names)}")
    nc = data.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc != len(names)):
        raise ValueError(f"data YAML {path}: 'nc' is {nc!r} but 'names' lists {len(names)} classes "
                         "(ultralytics refuses this too); make them agree")
    for key in ("path", "train", "val", "test"):
        entry = data.get(key)
        ok = entry is None or isinstance(entry, str) or (key != "path" and isinstance(entry, list)
                                                          and all(isinstance(e, str) for e in entry))
        if not ok:
            kind = "a folder path" if key == "path" else "a folder / .txt list path or a list of them"
            raise ValueError(f"data YAML {path}: '{key}' must be {kind}, got {type(entry).__name__} {entry!r}")
    root = Path(data.get("path") or ".")
    if not root.is_absolute():
        root = (path.parent / root) if (path.parent / root).exists() else root.resolve()
    resolved = {"yaml_file": str(path.resolve()), "path": root.resolve(), "names": names, "nc": len(names)}
    for split in ("train", "val", "test"):
        entry = data.get(split)
        if entry:
            resolved[split] = [(root / e).resolve() for e in (entry if isinstance(entry, list) else [entry])]
    return {**data, **resolved}


def list_split_images(entries: Sequence[Path], where: str) -> List[Path]:
    """Image files of a split: folders (recursive) and ``.txt`` lists of image paths."""
    files: List[Path] = []
    for entry in entries:
        if entry.is_dir():
            files.extend(sorted(p for p in entry.rglob("*") if p.is_file() and is_image_file(p)))
        elif entry.is_file() and entry.suffix == ".txt":
            for line in entry.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    files.append(p if p.is_absolute() else (entry.parent / p).resolve())
        else:
            raise FileNotFoundError(f"{where}: images not found at {entry}")
    if not files:
        raise ValueError(f"{where}: no images in {', '.join(map(str, entries))}")
    return files


class DetectionDataset(Dataset):
    """Shared loading: a list of (image path, cls, boxes) records → sample dicts."""

    names: Dict[int, str]

    def __init__(self, records: List[tuple], names: Dict[int, str], report: LabelReport,
                 transform: Transform = None) -> None:
        self.records, self.names, self.report, self.transform = records, names, report, transform

    def __len__(self) -> int:
        return len(self.records)

    @property
    def nc(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        path, cls, boxes = self.records[index]
        image = read_rgb(path)
        sample = {"image": image, "cls": cls.copy(), "bboxes": boxes.copy(), "path": str(path),
                  "id": Path(path).stem, "ori_shape": image.shape[:2]}
        return self.transform(sample) if self.transform else sample


class YoloDetectionDataset(DetectionDataset):
    """A split of an ultralytics-format detection dataset (labels in ``labels/`` beside ``images/``).

    Args:
        data: path of the data YAML (``path``, ``train``, ``val``, ``names``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: applied to every sample dict (e.g. :class:`~taskderain.data.Letterbox`).
        strict: raise :class:`~taskderain.data.labels.LabelError` on the first invalid label
            instead of skipping the image with a warning.
    """

    def __init__(self, data: PathLike, split: str = "val", transform: Transform = None, strict: bool = False) -> None:
        self.data = load_data_yaml(data)
        if split not in self.data:
            raise ValueError(f"data YAML {data} has no {split!r} split (has: "
                             f"{', '.join(s for s in ('train', 'val', 'test') if s in self.data)})")
        images = list_split_images(self.data[split], f"{data} [{split}]")
        records, report = scan_labels(images, self.data["nc"], strict=strict)
        super().__init__(records, self.data["names"], report, transform)
        self.split = split
        LOGGER.info(report.summary(f"{Path(data).name} [{split}]", len(records)))
        if report.skipped or report.clipped:
            LOGGER.warning("label problems in %s [%s]:\n%s", data, split, report.details())


class CocoDetectionDataset(DetectionDataset):
    """COCO-json detection annotations read with pycocotools.

    Category ids are mapped to contiguous class indices in sorted id order
    (:attr:`category_ids` maps back for COCO results files); ``iscrowd`` boxes are excluded
    from the targets, as in COCO training.
    """

    def __init__(self, images: PathLike, annotations: PathLike, transform: Transform = None,
                 strict: bool = False) -> None:
        from pycocotools.coco import COCO

        images, annotations = Path(images), Path(annotations)
        if not annotations.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {annotations}")
        try:
            coco = COCO(str(annotations))
        except Exception as exc:  # pycocotools raises bare AssertionError / JSONDecodeError
            raise ValueError(f"cannot read COCO annotations {annotations}: {type(exc).__name__} {exc}") from None
        self.coco = coco
        self.category_ids = sorted(coco.getCatIds())
        to_class = {cat: i for i, cat in enumerate(self.category_ids)}
        names = {to_class[c["id"]]: c["name"] for c in coco.loadCats(self.category_ids)}
        report, records = LabelReport(), []
        self.image_ids: List[int] = []
        for image_id in sorted(coco.getImgIds()):
            info = coco.loadImgs(image_id)[0]
            w, h = info["width"], info["height"]
            anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
            where = f"{annotations.name} image_id {image_id} ({info['file_name']})"
            try:
                unknown = [a["category_id"] for a in anns if a["category_id"] not in to_class]
                if unknown:
                    raise LabelError(f"{where}: unknown category id(s) {unknown}")
                xywh = np.asarray([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
                xywhn = np.stack([(xywh[:, 0] + xywh[:, 2] / 2) / w, (xywh[:, 1] + xywh[:, 3] / 2) / h,
                                  xywh[:, 2] / w, xywh[:, 3] / h], axis=1)
                cls = np.asarray([to_class[a["category_id"]] for a in anns], np.int64)
                boxes, warnings = check_boxes(cls, xywhn, len(names), where)
            except LabelError as exc:
                if strict:
                    raise
                report.skipped.append(str(exc))
                continue
            report.clipped.extend(warnings)
            report.background += len(cls) == 0
            records.append((images / info["file_name"], cls, boxes))
            self.image_ids.append(image_id)
        super().__init__(records, names, report, transform)
        if report.skipped or report.clipped:
            LOGGER.warning("annotation problems in %s:\n%s", annotations, report.details())
