"""Image-quality metrics as deraining papers compute them (see ``PROTOCOL``).

NumPy functions (:func:`psnr`, :func:`ssim`) score single 8-bit RGB images exactly as the
published numbers are computed; the torch twins (:func:`psnr_torch`, :func:`ssim_torch` and the
:class:`PSNR` / :class:`SSIM` modules) score batches inside training loops and reproduce the
NumPy values with ``quantize=True``.

Task metrics: :class:`DetectionEvaluator` / :func:`coco_map` (COCO mAP@[.5:.95] via pycocotools'
COCOeval) and :class:`SegmentationEvaluator` (mIoU over classes present in the ground truth, from
one confusion matrix accumulated over all images). :func:`paired_bootstrap`: intervals of a
metric difference between models scored on the same images.
"""

from taskderain.metrics.bootstrap import paired_bootstrap
from taskderain.metrics.color import rgb_to_y, to_uint8
from taskderain.metrics.detection import DETECTION_PROTOCOL, DetectionEvaluator, coco_map
from taskderain.metrics.protocol import PROTOCOL, describe_protocol
from taskderain.metrics.psnr import PSNR, psnr, psnr_torch
from taskderain.metrics.segmentation import SegmentationEvaluator, confusion_matrix, miou_from_confusion, pixel_accuracy
from taskderain.metrics.ssim import SSIM, ssim, ssim_map, ssim_torch

__all__ = [
    "PROTOCOL",
    "PSNR",
    "SSIM",
    "describe_protocol",
    "psnr",
    "psnr_torch",
    "rgb_to_y",
    "ssim",
    "ssim_map",
    "ssim_torch",
    "to_uint8",
    "DETECTION_PROTOCOL",
    "DetectionEvaluator",
    "SegmentationEvaluator",
    "coco_map",
    "confusion_matrix",
    "miou_from_confusion",
    "pixel_accuracy",
    "paired_bootstrap",
]
