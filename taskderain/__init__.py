"""taskderain: vision-task-driven image deraining.

Data flows one way: ``data -> rain -> models (derainers) -> stages (detector, segmenter)
-> losses / metrics -> train / eval -> cli``. Importing the package is cheap: submodules
load on first use.
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "create_derainer": "taskderain.models",
    "list_derainers": "taskderain.models",
    "load_derainer": "taskderain.models",
    "save_derainer": "taskderain.models",
    "derain_tensor": "taskderain.inference",
    "PairedRainDataset": "taskderain.data",
    "add_rain": "taskderain.rain",
    "rain_params": "taskderain.rain",
    "Rain": "taskderain.rain",
    "Rainy": "taskderain.rain",
    "Pipeline": "taskderain.pipeline",
    "create_detector": "taskderain.stages",
    "create_segmenter": "taskderain.stages",
    "psnr": "taskderain.metrics",
    "ssim": "taskderain.metrics",
}

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
