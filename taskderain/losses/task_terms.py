"""Task-driven loss terms beyond the task losses themselves (registered built-ins of :mod:`.terms`).

A frozen detector's loss alone can push a restorer toward patterns that please that detector and
nothing else (Sun et al., NeurIPS 2022, "Rethinking Image Restoration for Object Detection"). The
terms here are the remedies the literature proposes, each a named term of a training config's
``loss`` section (weights are the config's; every term is logged)::

    loss: {restoration: 1.0, detector_features: 0.5}                 # SR4IR-style perceptual loss
    loss: {restoration: 1.0, detection_consistency: 0.05}            # clean-image detections as targets
    loss: {targeted_restoration: 1.0}                                # Sun et al.'s TAR target

* ``detector_features`` — task-driven perceptual loss (SR4IR, Kim et al., CVPR 2024; FogGuard's
  teacher–student feature loss): L1 between the frozen detector's neck features (YOLOv8: P3, P4,
  P5, the layers its Detect head reads) of the derained and of the clean images, each layer
  divided by the mean magnitude of its clean features so every scale counts alike.
* ``detection_consistency`` — detections on derained vs on clean images: the detector's own
  detections on the clean image (NMS at ``conf``) are the labels of its loss on the derained
  image. Needs no annotations, so it also trains on unlabelled images.
* ``targeted_restoration`` — Sun et al.'s targeted-adversarial restoration target: the clean image
  nudged *toward* the ground truth by a few signed-gradient steps of the detection loss (bounded
  by ``epsilon`` per pixel), then MSPFN's pixel loss to that target. The detector's preference
  enters only through a small, bounded change of the target, never as a free-form gradient on the
  output, which is what guards against adversarial artefacts.

Each term returns None (left out of that step) when the pipeline has no detection head or the
batch has no clean image (or, for ``targeted_restoration``, no labels).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from .restoration import mspfn_loss
from .terms import Step, register_loss_term


def _detection_head(step: Step, head: Optional[str]) -> Any:
    """The named head, or the pipeline's first detection head (None when there is none)."""
    if head is not None:
        return step.pipeline.head(head)
    return next((h for h in step.pipeline.heads.values() if h.task == "detection"), None)


def _has_detection_head(pipeline: Any) -> bool:
    return any(h.task == "detection" for h in pipeline.heads.values())


@register_loss_term("detector_features")
def detector_features(step: Step, head: Optional[str] = None,
                      layers: Optional[Sequence[int]] = None) -> Optional[torch.Tensor]:
    """Task-driven perceptual loss: L1 of the frozen detector's features, derained vs clean.

    The mean over ``layers`` (default: the detection head's inputs) of
    ``|f(derained) − f(clean)|₁ / mean|f(clean)|`` with the detection head's features ``f``."""
    det = _detection_head(step, head)
    if det is None or step.clean is None or not hasattr(det, "features"):
        return None
    with step.autocast():
        with torch.no_grad():
            target = [f.float() for f in det.features(step.clean, layers)]
        ours = [f.float() for f in det.features(step.derained, layers)]
    parts = [(a - b).abs().mean() / b.abs().mean().clamp_min(1e-6) for a, b in zip(ours, target)]
    return torch.stack(parts).mean()


detector_features.applies = _has_detection_head  # type: ignore[attr-defined]


def pseudo_labels(detections: Sequence[Any], shape: Sequence[int], device: torch.device) -> Dict[str, torch.Tensor]:
    """Detections of a batch of (H, W) images as ultralytics loss labels (``batch_idx``, ``cls``,
    ``bboxes`` normalised xywh)."""
    h, w = int(shape[0]), int(shape[1])
    idx, cls, boxes = [], [], []
    for i, det in enumerate(detections):
        b = det.boxes.to(device, torch.float32)
        xywh = torch.stack([(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h,
                            (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], 1)
        idx.append(torch.full((len(b),), float(i), device=device))
        cls.append(det.classes.to(device, torch.float32))
        boxes.append(xywh)
    return {"batch_idx": torch.cat(idx), "cls": torch.cat(cls).view(-1, 1), "bboxes": torch.cat(boxes).view(-1, 4)}


@register_loss_term("detection_consistency")
def detection_consistency(step: Step, head: Optional[str] = None, conf: float = 0.25) -> Optional[torch.Tensor]:
    """Detection consistency: the detector's loss on derained images against its detections on clean ones.

    The detection loss (sum of its parts, per image) with the detector's own detections on the
    clean images (confidence ≥ ``conf``) as labels."""
    det = _detection_head(step, head)
    if det is None or step.clean is None:
        return None
    with torch.no_grad():
        targets = [d for d in det.predict(step.clean.detach())]
    kept = [type(d)(d.boxes[d.scores >= conf].clone(), d.scores[d.scores >= conf].clone(),
                    d.classes[d.scores >= conf].clone(), d.names) for d in targets]
    labels = pseudo_labels(kept, step.clean.shape[-2:], step.derained.device)
    with step.autocast():
        parts = det.loss(step.derained, labels)
    return sum(v.float() for v in parts.values())


detection_consistency.applies = _has_detection_head  # type: ignore[attr-defined]


def targeted_target(det: Any, clean: torch.Tensor, batch: Dict[str, Any], epsilon: float, steps: int) -> torch.Tensor:
    """The clean images moved by ``steps`` signed-gradient steps that *lower* the detection loss
    against the labels, within ``epsilon`` per pixel and [0, 1] (Sun et al.'s targeted attack)."""
    alpha = epsilon / steps
    target = clean.detach().clone()
    for _ in range(steps):
        target.requires_grad_(True)
        with torch.enable_grad():
            loss = sum(det.loss(target, batch).values())
            (grad,) = torch.autograd.grad(loss, target)
        with torch.no_grad():
            target = target - alpha * grad.sign()
            target = (clean + (target - clean).clamp(-epsilon, epsilon)).clamp(0, 1)
    return target.detach()


@register_loss_term("targeted_restoration")
def targeted_restoration(step: Step, head: Optional[str] = None, epsilon: float = 4 / 255,
                         steps: int = 2) -> Optional[torch.Tensor]:
    """Targeted restoration (Sun et al. 2022): MSPFN's loss to the clean image nudged toward the labels.

    The target is :func:`targeted_target` of the clean images (``steps`` signed-gradient steps of
    the detection loss, within ``epsilon`` per pixel)."""
    det = _detection_head(step, head)
    if det is None or step.clean is None or not det.has_labels(step.batch):
        return None
    target = targeted_target(det, step.clean.float(), step.batch, float(epsilon), int(steps))
    return mspfn_loss(step.derained.float(), target)


targeted_restoration.applies = _has_detection_head  # type: ignore[attr-defined]
