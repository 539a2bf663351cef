"""COCO mAP of image resamples (the bootstrap's) without redoing COCOeval's matching.

pycocotools scores in two passes: ``COCOeval.evaluate`` matches detections to ground truth per
image and class, ``COCOeval.accumulate`` pools the matches of all images into precision/recall
curves. A resample of the images (with repeats) changes only the pooling, so
:class:`CocoResampler` runs ``evaluate`` once and pools each resample with ``accumulate``'s own
algorithm (area ``all``, ``maxDets`` 100, 101 recall points, stable sort by score): its figures
are those of :func:`~taskderain.metrics.coco_map` on the resampled images, repeats counted as new
images, at a small fraction of the cost (``tests/test_coco_resample.py`` checks they are equal).
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .detection import GroundTruth, Prediction, _coco_eval

#: one image's matches for one class: scores (D,), matched (T, D), ignored (T, D), non-ignored GT count
_Matches = Tuple[np.ndarray, np.ndarray, np.ndarray, int]


class CocoResampler:
    """COCO mAP50-95 / mAP50 / mAP75 of any resample of a fixed set of scored images.

    Args:
        gt, preds, sizes, names: as :func:`~taskderain.metrics.coco_map`.

    Example::

        resampler = CocoResampler(gt, preds, sizes, names)
        resampler.compute([3, 3, 0, 7])["map50_95"]  # == coco_map on images 3, 3, 0, 7
    """

    def __init__(self, gt: Sequence[GroundTruth], preds: Sequence[Prediction], sizes: Sequence[Tuple[int, int]],
                 names: Optional[Mapping[int, str]] = None) -> None:
        built = _coco_eval(gt, preds, sizes, names)
        self.count = len(gt)
        self._has_gt = np.array([len(np.asarray(g[1]).reshape(-1, 4)) > 0 for g in gt], bool)
        self._classes: List[List[Optional[_Matches]]] = []
        if isinstance(built, dict):  # no ground truth or no detections: nothing to pool
            return
        evaluator, present, _, _ = built
        p = evaluator.params
        if p.areaRngLbl[0] != "all":
            raise RuntimeError(f"pycocotools' first area range is {p.areaRngLbl[0]!r}, expected 'all'")
        self._iou_thresholds, self._recall_points = np.asarray(p.iouThrs), np.asarray(p.recThrs)
        n_img, n_area = len(p.imgIds), len(p.areaRng)
        keep = set(present)  # a class without ground truth never enters the mean
        for k, category in enumerate(p.catIds):
            if category not in keep:
                continue
            per_image: List[Optional[_Matches]] = []
            for i in range(n_img):
                e = evaluator.evalImgs[k * n_area * n_img + i]  # area index 0 = 'all'
                if e is None:
                    per_image.append(None)
                    continue
                gt_ignore = np.asarray(e["gtIgnore"], bool)
                per_image.append((np.asarray(e["dtScores"], np.float64), np.asarray(e["dtMatches"]) > 0,
                                  np.asarray(e["dtIgnore"], bool), int(np.count_nonzero(~gt_ignore))))
            self._classes.append(per_image)

    def compute(self, indices: Optional[Sequence[int]] = None) -> Dict[str, float]:
        """``{"map50_95", "map50", "map75"}`` of the images at ``indices`` (repeats allowed; all
        images when None): ``nan`` when they hold no ground truth, 0 when nothing was detected."""
        idx = list(range(self.count)) if indices is None else [int(i) for i in indices]
        if any(i < 0 or i >= self.count for i in idx):
            raise IndexError(f"resample indices must lie in [0, {self.count}), got {min(idx)}..{max(idx)}")
        if not self._has_gt[idx].any():
            return {"map50_95": math.nan, "map50": math.nan, "map75": math.nan}
        curves = [c for c in (self._precision(per_image, idx) for per_image in self._classes) if c is not None]
        if not curves:  # ground truth, but no detection anywhere
            return {"map50_95": 0.0, "map50": 0.0, "map75": 0.0}
        precision = np.stack(curves, axis=-1)  # (T, R, K), as COCOeval's eval["precision"][..., 0, -1]
        at = lambda t: float(precision[int(np.argmin(np.abs(self._iou_thresholds - t)))].mean())  # noqa: E731
        return {"map50_95": float(precision.mean()), "map50": at(0.5), "map75": at(0.75)}

    def _precision(self, per_image: List[Optional[_Matches]], idx: List[int]) -> Optional[np.ndarray]:
        """(T, R) interpolated precision of one class over the resample, or None without its
        ground truth in it (COCOeval's -1 entries, left out of the mean)."""
        chosen = [per_image[i] for i in idx if per_image[i] is not None]
        n_gt = sum(m[3] for m in chosen)
        if n_gt == 0:
            return None
        scores = np.concatenate([m[0] for m in chosen])
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([m[1] for m in chosen], axis=1)[:, order]
        ignored = np.concatenate([m[2] for m in chosen], axis=1)[:, order]
        tp = np.cumsum(matched & ~ignored, axis=1).astype(float)
        fp = np.cumsum(~matched & ~ignored, axis=1).astype(float)
        recall = tp / n_gt
        precision = tp / (fp + tp + np.spacing(1))
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # monotone envelope
        out = np.zeros((len(self._iou_thresholds), len(self._recall_points)))
        for t in range(len(self._iou_thresholds)):
            at = np.searchsorted(recall[t], self._recall_points, side="left")
            valid = at < recall.shape[1]
            out[t, valid] = precision[t, at[valid]]
        return out
