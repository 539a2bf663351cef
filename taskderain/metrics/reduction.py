"""Batch reduction and the module base shared by the metric modules (:class:`PSNR`, :class:`SSIM`)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from taskderain.metrics.color import check_channel

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> str:
    """Validate a reduction name; raises ValueError naming the choices."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce_batch(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B,) per-image values → unchanged (``"none"``) or a scalar (``"mean"``, ``"sum"``)."""
    check_reduction(reduction)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


class BatchMetric(nn.Module):
    """Module form of a per-image metric function ``fn(pred, target, channel, data_range, quantize, round_y)``.

    Holds the options and reduces the (B,) values: ``"none"`` → (B,), ``"mean"`` / ``"sum"`` → scalar.
    """

    fn: Callable[..., torch.Tensor]

    def __init__(self, channel: str = "y", data_range: float = 1.0, quantize: bool = False,
                 round_y: Optional[bool] = None, reduction: str = "none") -> None:
        super().__init__()
        self.channel = check_channel(channel)
        self.reduction = check_reduction(reduction)
        self.data_range, self.quantize, self.round_y = data_range, quantize, round_y

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = type(self).fn(pred, target, self.channel, self.data_range, self.quantize, self.round_y)
        return reduce_batch(values, self.reduction)

    def extra_repr(self) -> str:
        return (f"channel={self.channel!r}, data_range={self.data_range}, quantize={self.quantize}, "
                f"reduction={self.reduction!r}")
