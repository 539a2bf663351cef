"""A task stage that can be frozen into a fixed task loss: no gradients, eval mode kept."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


class FreezableStage(nn.Module):
    """Base of the task stages: :meth:`freeze` makes the stage a fixed loss/metric.

    A frozen stage has no parameter gradients and stays in eval mode even when a surrounding
    ``Pipeline.train()`` is called, so its BatchNorm statistics never move.
    """

    frozen: bool = False
    batchnorm_frozen: bool = False

    def freeze(self) -> "FreezableStage":
        """No parameter gradients, eval mode from now on (BatchNorm statistics fixed)."""
        self.requires_grad_(False)
        self.frozen = True
        return self.eval()

    def unfreeze(self) -> "FreezableStage":
        """Undo :meth:`freeze` (parameters trainable again, see :meth:`trainable`); mode unchanged."""
        self.frozen = False
        for name, param in self.named_parameters():
            param.requires_grad_(self.trainable(name))
        return self

    def freeze_batchnorm(self) -> "FreezableStage":
        """Keep every BatchNorm in eval mode from now on (running statistics fixed, still trainable
        affine parameters): fine-tuning on small batches without re-estimating the statistics."""
        self.batchnorm_frozen = True
        return self.train(self.training)

    def trainable(self, name: str) -> bool:
        """Whether parameter ``name`` is trained when unfrozen (all, unless a stage says otherwise)."""
        return True

    @contextlib.contextmanager
    def evaluating(self) -> Iterator["FreezableStage"]:
        """Eval mode inside the block, the previous mode restored after it (what ``predict`` runs in)."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    def train(self, mode: bool = True) -> "FreezableStage":
        """As ``nn.Module.train``, except that a frozen stage stays in eval mode, and so do its
        BatchNorm layers after :meth:`freeze_batchnorm`."""
        super().train(mode and not self.frozen)
        if self.batchnorm_frozen:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
