"""One image through rain → derain → detect / segment at the evaluation size (pure steps, no I/O).

Geometry: the image is resized so its longest side is ``imgsz`` (aspect kept; area-averaging when
shrinking, bilinear when enlarging, as ultralytics' validator loads images) and *not* padded — the
content of a letterbox without its grey border, so no network spends time on padding and
PSNR/SSIM score content only.
Rain is synthesised at the original resolution first (:meth:`RainCondition.apply
<taskderain.evaluation.conditions.RainCondition.apply>`: ``add_rain(image, params, image_seed(id,
seed))`` for the streak presets, the epoch-0 rain of :class:`~taskderain.rain.Rainy` as validation
in training uses, or a zoo model's ``apply``), then resized with the same geometry as the clean image. The derained image is
quantised to 8 bits before anything scores it (as a saved PNG would be); the detector letterboxes
it to ``imgsz`` itself and its boxes are mapped back to ORIGINAL image pixels, where the ground
truth lives. Masks are resized with nearest neighbour.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np
import torch
from torch import nn

from ..data.letterbox import LetterboxParams, letterbox_image, letterbox_mask, letterbox_params, unletterbox_xyxy
from ..inference import module_device, to_tensor

DetectionArrays = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N,4) xyxy px, scores (N,), classes (N,)


def eval_geometry(shape: Tuple[int, int], imgsz: int) -> LetterboxParams:
    """Resize-only letterbox of an (H, W) image to longest side ``imgsz`` (no padding)."""
    return letterbox_params(tuple(shape[:2]), imgsz, scaleup=True, auto=True, stride=1)


def resize_image(image: np.ndarray, geometry: LetterboxParams) -> np.ndarray:
    """(H, W, 3) uint8 → the evaluation-size (h, w, 3) uint8: area-averaging when shrinking, bilinear
    when enlarging (ultralytics' validator's ``load_image`` rule)."""
    shrink = geometry.ratio < 1
    return letterbox_image(image, geometry, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, geometry: LetterboxParams, ignore_index: int = 255) -> np.ndarray:
    """(H, W) class ids → evaluation size (nearest neighbour)."""
    return letterbox_mask(mask, geometry, ignore_index)


@torch.inference_mode()
def detect_uint8(detector: nn.Module, image: np.ndarray, geometry: LetterboxParams,
                 multi_label: bool = True) -> DetectionArrays:
    """Detections on an evaluation-size uint8 image, boxes in ORIGINAL image pixels (xyxy, clipped).

    ``Detector.predict`` (its letterbox, model and ultralytics' NMS with the detector's ``conf`` /
    ``iou`` / ``max_det``) with, by default, ``multi_label=True`` — one box may carry several
    classes, as ultralytics' validator scores mAP — and no NMS time limit (a loaded machine must
    not drop detections).
    """
    x = to_tensor(image).to(module_device(detector))
    det = (detector.predict_for_metrics(x) if multi_label else detector.predict(x, time_limit=False))[0]
    boxes = unletterbox_xyxy(det.boxes.cpu().numpy(), geometry).astype(np.float64)
    return (boxes, det.scores.cpu().numpy().astype(np.float64), det.classes.cpu().numpy().astype(np.int64))


def segment_uint8(segmenter: nn.Module, image: np.ndarray) -> np.ndarray:
    """(h, w) int64 class ids predicted on an evaluation-size uint8 image."""
    return segmenter.predict(to_tensor(image).to(module_device(segmenter)))[0].cpu().numpy().astype(np.int64)


def boxes_on_resized(boxes: np.ndarray, geometry: LetterboxParams) -> np.ndarray:
    """Original-pixel xyxy boxes → pixels of the evaluation-size image (for drawing)."""
    return np.asarray(boxes, np.float64).reshape(-1, 4) * geometry.ratio
