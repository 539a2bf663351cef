"""The ``anchor`` loss term: a fine-tuned derainer keeps its start model's low frequencies.

Fine-tuning a restorer on a few images forgets what its long training taught it (Li & Hoiem,
"Learning without Forgetting", TPAMI 2018, distil the start model's outputs). In this library the
forgetting is measurable: 60 restoration steps from ``weights="allweather"`` on letterboxed heavy
rain move the global tone (every 8th Rain100L pair: mean shift −0.015 → −0.056, PSNR-Y −6 dB;
with this term −0.018, −0.5 dB) and cost mAP under heavy rain (README: the task-driven
experiment). The term distils only what drifts: the Charbonnier distance of the ``scale``-pooled
derained output to the pooled output of a frozen copy of the derainer taken at the first step,
so tone and colour stay at the start model's while edges and streaks stay free::

    loss: {restoration: 1.0, detection: 0.01, anchor: 1.0}              # default scale 8
    loss: {restoration: 1.0, anchor: {weight: 1.0, scale: 1}}           # full-resolution distillation

The start copy is the term's state, saved in the training checkpoint, so a resumed run anchors to
the same start. It costs one more derainer forward (no gradients) per step.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .restoration import charbonnier
from .terms import Step, derainer_trains, register_loss_term


def lowpass(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean over ``scale`` x ``scale`` cells of (B,C,H,W) ``x`` (partial cells at the border count)."""
    if scale <= 1:
        return x
    return F.avg_pool2d(x, scale, ceil_mode=True)


def anchor_loss(derained: torch.Tensor, start: torch.Tensor, scale: int = 8) -> torch.Tensor:
    """Charbonnier distance of ``lowpass(derained)`` to ``lowpass(start)`` (same shapes)."""
    return charbonnier(lowpass(derained, scale), lowpass(start, scale))


@register_loss_term("anchor")
class StartAnchor:
    """The ``anchor`` term (see the module): :func:`anchor_loss` of the derained output vs a frozen
    copy of the derainer at the first step, on the same rainy input.

    Args:
        scale: side of the pooling cells in pixels (1: full-resolution distillation).
    """

    applies = staticmethod(derainer_trains)

    def __init__(self, scale: int = 8) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
        self.scale = scale
        self.start: Optional[nn.Module] = None
        self._loaded: Optional[Dict[str, torch.Tensor]] = None

    def __call__(self, step: Step) -> Optional[torch.Tensor]:
        if not step.derainer_trains:
            return None
        if self.start is None:
            self.start = self._freeze(step.pipeline.derainer)
        with torch.no_grad(), step.autocast():
            target = self.start(step.rainy).float()
        return anchor_loss(step.derained, target, self.scale)

    def _freeze(self, derainer: nn.Module) -> nn.Module:
        start = copy.deepcopy(derainer).eval().requires_grad_(False)
        if self._loaded is not None:  # resumed: the start of the run, not the derainer now
            try:
                start.load_state_dict(self._loaded)
            except RuntimeError as exc:
                raise RuntimeError(f"loss.anchor: the checkpoint's start model does not fit the derainer: "
                                   f"{(str(exc).splitlines() or [''])[0]}") from None
            self._loaded = None
        return start

    def state_dict(self) -> Dict[str, Any]:
        if self.start is not None:
            return {"start": {k: v.detach().cpu().clone() for k, v in self.start.state_dict().items()}}
        return {"start": self._loaded} if self._loaded is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        start = state.get("start")
        if start is None:
            return
        if self.start is not None:
            self.start.load_state_dict(start)
        else:  # the copy is made at the first step, then given these weights
            self._loaded = dict(start)
