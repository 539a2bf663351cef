"""Detection mAP as detection papers report it: COCO mAP@[.5:.95] with pycocotools' COCOeval.

:func:`coco_map` scores in-memory ground truth and predictions (pixel xyxy boxes) by building a
COCO ground truth and results set and running ``COCOeval`` unchanged (101-point interpolated
precision, ``maxDets=100``, area ``all``). :class:`DetectionEvaluator` accumulates images inside
a validation loop and calls it. ultralytics' validator computes a close but not identical mAP
(different interpolation); numbers from here are the COCOeval ones.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

if TYPE_CHECKING:
    from taskderain.stages.results import Detections

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]
GroundTruth = Tuple[ArrayLike, ArrayLike]  # classes (N,), boxes (N, 4) xyxy px
Prediction = Tuple[ArrayLike, ArrayLike, ArrayLike]  # boxes (M, 4) xyxy px, scores (M,), classes (M,)

DETECTION_PROTOCOL = "COCO mAP@[.5:.95] via pycocotools COCOeval (101-point interpolation, maxDets 100, area all)"


def _numpy(x: ArrayLike, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _boxes(x: ArrayLike, where: str) -> np.ndarray:
    """(N, 4) float64 xyxy; raises naming ``where`` on a bad shape or x2 < x1 / y2 < y1."""
    boxes = _numpy(x, np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must be (N, 4) xyxy pixels, got shape {tuple(boxes.shape)}")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise ValueError(f"{where}: boxes must be xyxy (x2 >= x1, y2 >= y1); box {boxes[bad][0].tolist()} is not "
                         "— convert xywh first")
    return boxes


def _vector(x: ArrayLike, n: int, dtype: Any, what: str, where: str) -> np.ndarray:
    v = _numpy(x, dtype).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"{where}: {n} boxes but {v.shape[0]} {what}")
    return v


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_map(
    gt: Sequence[GroundTruth],
    preds: Sequence[Prediction],
    sizes: Sequence[Tuple[int, int]],
    names: Optional[Mapping[int, str]] = None,
) -> Dict[str, Any]:
    """COCO box mAP of a set of images, computed by pycocotools' ``COCOeval``.

    Ground-truth boxes are ``iscrowd=0`` with ``area = w·h``; categories are the classes of
    ``names`` (or, without it, every class seen in ground truth or predictions). As in COCOeval,
    the means run over the classes that have ground truth; images without ground truth still
    count (their detections are false positives).

    Args:
        gt: per image ``(classes (N,) int, boxes (N, 4) xyxy pixels)``.
        preds: per image ``(boxes (M, 4) xyxy pixels, scores (M,), classes (M,) int)``.
        sizes: per image ``(H, W)`` in pixels.
        names: class index → name; keys of ``per_class``.

    Returns:
        ``{"map50_95", "map50", "map75"}`` in [0, 1] (0 when there are no detections, ``nan``
        when there is no ground truth at all), ``"per_class"`` (name → AP@[.5:.95] for classes
        with ground truth), ``"n_images"``, ``"n_gt"``, ``"n_det"``, ``"protocol"``.

    Raises:
        ValueError: lengths of ``gt``/``preds``/``sizes`` differ, bad box shapes, or a class
            outside ``names`` (naming the image and the class).
    """
    built = _coco_eval(gt, preds, sizes, names)
    if isinstance(built, dict):  # nothing to evaluate: the figures are known
        return built
    evaluator, present, label, out = built
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints the summary table
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    # precision: [T iou thresholds, R recall thresholds, K categories, A areas, M maxDets]; -1 = no GT
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, c in enumerate(evaluator.params.catIds):
        p = precision[:, :, k]
        if c in present:
            per_class[label(c)] = float(p[p > -1].mean())
    return {"map50_95": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2]),
            "per_class": per_class, **out}


def _coco_eval(gt: Sequence[GroundTruth], preds: Sequence[Prediction], sizes: Sequence[Tuple[int, int]],
               names: Optional[Mapping[int, str]]):
    """A ``COCOeval`` of the images after ``evaluate()`` (per-image matching done), with the classes
    that have ground truth, their label function and the count fields; or, when there is nothing to
    match (no ground truth, no detections), :func:`coco_map`'s result directly."""
    if not len(gt) == len(preds) == len(sizes):
        raise ValueError(f"gt, preds and sizes must have one entry per image, "
                         f"got {len(gt)}, {len(preds)}, {len(sizes)}")
    images, annotations, results = [], [], []
    for i, ((gt_cls, gt_boxes), (boxes, scores, classes), (h, w)) in enumerate(zip(gt, preds, sizes)):
        image_id = i + 1
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        gb = _boxes(gt_boxes, f"image {i} ground truth")
        gc = _vector(gt_cls, len(gb), np.int64, "ground-truth classes", f"image {i}")
        for box, c in zip(_xywh(gb).tolist(), gc.tolist()):
            # ids from 1: COCOeval stores matched ids and treats 0 as "unmatched"
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c),
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        db = _boxes(boxes, f"image {i} detections")
        ds = _vector(scores, len(db), np.float64, "scores", f"image {i} detections")
        dc = _vector(classes, len(db), np.int64, "classes", f"image {i} detections")
        for box, s, c in zip(_xywh(db).tolist(), ds.tolist(), dc.tolist()):
            results.append({"image_id": image_id, "category_id": int(c), "bbox": box, "score": s})

    seen = {a["category_id"] for a in annotations} | {r["category_id"] for r in results}
    if names is not None:
        unknown = sorted(seen - set(names))
        if unknown:
            raise ValueError(f"class(es) {unknown} not in names (ids {min(names)}..{max(names)}); "
                             "pass names covering every class, or map detector classes to dataset classes first")
        categories = sorted(names)
    else:
        categories = sorted(seen)
    label = (lambda c: str(names.get(c, c))) if names is not None else str
    present = sorted({a["category_id"] for a in annotations})
    out: Dict[str, Any] = {"n_images": len(images), "n_gt": len(annotations), "n_det": len(results),
                           "protocol": DETECTION_PROTOCOL}
    if not annotations:
        return {"map50_95": math.nan, "map50": math.nan, "map75": math.nan, "per_class": {}, **out}
    if not results:  # COCO.loadRes fails on an empty list; nothing detected is AP 0 everywhere
        return {"map50_95": 0.0, "map50": 0.0, "map75": 0.0, "per_class": {label(c): 0.0 for c in present}, **out}

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations,
                           "categories": [{"id": c, "name": label(c)} for c in categories]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
    return evaluator, present, label, out


class DetectionEvaluator:
    """Accumulates ground truth and detections image by image; :meth:`compute` gives COCO mAP.

    Args:
        names: class index → name (all of them become COCO categories); ``None`` uses the classes
            seen.
        iou_type: ``"bbox"`` (the only type supported).

    Example::

        evaluator = DetectionEvaluator(dataset.names)
        for sample in dataset:
            evaluator.add_sample(sample, detector.predict(...)[0])
        evaluator.compute()["map50_95"]
    """

    def __init__(self, names: Optional[Mapping[int, str]] = None, iou_type: str = "bbox") -> None:
        if iou_type != "bbox":
            raise ValueError(f"iou_type {iou_type!r} is not supported; use 'bbox'")
        self.names = {int(k): str(v) for k, v in names.items()} if names is not None else None
        self.iou_type = iou_type
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far."""
        self.image_ids: List[Any] = []
        self._seen: set = set()
        self._gt: List[GroundTruth] = []
        self._preds: List[Prediction] = []
        self._sizes: List[Tuple[int, int]] = []
        self._resampler: Any = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def add(
        self,
        image_id: Any,
        gt_classes: ArrayLike,
        gt_boxes: ArrayLike,
        detections: Union["Detections", Prediction],
        image_size: Tuple[int, int],
    ) -> None:
        """Add one image.

        Args:
            image_id: any hashable id, unique per image.
            gt_classes: (N,) int class indices.
            gt_boxes: (N, 4) xyxy in pixels of the original image.
            detections: :class:`~taskderain.stages.Detections`, or ``(boxes (M, 4) xyxy px,
                scores (M,), classes (M,))``.
            image_size: ``(H, W)`` of the original image in pixels.

        Raises:
            ValueError: ``image_id`` added twice, or bad shapes (naming the image).
        """
        if image_id in self._seen:
            raise ValueError(f"image_id {image_id!r} was already added; ids must be unique (call reset() between runs)")
        if hasattr(detections, "boxes"):
            detections = (detections.boxes, detections.scores, detections.classes)
        boxes, scores, classes = detections
        where = f"image {image_id!r}"
        gb = _boxes(gt_boxes, f"{where} ground truth")
        db = _boxes(boxes, f"{where} detections")
        gt = (_vector(gt_classes, len(gb), np.int64, "ground-truth classes", where), gb)
        pred = (db, _vector(scores, len(db), np.float64, "scores", where),
                _vector(classes, len(db), np.int64, "classes", where))
        size = (int(image_size[0]), int(image_size[1]))
        self._gt.append(gt)  # only after every check passed: a failed add leaves no trace
        self._preds.append(pred)
        self._sizes.append(size)
        self.image_ids.append(image_id)
        self._seen.add(image_id)
        self._resampler = None

    def add_sample(self, sample: Mapping[str, Any], detections: Union["Detections", Prediction]) -> None:
        """Add a detection-dataset sample (``cls``, ``bboxes`` normalised xywh, ``ori_shape``, ``id``).

        The boxes are scaled to pixel xyxy of the original image ``ori_shape = (H, W)``, the frame
        :class:`~taskderain.stages.Detections` are in.
        """
        h, w = (int(v) for v in sample["ori_shape"])
        xywhn = _numpy(sample["bboxes"], np.float64).reshape(-1, 4)
        cx, cy, bw, bh = (xywhn[:, 0] * w, xywhn[:, 1] * h, xywhn[:, 2] * w, xywhn[:, 3] * h)
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        self.add(sample.get("id", len(self)), sample["cls"], xyxy, detections, (h, w))

    def compute(self, indices: Optional[Sequence[int]] = None) -> Dict[str, Any]:
        """COCO mAP of the images added (or of ``indices`` into them, in the order added, repeats
        allowed: a bootstrap resample): see :func:`coco_map` for the keys."""
        if indices is None:
            return coco_map(self._gt, self._preds, self._sizes, self.names)
        return coco_map([self._gt[i] for i in indices], [self._preds[i] for i in indices],
                        [self._sizes[i] for i in indices], self.names)

    def resampled(self, indices: Sequence[int]) -> Dict[str, float]:
        """``{"map50_95", "map50", "map75"}`` of a resample of the images added (repeats allowed), as
        :meth:`compute` gives it, with COCOeval's matching done once for every resample
        (:class:`~taskderain.metrics.coco_resample.CocoResampler`): the bootstrap's fast path."""
        if self._resampler is None:  # add() and reset() drop it
            from .coco_resample import CocoResampler

            self._resampler = CocoResampler(self._gt, self._preds, self._sizes, self.names)
        return self._resampler.compute(indices)

    def __repr__(self) -> str:
        return f"DetectionEvaluator({len(self)} images, iou_type={self.iou_type!r})"
