"""Semantic-segmentation mIoU as segmentation papers report it.

One confusion matrix is accumulated over every pixel of every image of the evaluated set
(``ignore_index`` pixels skipped), then ``IoU_c = TP / (TP + FP + FN)`` per class and mIoU is
the mean over the classes present in the ground truth — not a mean of per-image IoUs.
:func:`confusion_matrix` counts with ``torch.bincount`` on the inputs' device.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

Labels = Union[np.ndarray, torch.Tensor]


def _protocol(ignore_index: int) -> str:
    return (f"mIoU over classes present in the ground truth, confusion matrix accumulated over all images, "
            f"ignore index {ignore_index}")


def _tensor(x: Labels, what: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.dtype.is_floating_point or t.is_complex():
        raise TypeError(f"{what} must hold integer class indices, got {t.dtype}; "
                        "pass logits.argmax(dim=1) rather than logits or probabilities")
    return t.long()


def confusion_matrix(pred: Labels, target: Labels, num_classes: int, ignore_index: Optional[int] = 255) -> Labels:
    """Pixel confusion matrix: ``cm[t, p]`` = number of pixels of class ``t`` predicted as ``p``.

    Pixels whose target is ``ignore_index`` are skipped; every other pixel counts once.

    Args:
        pred: (H, W) or (B, H, W) int predicted class indices in [0, num_classes).
        target: same shape, int ground-truth class indices in [0, num_classes) or ``ignore_index``.
        num_classes: C.
        ignore_index: label of unlabeled pixels (``None``: every pixel counts).

    Returns:
        (C, C) int64 counts, rows = target, columns = prediction: a torch tensor on the inputs'
        device when either input is a tensor, else a NumPy array.

    Raises:
        ValueError: shapes differ, or a counted pixel has a prediction or target outside
            [0, C) (the bad values are named).
        TypeError: float inputs (logits instead of class indices).
    """
    as_numpy = not isinstance(pred, torch.Tensor) and not isinstance(target, torch.Tensor)
    p, t = _tensor(pred, "pred"), _tensor(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred shape {tuple(p.shape)} and target shape {tuple(t.shape)} differ")
    device = p.device if isinstance(pred, torch.Tensor) else t.device
    p, t = p.to(device).reshape(-1), t.to(device).reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for name, v in (("target", t), ("pred", p)):
        bad = (v < 0) | (v >= num_classes)
        if bad.any():
            values = torch.unique(v[bad])
            shown = values[:10].tolist()
            raise ValueError(f"{name} has class ids outside [0, {num_classes}) on counted pixels: {shown}"
                             f"{' ...' if len(values) > 10 else ''}"
                             + (f" (ignore_index is {ignore_index})" if name == "target" else ""))
    cm = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return cm.cpu().numpy() if as_numpy else cm


def _counts(cm: Labels) -> np.ndarray:
    cm = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be (C, C), got shape {cm.shape}")
    return cm.astype(np.float64)


def miou_from_confusion(cm: Labels, present_only: bool = True) -> Tuple[float, np.ndarray]:
    """mIoU and per-class IoU of a confusion matrix (rows = target, columns = prediction).

    ``IoU_c = TP / (TP + FP + FN)`` with ``TP = cm[c, c]``, ``FN`` = rest of row c, ``FP`` = rest
    of column c.

    Args:
        cm: (C, C) counts, e.g. from :func:`confusion_matrix`.
        present_only: average over classes with ground-truth pixels (the protocol); False
            averages over every class with a non-empty union (also those only predicted, IoU 0).

    Returns:
        (mIoU in [0, 1] — ``nan`` if no class qualifies, (C,) float64 IoU per class — ``nan``
        for classes left out of the mean).
    """
    cm = _counts(cm)
    tp = np.diag(cm)
    gt, predicted = cm.sum(axis=1), cm.sum(axis=0)
    union = gt + predicted - tp
    keep = gt > 0 if present_only else union > 0
    iou = np.full(len(cm), np.nan)
    iou[keep] = tp[keep] / union[keep]
    return (float(iou[keep].mean()) if keep.any() else math.nan), iou


def pixel_accuracy(cm: Labels) -> float:
    """Fraction of counted pixels predicted correctly: ``trace(cm) / sum(cm)`` (``nan`` if empty)."""
    cm = _counts(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else math.nan


class SegmentationEvaluator:
    """Accumulates one confusion matrix over a set of images; :meth:`compute` gives mIoU.

    Args:
        num_classes: C.
        ignore_index: label of unlabeled pixels in the targets.
        names: class index → name (or a list); keys of ``per_class``.

    The matrix lives on the device of the first tensor added, so CUDA predictions are counted
    without a copy to the host.
    """

    def __init__(self, num_classes: int, ignore_index: Optional[int] = 255,
                 names: Optional[Union[Mapping[int, str], Sequence[str]]] = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        if names is None:
            self.names = {i: str(i) for i in range(num_classes)}
        else:
            self.names = ({int(k): str(v) for k, v in names.items()} if isinstance(names, Mapping)
                          else dict(enumerate(map(str, names))))
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far."""
        self.confusion: Optional[torch.Tensor] = None
        self.n_images = 0

    def add(self, pred: Labels, target: Labels) -> None:
        """Add (H, W) or (B, H, W) int predictions and targets (torch, CPU or CUDA, or NumPy)."""
        pred = _tensor(pred, "pred")
        if pred.ndim not in (2, 3):
            raise ValueError(f"pred must be (H, W) or (B, H, W) class indices, got shape {tuple(pred.shape)}")
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.confusion = cm if self.confusion is None else self.confusion + cm.to(self.confusion.device)
        self.n_images += 1 if pred.ndim == 2 else pred.shape[0]

    def compute(self) -> Dict[str, Any]:
        """``{"miou", "pixel_acc", "per_class" (name → IoU, classes present in the ground truth),
        "n_images", "confusion" ((C, C) int64 NumPy), "protocol"}``."""
        cm = (self.confusion.cpu().numpy() if self.confusion is not None
              else np.zeros((self.num_classes, self.num_classes), np.int64))
        miou, iou = miou_from_confusion(cm)
        per_class = {self.names.get(c, str(c)): float(v) for c, v in enumerate(iou) if not np.isnan(v)}
        return {"miou": miou, "pixel_acc": pixel_accuracy(cm), "per_class": per_class,
                "n_images": self.n_images, "confusion": cm, "protocol": _protocol(self.ignore_index)}

    def __repr__(self) -> str:
        return f"SegmentationEvaluator(num_classes={self.num_classes}, ignore_index={self.ignore_index}, " \
               f"{self.n_images} images)"
