"""Cross-check of the reported mAP: pycocotools (ours) against ultralytics' own validator, same images.

Three numbers on the same images and weights:

1. ``ultralytics``: ``YOLO(weights).val(...)`` — ultralytics' predictions scored by its own metric;
2. ``pycocotools_on_ultralytics``: the *same predictions* scored by pycocotools' COCOeval
   (:func:`~taskderain.metrics.coco_map`) — isolates the metric difference;
3. ``taskderain``: ``taskderain eval``'s own path (clean images, identity derainer, the
   :class:`~taskderain.stages.Detector`) scored by COCOeval — what the reports contain.

Why 1 and 2 differ (the interpolation difference): ultralytics matches detections to ground truth
per IoU threshold by IoU (highest first), builds the precision envelope with sentinels (precision
1 at recall 0, 0 beyond the last recall), interpolates it *linearly* at 101 recall points and
integrates with the trapezoid rule. COCOeval matches greedily in score order, samples the *step*
envelope at 101 recall points (precision of the first operating point reaching each recall, 0
beyond the maximum recall) and averages them. The gaps are largest for classes with few
instances. 2 and 3 share the geometry (:mod:`.geometry`: the validator's resize and rect-batch
canvases, reproduced image by image) and the NMS; they agree within rounding (the oracle test
holds them to ±0.002 on COCO128 at 640 and 320 px).

ultralytics' validator writes ``labels/*.cache`` beside the labels, so it runs on a copy of the
images and labels in ``workdir`` (a temporary folder by default); the source is never written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import yaml

from ..data.labels import label_path_for
from ..metrics import DetectionEvaluator
from .cache import EvalCache
from .conditions import clean_condition
from .dataset import EvalData, open_eval_data
from .runner import Evaluation, EvalSettings
from .stages import identity_spec
from ..types import PathLike



def copy_yolo_split(data: EvalData, folder: Path) -> Path:
    """Copy the evaluated images and their labels to ``folder`` (YOLO layout); returns the data YAML."""
    images, labels = folder / "images" / "val", folder / "labels" / "val"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for path, _, _ in data.labels:
        path = Path(path)
        shutil.copyfile(path, images / path.name)
        label = label_path_for(path)
        if label.is_file():
            shutil.copyfile(label, labels / f"{path.stem}.txt")
    spec = {"path": str(folder), "train": "images/val", "val": "images/val", "names": dict(data.names)}
    target = folder / "data.yaml"
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def _recording_validator():
    """A DetectionValidator that also keeps every image's final predictions in original pixels."""
    from ultralytics.models.yolo.detect import DetectionValidator

    class RecordingValidator(DetectionValidator):
        recorded: List[Dict[str, Any]] = []

        def update_metrics(self, preds, batch):  # noqa: D401 - ultralytics hook
            for si, pred in enumerate(preds):
                pbatch = self._prepare_batch(si, batch)
                predn = self.scale_preds(self._prepare_pred(dict(pred)), pbatch)
                RecordingValidator.recorded.append({
                    "stem": Path(pbatch["im_file"]).stem, "ori_shape": tuple(int(v) for v in pbatch["ori_shape"]),
                    "boxes": predn["bboxes"].cpu().numpy().astype(np.float64),
                    "scores": predn["conf"].cpu().numpy().astype(np.float64),
                    "classes": predn["cls"].cpu().numpy().astype(np.int64)})
            return super().update_metrics(preds, batch)

    RecordingValidator.recorded = []
    return RecordingValidator


def ultralytics_crosscheck(weights: PathLike, data: PathLike, split: str = "val", imgsz: int = 640,
                           limit: Optional[int] = None, batch: int = 16, conf: float = 0.001, iou: float = 0.7,
                           workdir: Optional[PathLike] = None, allow_unpaired_labels: bool = False) -> Dict[str, Any]:
    """mAP50-95 / mAP50 of ``weights`` on a YOLO split by ultralytics and by pycocotools (see the module docstring).

    Args:
        weights: ultralytics detection checkpoint. ``data``: ultralytics data YAML; ``split``.
        imgsz: inference size. ``limit``: first N images only. ``batch``: ultralytics' val batch
            (its rect canvases; taskderain's evaluation uses the same).
        workdir: where the copy, ultralytics' run folder and the eval cache go (default: a temporary
            folder, removed afterwards).
        allow_unpaired_labels: see :func:`~taskderain.evaluation.open_eval_data` (the copy holds
            only the evaluated images and their labels).

    Returns:
        ``{"ultralytics": {"map50_95", "map50"}, "pycocotools_on_ultralytics": {...},
        "taskderain": {...}, "n_images", "imgsz", "weights", "data"}`` (fractions in [0, 1]).
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from ultralytics import YOLO

    from ..stages import create_detector

    evaluated = open_eval_data(data, split, limit=limit, allow_unpaired_labels=allow_unpaired_labels)
    temporary = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="taskderain-crosscheck-") if temporary else workdir)
    try:
        yaml_path = copy_yolo_split(evaluated, folder / "dataset")
        validator = _recording_validator()
        metrics = YOLO(str(weights)).val(validator=validator, data=str(yaml_path), split="val", imgsz=imgsz,
                                         batch=batch, conf=conf, iou=iou, device="cpu", plots=False, verbose=False,
                                         workers=0, project=str(folder / "runs"), name="val", exist_ok=True)
        by_stem = {r["stem"]: r for r in validator.recorded}
        scored = DetectionEvaluator(evaluated.names)
        for path, cls, xywhn in evaluated.labels:
            r = by_stem[Path(path).stem]
            scored.add_sample({"id": Path(path).stem, "cls": cls, "bboxes": xywhn, "ori_shape": r["ori_shape"]},
                              (r["boxes"], r["scores"], r["classes"]))
        theirs = scored.compute()
        detector = create_detector(weights=weights, imgsz=imgsz)
        ours = Evaluation(evaluated, [clean_condition()], [identity_spec()], {"detector": detector},
                          EvalCache(folder / "cache"), EvalSettings(imgsz=imgsz, batch=batch, conf=conf, iou=iou)).run(progress=False)[0]
        return {
            "ultralytics": {"map50_95": float(metrics.box.map), "map50": float(metrics.box.map50)},
            "pycocotools_on_ultralytics": {"map50_95": theirs["map50_95"], "map50": theirs["map50"]},
            "taskderain": {"map50_95": ours["map50_95"], "map50": ours["map50"]},
            "n_images": len(evaluated), "n_gt": theirs["n_gt"], "imgsz": imgsz, "batch": batch,
            "weights": str(weights), "data": str(data), "split": split,
        }
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
