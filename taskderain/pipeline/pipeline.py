"""``Pipeline``: one derainer feeding a detector and/or a segmenter, differentiable end to end."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..inference import (DEFAULT_MAX_PIXELS, NonFiniteOutputError, autocast, check_tiling, derain_tensor, half_dtype,
                         module_device, resolve_device, to_uint8)
from ..models import Derainer, create_derainer
from .config import load_config
from .inputs import load_inputs


@dataclass
class PipelineResult:
    """What ``Pipeline.predict`` returns per image (CPU tensors, original resolution).

    Attributes:
        name: file stem or ``image{i}``.
        rainy: (3,H,W) float in [0,1], the input.
        derained: (3,H,W) float in [0,1].
        detections: a :class:`~taskderain.stages.Detections` (boxes xyxy px) or ``None``.
        mask: (H,W) int64 class indices or ``None``.
    """

    name: str
    rainy: torch.Tensor
    derained: torch.Tensor
    detections: Any = None
    mask: Optional[torch.Tensor] = None

    def derained_uint8(self) -> np.ndarray:
        """(H,W,3) uint8 RGB of the derained image."""
        return to_uint8(self.derained)


class Pipeline(nn.Module):
    """derainer → (detector, segmenter): ``forward`` is differentiable, so task losses reach the derainer.

    Args:
        derainer: any :class:`~taskderain.models.Derainer` (``identity`` = no deraining).
        detector: a :class:`~taskderain.stages.Detector` or ``None``.
        segmenter: a :class:`~taskderain.stages.Segmenter` or ``None``.
    """

    def __init__(self, derainer: Derainer, detector: Optional[nn.Module] = None,
                 segmenter: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.derainer, self.detector, self.segmenter = derainer, detector, segmenter
        self.config: Dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def forward(self, images: torch.Tensor) -> Dict[str, Any]:
        """(B,3,H,W) rainy float in [0,1] → ``{"derained", "detections" (raw head output), "segmentation" (logits)}``."""
        derained = self.derainer(images)
        out: Dict[str, Any] = {"derained": derained}
        if self.detector is not None:
            out["detections"] = self.detector(derained)
        if self.segmenter is not None:
            out["segmentation"] = self.segmenter(derained)
        return out

    def losses(self, images: torch.Tensor, batch: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Task losses of the derained ``images`` against a collated ``batch``.

        Returns ``({"detection": scalar, "segmentation": scalar}, derained)`` with the entries
        of the stages present (detection = ultralytics' box + cls + dfl sum, × batch size as
        ultralytics defines it; segmentation = Dice + CE). Gradients reach the derainer.
        """
        derained = self.derainer(images)
        losses: Dict[str, torch.Tensor] = {}
        if self.detector is not None and "cls" in batch:
            losses["detection"] = self.detector.loss(derained, batch)[0].sum()
        if self.segmenter is not None and "masks" in batch:
            losses["segmentation"] = self.segmenter.loss(derained, batch["masks"].to(derained.device))
        return losses, derained

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
                detections = self.detector.predict(derained) if self.detector is not None else [None] * len(group)
                masks = self.segmenter.predict(derained) if self.segmenter is not None else [None] * len(group)
            for (name, image), d, det, mask in zip(group, derained, detections, masks):
                results.append(PipelineResult(name, image.cpu(), d.float().cpu(), det,
                                              None if mask is None else mask.cpu()))
        return results

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Pipeline":
        """Build from a validated config dict (see :mod:`taskderain.pipeline.config`)."""
        from ..stages import create_detector, create_segmenter

        spec = config["derainer"]
        derainer = create_derainer(spec["name"], weights=spec["weights"], **spec["options"])
        if spec["weights"] is None and any(True for _ in derainer.parameters()):
            warnings.warn(f"derainer {spec['name']!r} has random weights (derainer.weights is null); "
                          "its output is meaningless until you pass a checkpoint", stacklevel=2)
        detector = segmenter = None
        if config["detector"] is not None:
            d = config["detector"]
            detector = create_detector(weights=d["weights"], cfg=d["cfg"], nc=d["nc"], imgsz=d["imgsz"],
                                       conf=d["conf"], iou=d["iou"], max_det=d["max_det"])
        if config["segmenter"] is not None:
            s = config["segmenter"]
            segmenter = create_segmenter(arch=s["arch"], encoder=s["encoder"], num_classes=s["num_classes"],
                                         weights=s["weights"], ignore_index=s["ignore_index"])
        pipeline = cls(derainer, detector, segmenter).to(resolve_device(config["device"])).eval()
        pipeline.config = config
        return pipeline

    @classmethod
    def from_yaml(cls, path: "os.PathLike | str", overrides: Iterable[str] = (), **extra: Any) -> "Pipeline":
        """Build from a pipeline YAML (``pipelines/*.yaml``) with ``key=value`` overrides."""
        return cls.from_config(load_config(path, overrides, extra or None))


def _same_size_groups(items: List[Tuple[str, torch.Tensor]], batch: int) -> Iterable[List[Tuple[str, torch.Tensor]]]:
    group: List[Tuple[str, torch.Tensor]] = []
    for item in items:
        if group and (len(group) >= batch or group[0][1].shape != item[1].shape):
            yield group
            group = []
        group.append(item)
    if group:
        yield group
