"""Training tasks as plug-ins: what a training ``mode`` builds, how a batch's loss is computed and
how the result is validated. The :class:`~taskderain.train.loop.Trainer` keeps only the loop,
resume, DDP, logging and the time budget, and asks the task for everything else.

Built in: ``restoration`` (:class:`~taskderain.train.restoration.RestorationTask`: the derainer on
(rainy, clean) pairs with MSPFN's loss, validated by PSNR-Y) and ``task_driven``
(:class:`~taskderain.train.tasks.TaskDrivenTask`: a pipeline of derainer and heads, named loss
terms, validated by the evaluator), whose presets ``cascade``, ``joint``, ``detector_on_rain`` and
``segmenter`` are data (:data:`~taskderain.train.config.MODE_STAGES`: which stages train).
A new kind of training registers a :class:`TrainingTask` subclass under its mode name::

    @register_training_task("my_mode")
    class MyTask(TrainingTask):
        ...
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, TypeVar

import torch
from torch import nn

from ..registry import Registry


def _builtins() -> None:
    from . import restoration, tasks  # noqa: F401  (register restoration and the task-driven presets)


_REGISTRY: Registry[Type["TrainingTask"]] = Registry("training mode", _builtins)
T = TypeVar("T", bound=Type["TrainingTask"])


class TrainingTask:
    """One training mode. Subclasses set the attributes in ``__init__`` and implement the methods.

    Attributes:
        derainer: the derainer (the checkpoint's model; the identity where the mode has none).
        trained: the module put in train mode each epoch (the derainer, or the whole pipeline).
        pipeline: the :class:`~taskderain.pipeline.Pipeline` or None.
        terms: the :class:`~taskderain.losses.terms.LossTerms` or None; their names are logged.
        train_set, indices, val_set: training dataset, the indices trained on, validation set or None.
        metric_names: what :meth:`validate` returns (the ``val_<metric>`` log columns).
    """

    derainer: nn.Module
    trained: nn.Module
    pipeline: Optional[nn.Module] = None
    terms: Any = None
    train_set: Any
    indices: List[int]
    val_set: Any = None
    metric_names: Tuple[str, ...] = ()

    def __init__(self, config: Dict[str, Any], device: torch.device) -> None:
        self.config, self.device = config, device

    @classmethod
    def check_config(cls, config: Dict[str, Any], where: str) -> None:
        """Mode-specific checks of a plug-in's training config (raise ConfigError naming the key);
        the loop's own keys are checked before. The built-in tasks are checked by the config module."""

    @property
    def term_names(self) -> Tuple[str, ...]:
        return tuple(self.terms.names) if self.terms is not None else ()

    def param_groups(self) -> Iterable[Any]:
        """What the optimizer trains (parameters or param groups with ``base_lr``)."""
        raise NotImplementedError

    def distribute(self) -> Optional[nn.Module]:
        """Under torchrun: a DistributedDataParallel module for :meth:`loss`, or None when the task
        averages gradients itself (the loop then all-reduces them after the backward passes)."""
        return None

    def loader(self, batches: List[List[int]], epoch: int, workers: int) -> Iterable[Dict[str, Any]]:
        """The collated batches of ``batches`` (lists of dataset indices) of ``epoch``, in order."""
        raise NotImplementedError

    def loss(self, batch: Dict[str, Any], step: int, amp_dtype: Optional[torch.dtype],
             ddp: Optional[nn.Module] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        """(total loss to backpropagate, its named unweighted parts) of one micro-batch."""
        raise NotImplementedError

    def validate(self, amp_dtype: Optional[torch.dtype]) -> Optional[Dict[str, float]]:
        """Validation metrics (:attr:`metric_names`), None without a validation set."""
        raise NotImplementedError

    def stage_states(self) -> Dict[str, Dict[str, torch.Tensor]]:
        """CPU state_dicts of trained stages other than the derainer (they go into the checkpoint)."""
        return {}

    def load_stage_states(self, states: Dict[str, Dict[str, torch.Tensor]]) -> None:
        for name, state in states.items():
            self.pipeline.head(name).load_state_dict(state)


def register_training_task(mode: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`TrainingTask` under a training ``mode``."""

    def wrap(cls: T) -> T:
        return _REGISTRY.add(mode, cls)

    return wrap


def training_task_class(mode: str) -> Type[TrainingTask]:
    """The class of ``mode``; a KeyError lists the modes."""
    return _REGISTRY.get(mode)


def list_training_tasks() -> List[str]:
    return _REGISTRY.names()


def create_training_task(config: Dict[str, Any], device: torch.device) -> TrainingTask:
    """The task of ``config["mode"]``, built from a validated training config."""
    return training_task_class(config["mode"])(config, device)
