"""Task stages after the derainer: an ultralytics YOLO detector and an smp segmenter.

Both take (B,3,H,W) float images in [0,1] of any size, straight from a derainer, and give
predictions or a differentiable task loss. Importing this package is cheap: ultralytics and
segmentation-models-pytorch load on first use of a class or factory.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "Detector": "taskderain.stages.detector",
    "DetectorOutput": "taskderain.stages.detector",
    "create_detector": "taskderain.stages.detector",
    "Detections": "taskderain.stages.results",
    "WeightsNotFoundError": "taskderain.stages.offline",
    "letterbox_tensor": "taskderain.stages.letterbox",
    "Segmenter": "taskderain.stages.segmenter",
    "create_segmenter": "taskderain.stages.checkpoint",
    "save_segmenter": "taskderain.stages.checkpoint",
    "load_segmenter": "taskderain.stages.checkpoint",
    "save_detector": "taskderain.stages.checkpoint",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
