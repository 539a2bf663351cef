"""The identity derainer: returns its input, so pipelines can score the rainy image itself."""

from __future__ import annotations

import torch

from .base import Derainer
from .registry import register_derainer


class Identity(Derainer):
    """No deraining: ``forward(x) = x``. The "rainy input" baseline of every table."""

    arch = "identity"

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_derainer("identity", Identity)
def identity() -> dict:
    """The rainy-input baseline (no parameters)."""
    return {}
