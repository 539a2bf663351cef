"""The base class every derainer derives from: any-size input, padding and the API-edge clamp."""

from __future__ import annotations

from typing import Any, ClassVar, Dict

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) at the bottom/right so H and W become multiples of ``multiple``.

    Reflect padding, falling back to replicate where the image is too small to reflect
    (reflect needs pad < size); crop back with ``x[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class Derainer(nn.Module):
    """A deraining network: ``forward`` maps rainy (B,3,H,W) float in [0,1] to derained, any H, W.

    Subclasses implement :meth:`restore` on inputs whose H, W are multiples of
    :attr:`pad_multiple`; the base pads (reflect) and crops back. ``forward`` does not clamp,
    so training sees the raw output; :meth:`derain` is the inference edge (eval, no grad,
    clamped to [0, 1]).

    Attributes:
        arch: architecture name stored in checkpoints (set by each subclass).
        config: keyword arguments that rebuild this module (stored in checkpoints).
    """

    arch: ClassVar[str] = "derainer"
    pad_multiple: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.config: Dict[str, Any] = {}
        self.preset: str = self.arch

    def restore(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Derain (B,3,H,W) with H, W multiples of ``pad_multiple``; no clamping."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rainy (B,3,H,W) float in [0,1], any H, W → derained (B,3,H,W), not clamped."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects (B,3,H,W) RGB, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        y = self.restore(pad_to_multiple(x, self.pad_multiple))
        return y[..., :h, :w]

    @torch.inference_mode()
    def derain(self, x: torch.Tensor) -> torch.Tensor:
        """Inference edge: eval mode, no autograd, output clamped to [0, 1]."""
        was_training = self.training
        self.eval()
        try:
            return self(x).clamp_(0.0, 1.0)
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}"
