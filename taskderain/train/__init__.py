"""Training: config schema, online-rain data, exact-resume checkpoints and the loop.

Modes are training tasks (:mod:`taskderain.train.training_task`, a registry of plug-ins):
``restoration`` (derainer on rainy/clean pairs, MSPFN recipe) and the task-driven presets
``cascade``, ``joint``, ``detector_on_rain`` and ``segmenter`` (see :mod:`taskderain.train.tasks`).
Importing this package is cheap; the loop loads on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "train": "taskderain.train.loop",
    "Trainer": "taskderain.train.loop",
    "load_train_config": "taskderain.train.config",
    "lr_at": "taskderain.train.config",
    "MODES": "taskderain.train.config",
    "load_train_checkpoint": "taskderain.train.checkpoint",
    "OnlineRainPairs": "taskderain.rain.online_pairs",
    "load_trained_pipeline": "taskderain.train.export",
    "export_stages": "taskderain.train.export",
    "Callback": "taskderain.train.callbacks",
    "TrainingTask": "taskderain.train.training_task",
    "register_training_task": "taskderain.train.training_task",
    "list_training_tasks": "taskderain.train.training_task",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
