"""One image through rain → derain → detect / segment on the evaluation geometry (pure steps, no I/O).

Geometry (:mod:`.geometry`): ultralytics' validator letterbox. The image is resized so its
longest side is ``imgsz`` (bilinear, sides rounded up, as ultralytics' validator loads images);
the derainer sees that content and PSNR/SSIM score it; the detector sees it centred on its
rect-batch canvas (grey border, ``ceil(shape * imgsz / stride + 0.5) * stride``) and its boxes
are mapped back to ORIGINAL image pixels, where the ground truth lives, with ultralytics'
``ratio_pad``. Rain is synthesised at the original resolution first (:meth:`RainCondition.apply
<taskderain.evaluation.conditions.RainCondition.apply>`), then resized like the clean image. The
derained image is quantised to 8 bits before anything scores it (as a saved PNG would be).
The segmenter sees the content (no border); masks are resized with nearest neighbour.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import nn

from ..inference import module_device, to_tensor
from .geometry import ValidatorGeometry

DetectionArrays = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N,4) xyxy px, scores (N,), classes (N,)


@torch.inference_mode()
def detect_uint8(detector: nn.Module, content: np.ndarray, geometry: ValidatorGeometry) -> DetectionArrays:
    """Detections on the resized uint8 ``content`` of one image, boxes in ORIGINAL image pixels (xyxy, clipped).

    The content goes on its canvas (``geometry.pad``) and through the head's
    ``predict_for_metrics(canvas, letterboxed=True)`` — for the YOLO head ultralytics' NMS as its
    validator runs it: multi-label, the detector's ``conf`` / ``iou`` / ``max_det``, no time limit.
    """
    x = to_tensor(geometry.pad(content)).to(module_device(detector))
    det = detector.predict_for_metrics(x, letterboxed=True)[0]
    boxes = geometry.to_original(det.boxes.cpu().numpy())
    return (boxes, det.scores.cpu().numpy().astype(np.float64), det.classes.cpu().numpy().astype(np.int64))


def segment_uint8(segmenter: nn.Module, image: np.ndarray) -> np.ndarray:
    """(h, w) int64 class ids predicted on an evaluation-size uint8 image."""
    return segmenter.predict(to_tensor(image).to(module_device(segmenter)))[0].cpu().numpy().astype(np.int64)
