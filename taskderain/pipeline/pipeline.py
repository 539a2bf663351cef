"""``Pipeline``: one derainer feeding any number of named task heads, differentiable end to end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..inference import (DEFAULT_MAX_PIXELS, NonFiniteOutputError, autocast, check_tiling, derain_tensor, half_dtype,
                         module_device, to_uint8)
from ..models import Derainer
from ..stages.head import TaskHead
from ..types import PathLike
from .config import load_config
from .inputs import load_inputs


HeadsLike = Union[None, TaskHead, Mapping[str, Optional[TaskHead]], Sequence[Optional[TaskHead]]]


def named_heads(heads: HeadsLike) -> Dict[str, TaskHead]:
    """``{name: head}`` from one head, a sequence (named by ``default_name``, ``_2``… when repeated)
    or a mapping; ``None`` entries are left out.

    Raises:
        TypeError: an entry that is not a :class:`~taskderain.stages.TaskHead`.
        ValueError: a name with a dot (not a module name), or "derainer".
    """
    if heads is None:
        return {}
    if isinstance(heads, TaskHead):
        heads = [heads]
    if isinstance(heads, Mapping):
        items = [(str(k), v) for k, v in heads.items() if v is not None]
    else:
        items, seen = [], {}
        for head in heads:
            if head is None:
                continue
            base = getattr(head, "default_name", "head")
            seen[base] = seen.get(base, 0) + 1
            items.append((base if seen[base] == 1 else f"{base}_{seen[base]}", head))
    for name, head in items:
        if not isinstance(head, TaskHead):
            raise TypeError(f"pipeline head {name!r} must be a TaskHead (see taskderain.stages.register_head), "
                            f"got {type(head).__name__}")
        if not name or "." in name or name == "derainer":
            raise ValueError(f"pipeline head name {name!r} is not allowed (no dots, not 'derainer')")
    return dict(items)


@dataclass
class PipelineResult:
    """What ``Pipeline.predict`` returns per image (CPU tensors, original resolution).

    Attributes:
        name: file stem or ``image{i}``.
        rainy: (3,H,W) float in [0,1], the input.
        derained: (3,H,W) float in [0,1].
        outputs: head name → its prediction (:class:`~taskderain.stages.Detections` with boxes
            xyxy in px for detection heads, a (H,W) int64 class-id mask for segmentation heads).
        tasks: head name → its task (``"detection"`` / ``"segmentation"``).
    """

    name: str
    rainy: torch.Tensor
    derained: torch.Tensor
    outputs: Dict[str, Any] = field(default_factory=dict)
    tasks: Dict[str, str] = field(default_factory=dict)

    def _first(self, task: str) -> Any:
        return next((self.outputs[n] for n, t in self.tasks.items() if t == task), None)

    @property
    def detections(self) -> Any:
        """The first detection head's :class:`~taskderain.stages.Detections`, or None."""
        return self._first("detection")

    @property
    def mask(self) -> Optional[torch.Tensor]:
        """The first segmentation head's (H,W) int64 mask, or None."""
        return self._first("segmentation")

    def derained_uint8(self) -> np.ndarray:
        """(H,W,3) uint8 RGB of the derained image."""
        return to_uint8(self.derained)


class Pipeline(nn.Module):
    """derainer → any number of named task heads; ``forward`` is differentiable, so task losses reach the derainer.

    Args:
        derainer: any :class:`~taskderain.models.Derainer` (``identity`` = no deraining).
        heads: task heads (:class:`~taskderain.stages.TaskHead`: the ``yolo`` detector, the ``smp``
            segmenter, torchvision detectors, your own): one, a list (named ``detector``,
            ``segmenter``… by their ``default_name``) or ``{name: head}``.

    Attributes:
        heads: ``nn.ModuleDict`` name → head. ``detector`` / ``segmenter``: the first head of that
            task, or None.
    """

    def __init__(self, derainer: Derainer, heads: HeadsLike = None) -> None:
        super().__init__()
        self.derainer = derainer
        self.heads = nn.ModuleDict(named_heads(heads))
        self.config: Dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def _first(self, task: str) -> Optional[TaskHead]:
        return next((h for h in self.heads.values() if h.task == task), None)

    @property
    def detector(self) -> Optional[TaskHead]:
        """The first detection head, or None."""
        return self._first("detection")

    @property
    def segmenter(self) -> Optional[TaskHead]:
        """The first segmentation head, or None."""
        return self._first("segmentation")

    def head(self, name: str) -> TaskHead:
        """The head called ``name``; a KeyError lists the names."""
        if name not in self.heads:
            raise KeyError(f"pipeline has no head {name!r}; heads: {', '.join(self.heads) or 'none'}")
        return self.heads[name]

    def forward(self, images: torch.Tensor) -> Dict[str, Any]:
        """(B,3,H,W) rainy float in [0,1] → ``{"derained", <head name>: its raw output, ...}``."""
        derained = self.derainer(images)
        out: Dict[str, Any] = {"derained": derained}
        for name, head in self.heads.items():
            out[name] = head(derained)
        return out

    def losses(self, images: torch.Tensor, batch: Dict[str, Any]) -> Tuple[Dict[str, Dict[str, torch.Tensor]], torch.Tensor]:
        """Task losses of the derained ``images`` against a collated ``batch``.

        Returns ``({head name: {term: per-image scalar}}, derained)`` for the heads whose
        ``batch_keys`` the batch has (:meth:`TaskHead.loss`). Gradients reach the derainer.
        """
        derained = self.derainer(images)
        return {name: head.loss(derained, batch) for name, head in self.heads.items() if head.has_labels(batch)}, derained

    @torch.inference_mode()
    def predict(self, inputs: Any, color: Optional[str] = None, batch: int = 1, half: bool = False,
                tile: Optional[int] = None, overlap: int = 64,
                max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> List[PipelineResult]:
        """Derain and run the task heads on ``inputs``.

        Args:
            inputs: a path (read in its displayed EXIF orientation), numpy array (give
                ``color="rgb"|"bgr"``), PIL image, float tensor in [0, 1], or a list of them.
            batch: images of the same size are derained and detected together, up to this many.
            half: autocast (bf16 on CPU, fp16 on CUDA) for every stage.
            tile: derain in tiles of this many pixels (bounded memory for large images); ``None``:
                images above ``max_pixels`` are tiled automatically, as every command does
                (:func:`~taskderain.inference.choose_tile`; ``max_pixels=0`` never tiles).

        Raises:
            TypeError / ValueError: non-float tensors, NaN/Inf pixels, bad tiling values.
            NonFiniteOutputError: the derainer produced NaN/Inf.
        """
        check_tiling(tile, overlap, max_pixels)
        self.eval()
        device = self.device
        dtype = half_dtype(device) if half else None
        items = load_inputs(inputs, color)
        results: List[PipelineResult] = []
        for group in _same_size_groups(items, batch):
            tensors = [t for _, t in group]
            # one image: a view (no copy) unless it is not contiguous (channels-last tensors from users)
            rainy = (tensors[0][None].contiguous() if len(tensors) == 1 else torch.stack(tensors)).to(device)
            try:
                derained = derain_tensor(self.derainer, rainy, tile=tile, overlap=overlap, dtype=dtype,
                                         max_pixels=max_pixels)
            except NonFiniteOutputError as exc:
                raise NonFiniteOutputError(f"{', '.join(name for name, _ in group)}: {exc}") from None
            with autocast(device, dtype):
                predictions = {n: head.predict(derained) for n, head in self.heads.items()}
            tasks = {n: head.task for n, head in self.heads.items()}
            for i, ((name, image), d) in enumerate(zip(group, derained)):
                outputs = {n: _cpu(p[i]) for n, p in predictions.items()}
                results.append(PipelineResult(name, image.cpu(), d.float().cpu(), outputs, tasks))
        return results

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Pipeline":
        """Build from a validated config dict (see :mod:`taskderain.pipeline.config`): :func:`~taskderain.pipeline.build.build_pipeline`."""
        from .build import build_pipeline

        return build_pipeline(config)

    @classmethod
    def from_yaml(cls, path: PathLike, overrides: Iterable[str] = (), **extra: Any) -> "Pipeline":
        """Build from a pipeline YAML (``pipelines/*.yaml``) with ``key=value`` overrides."""
        return cls.from_config(load_config(path, overrides, extra or None))


def _cpu(prediction: Any) -> Any:
    """A head's prediction (tensor, Detections, ...) on the CPU."""
    return prediction.to("cpu") if hasattr(prediction, "to") else prediction


def _same_size_groups(items: List[Tuple[str, torch.Tensor]], batch: int) -> Iterable[List[Tuple[str, torch.Tensor]]]:
    group: List[Tuple[str, torch.Tensor]] = []
    for item in items:
        if group and (len(group) >= batch or group[0][1].shape != item[1].shape):
            yield group
            group = []
        group.append(item)
    if group:
        yield group
