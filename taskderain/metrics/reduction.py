"""Batch reduction shared by the metric modules."""

from __future__ import annotations

import torch

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
